"""``rpg ppo`` / ``recipes/residual_ppo_llm.py``: Residual PPO from the command line (TrlParser, ``--config``).

Two jobs behind one parser:

* no ``--model_name_or_path``: the embedded default — build (or reuse) the toy world, customize its
  prior with Greedy, KL and Residual PPO and Residual RLOO / GRPO, print and save the table (``results/llm/``);
* ``--model_name_or_path`` + ``--dataset_name`` + ``--reward_model_path`` or ``--reward_funcs``:
  Residual PPO on any causal LM, optionally with LoRA (``--use_peft``).

Any field of :class:`ResidualPPOConfig` (TrainingArguments), trl's ``ScriptArguments`` and
``ModelConfig``, and :class:`ToyExperimentArguments` is a flag or a YAML key; so are TRL's launch keys
``num_processes`` and ``accelerate_config`` (and any other ``accelerate launch`` option): as with
``trl ppo``, the job then re-runs itself under ``accelerate launch`` (:mod:`rpg_llm.launch`).
Bad input ends with one ``rpg ppo: error: ...`` line and exit code 2, before any model loads.
"""

from __future__ import annotations

import sys
import time

# The embedded default (toy world): PPO settings that bring every method within 0.05 nats of its exact target
# in five minutes on a 2-core CPU (the RLOO / GRPO rows use them too, with k completions per prompt and no
# critic). 256 completions per iteration in 2 mini-batches of 128, 2 epochs: twice the samples of 128 × 4 epochs
# for about the same update cost, and larger, less noisy steps (docs/toy_world.md, "The embedded default's budget").
TOY_DEFAULTS = dict(
    output_dir="outputs/residual_ppo_toy",
    per_device_train_batch_size=128,
    num_mini_batches=2,
    num_ppo_epochs=2,
    learning_rate=1e-3,
    lr_scheduler_type="linear",  # decays to 0 by the last iteration: a lower noise floor at the end
    max_steps=160,
    vf_coef=0.5,
    lam=1.0,
    save_strategy="no",
    logging_steps=10,
    report_to="none",
    seed=0,
    stop_token="eos",  # the toy world's completions end at EOS (off its support) or after 4 words
)


def parse_with_launch(argv: list[str]):
    """((script, toy experiment, PPO, model) arguments, accelerate launch arguments, argv for the launched job);
    the toy job's defaults when no model is given."""
    from trl import ModelConfig, ScriptArguments

    from rpg_llm.cli_common import parse_job_and_launch
    from rpg_llm.ppo.config import ResidualPPOConfig
    from rpg_llm.toy.ppo_job import ToyExperimentArguments

    types = (ScriptArguments, ToyExperimentArguments, ResidualPPOConfig, ModelConfig)
    return parse_job_and_launch(types, TOY_DEFAULTS, argv, "rpg ppo")


def _parse(argv: list[str]):
    """(script, toy experiment, PPO, model) arguments; the toy job's defaults when no model is given."""
    return parse_with_launch(argv)[0]


def run_model_job(script, ppo_args, model_args) -> int:
    from trl import get_peft_config

    from rpg_llm.cli_common import load_named_dataset
    from rpg_llm.ppo.trainer import ResidualPPOTrainer

    splits = load_named_dataset(script)  # the test split, if there is one, gives the sample-generation prompts
    if script.dataset_train_split not in splits:
        raise ValueError(f"dataset has no split {script.dataset_train_split!r} (splits: {sorted(splits)})")
    dataset, eval_dataset = splits[script.dataset_train_split], splits.get(script.dataset_test_split)
    # ModelConfig's loading options reach every from_pretrained (policy, reference, critic, reward model).
    init = {"revision": model_args.model_revision, "trust_remote_code": getattr(model_args, "trust_remote_code", False)}
    if model_args.attn_implementation is not None:
        init["attn_implementation"] = model_args.attn_implementation
    if getattr(model_args, "dtype", None) not in (None, "auto"):
        init["dtype"] = model_args.dtype
    ppo_args.model_init_kwargs = {**init, **(ppo_args.model_init_kwargs or {})}
    trainer = ResidualPPOTrainer(
        ppo_args,
        model_args.model_name_or_path,
        train_dataset=dataset,
        peft_config=get_peft_config(model_args),
        eval_dataset=eval_dataset,
    )
    history = trainer.train()
    trainer.save_model()
    if history and trainer.accelerator.is_main_process:
        last = history[-1]
        print(
            f"done: {len(history)} iterations; r_R {last['reward/addon']:.4f}, KL to ref "
            f"{last['objective/kl_to_ref']:.4f}; "
            f"model saved to {ppo_args.output_dir}"
        )
    return 0


# Flags of a model job that the toy job replaces with its own per-method arguments.
_PER_METHOD_COEFFICIENTS = (
    "each method's (ω', α̂) comes from --greedy_alpha_hat, --kl_beta, --residual_omega_prime, --residual_alpha_hat"
)
_TOY_JOB_REPLACES = {
    "--omega_prime": _PER_METHOD_COEFFICIENTS,
    "--alpha_hat": _PER_METHOD_COEFFICIENTS,
    "--kl_coef": _PER_METHOD_COEFFICIENTS,
    "--scale_rewards": "the Residual GRPO row's std scaling comes from --grpo_scale_rewards",
}


def _note_flags_the_toy_job_ignores(argv: list[str]) -> None:
    """One stderr note per reason, naming the flags given that the toy job replaces."""
    given = {a.split("=")[0] for a in argv}
    by_reason: dict[str, list[str]] = {}
    for flag, reason in _TOY_JOB_REPLACES.items():
        if flag in given:
            by_reason.setdefault(reason, []).append(flag)
    for reason, flags in by_reason.items():
        print(f"note: {', '.join(flags)} ignored by the toy job; {reason}", file=sys.stderr)


def run_toy_job(experiment, ppo_args, argv: list[str]) -> int:
    from accelerate import PartialState

    from rpg_llm.launch import check_world_size
    from rpg_llm.report import provenance
    from rpg_llm.toy.ppo_job import print_results, run_toy_comparison, write_results

    state = PartialState(cpu=ppo_args.use_cpu)
    check_world_size(state.num_processes, "ppo")
    if state.is_main_process:
        _note_flags_the_toy_job_ignores(argv)
    started = time.perf_counter()
    world = experiment.build_world()
    result = run_toy_comparison(experiment, ppo_args, world)
    if state.is_main_process:
        facts = provenance(
            ["accelerate launch recipes/residual_ppo_llm.py", *argv],
            {
                "seed": ppo_args.seed,
                "iterations_per_method": ppo_args.max_steps,
                "rollout_batch_per_process": ppo_args.local_batch_size,
                "mini_batches": ppo_args.num_mini_batches,
                "ppo_epochs": ppo_args.num_ppo_epochs,
                "residual_grpo_scale_rewards": experiment.grpo_scale_rewards,
                "processes": state.num_processes,
                "wall_seconds": round(time.perf_counter() - started, 1),
            },
        )
        print_results(result["rows"], "Residual PPO on the toy token world (KL to each method's exact target)")
        md, js = write_results(result, experiment.results_dir, "residual_ppo_toy", facts)
        print(f"floor: the prior model's KL to the exact prior = {result['rows'][0]['kl_to_prior']:.4f}")
        print(f"wrote {md} and {js}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from rpg_llm.launch import relaunch_with_accelerate

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        (script, experiment, ppo_args, model_args), launch_args, script_argv = parse_with_launch(argv)
        if launch_args:  # TRL's num_processes / accelerate_config: run this job under accelerate launch
            module = __name__ if __name__ != "__main__" else "rpg_llm.ppo.cli"
            return relaunch_with_accelerate(module, launch_args, script_argv)
        if model_args.model_name_or_path is None:
            return run_toy_job(experiment, ppo_args, argv)
        return run_model_job(script, ppo_args, model_args)
    except (ValueError, OSError) as error:
        from rpg_llm.cli_common import error_line

        print(error_line("rpg ppo", error), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
