"""``rpg dpo`` / ``recipes/decoupled_dpo_llm.py``: DPO, decoupled DPO and the CE loss (TrlParser, ``--config``).

Two jobs behind one parser, flags as in ``trl dpo``:

* no ``--model_name_or_path``: the embedded default — build (or reuse) the toy world, sample
  Bradley–Terry pairs from its prior, train DPO, decoupled DPO (ω' ≠ α̂) and CE, print and save the
  table (``results/llm/decoupled_dpo_toy.{md,json}``);
* ``--model_name_or_path`` + ``--dataset_name`` (a hub dataset, a local .json/.jsonl/.csv/.parquet
  file, or a ``save_to_disk`` directory): train any causal LM, optionally with LoRA (``--use_peft``).

``--loss`` is an alias of ``--loss_type`` (``--loss decoupled --alpha_hat 0.1 --omega_prime 0.2``;
several losses mix with ``--loss_weights``). Every field of :class:`DecoupledDPOConfig`, trl's
``ScriptArguments`` / ``ModelConfig`` / ``DatasetMixtureConfig`` and :class:`ToyDPOArguments` is a
flag or a YAML key; so are TRL's launch keys ``num_processes`` and ``accelerate_config`` (and any other
``accelerate launch`` option): as with ``trl dpo``, the job then re-runs itself under ``accelerate launch``.
Bad input ends with one ``rpg dpo: error: ...`` line and exit code 2.
"""

from __future__ import annotations

import sys
import time

# The embedded default (toy world): settings that move each method most of the way to its target in
# well under a minute per method on one CPU core (see results/llm/decoupled_dpo_toy.md).
TOY_DEFAULTS = dict(
    output_dir="outputs/decoupled_dpo_toy",
    beta=0.5,
    alpha_hat=0.5,
    omega_prime=1.0,
    learning_rate=3e-4,
    lr_scheduler_type="constant",
    max_steps=300,
    per_device_train_batch_size=64,
    gradient_checkpointing=False,
    save_strategy="no",
    report_to="none",
    seed=0,
)


def _alias_loss(argv: list[str]) -> list[str]:
    return [
        "--loss_type" if arg == "--loss" else "--loss_type=" + arg[7:] if arg.startswith("--loss=") else arg
        for arg in argv
    ]


def parse_with_launch(argv: list[str]):
    """((script, training, model, dataset-mixture, toy) arguments, accelerate launch arguments, argv to launch)."""
    from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments

    from rpg_llm.cli_common import parse_job_and_launch
    from rpg_llm.dpo.config import DecoupledDPOConfig
    from rpg_llm.toy.dpo_job import ToyDPOArguments

    types = (ScriptArguments, DecoupledDPOConfig, ModelConfig, DatasetMixtureConfig, ToyDPOArguments)
    return parse_job_and_launch(types, TOY_DEFAULTS, _alias_loss(argv), "rpg dpo")


def parse(argv: list[str]):
    """(script, training, model, dataset-mixture, toy) arguments; toy defaults when no model is given."""
    return parse_with_launch(argv)[0]


def load_preference_dataset(script, dataset_args):
    """A ``DatasetDict`` from a dataset mixture (``--datasets``) or what ``--dataset_name`` names."""
    from trl import get_dataset

    from rpg_llm.cli_common import load_named_dataset

    if dataset_args.datasets:
        return get_dataset(dataset_args)
    return load_named_dataset(script, streaming=script.dataset_streaming)


def build_model_job(script, training_args, model_args, dataset_args):
    """Load and check the data, then build the trainer (bad input fails here, before training)."""
    from trl import get_peft_config, get_quantization_config

    from rpg_llm.dpo.trainer import DecoupledDPOTrainer, validate_preference_dataset
    from rpg_llm.launch import check_world_size
    from rpg_llm.model_loading import check_model_path

    check_world_size(training_args.world_size, "dpo")
    check_model_path(model_args.model_name_or_path, "model_name_or_path")
    dataset = load_preference_dataset(script, dataset_args)
    if script.dataset_train_split not in dataset:
        raise ValueError(f"dataset has no split {script.dataset_train_split!r} (splits: {sorted(dataset)})")
    train_dataset = dataset[script.dataset_train_split]
    eval_dataset = None
    if training_args.eval_strategy != "no":
        if script.dataset_test_split not in dataset:
            raise ValueError(f"eval_strategy={training_args.eval_strategy} needs split {script.dataset_test_split!r}")
        eval_dataset = dataset[script.dataset_test_split]
    label_column = training_args.label_column if "ce" in training_args.loss_type else None  # only `ce` reads labels
    validate_preference_dataset(train_dataset, "train_dataset", label_column)
    if eval_dataset is not None:
        validate_preference_dataset(eval_dataset, "eval_dataset", label_column)
    model_init_kwargs = dict(
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
    )
    model_init_kwargs.update(training_args.model_init_kwargs or {})
    training_args.model_init_kwargs = model_init_kwargs
    return DecoupledDPOTrainer(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        quantization_config=get_quantization_config(model_args),
        peft_config=get_peft_config(model_args),
    )


def run_model_job(trainer, training_args) -> int:
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    trainer.accelerator.print(f"done: losses {training_args.loss_type}; model saved to {training_args.output_dir}")
    return 0


def run_toy_job(training_args, toy, argv: list[str]) -> int:
    from accelerate import PartialState

    from rpg_llm.report import provenance
    from rpg_llm.toy.dpo_job import default_methods, print_tables, run_toy_comparison, write_results
    from rpg_llm.toy.dpo_pairs import sample_preference_pairs

    state = PartialState()
    started = time.perf_counter()
    facts = provenance(["python recipes/decoupled_dpo_llm.py", *argv])  # commit of the code that runs
    world = toy.build_world()
    train_pairs = sample_preference_pairs(world, toy.num_train_pairs, seed=toy.pair_seed)
    heldout_pairs = sample_preference_pairs(world, toy.num_heldout_pairs, seed=toy.pair_seed + 1)
    methods = default_methods(training_args.beta, training_args.alpha_hat, training_args.omega_prime, toy.methods)
    result = run_toy_comparison(
        world,
        methods,
        train_pairs,
        heldout_pairs,
        training_args.output_dir,
        max_steps=training_args.max_steps,
        learning_rate=training_args.learning_rate,
        batch_size=training_args.per_device_train_batch_size,
        seed=training_args.seed,
        progress=not training_args.disable_tqdm,
    )
    if state.is_main_process:
        facts.update(
            {
                "seed": training_args.seed,
                "pair_seed": toy.pair_seed,
                "train_pairs": toy.num_train_pairs,
                "heldout_pairs": toy.num_heldout_pairs,
                "steps_per_method": training_args.max_steps,
                "batch_pairs": training_args.per_device_train_batch_size,
                "learning_rate": training_args.learning_rate,
                "processes": state.num_processes,
                "world": toy.world_config().fingerprint(),
                "wall_seconds": round(time.perf_counter() - started, 1),
            }
        )
        print_tables(result)
        md_path, json_path = write_results(result, toy.results_dir, "decoupled_dpo_toy", facts)
        print(f"floor: the prior model's KL to the exact prior = {world.info.get('prior_kl_to_exact_prior'):.4f}")
        print(f"wrote {md_path} and {json_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from rpg_llm.launch import check_world_size, relaunch_with_accelerate

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        (script, training_args, model_args, dataset_args, toy), launch_args, script_argv = parse_with_launch(argv)
        if launch_args:  # TRL's num_processes / accelerate_config: run this job under accelerate launch
            module = __name__ if __name__ != "__main__" else "rpg_llm.dpo.cli"
            return relaunch_with_accelerate(module, launch_args, script_argv)
        if model_args.model_name_or_path is None:
            check_world_size(training_args.world_size, "dpo")
            job = None
        else:
            job = build_model_job(script, training_args, model_args, dataset_args)
    except (ValueError, OSError) as error:
        from rpg_llm.cli_common import error_line

        print(error_line("rpg dpo", error), file=sys.stderr)
        return 2
    if job is None:
        return run_toy_job(training_args, toy, argv)
    return run_model_job(job, training_args)


if __name__ == "__main__":
    sys.exit(main())
