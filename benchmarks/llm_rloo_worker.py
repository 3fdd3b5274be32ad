"""One side of benchmarks/llm_rloo_vs_trl.py, run in its own process.

    python benchmarks/llm_rloo_worker.py --impl rpg-rloo|rpg-gae|trl-rloo --assets DIR --settings JSON

Prints one JSON line: per-iteration wall and CPU times (between consecutive iteration ends), peak RSS and
the RSS after importing the side's stack. One iteration = one rollout of ``prompts × k`` completions and
one optimizer step over it (TRL: one generation batch, ``num_iterations=1``).
"""

from __future__ import annotations

import argparse
import json
import os
import time

from memory_probe import print_worker_result, rss_mib  # noqa: E402  (this folder is on sys.path)


def run_rpg(assets: str, s: dict, marks: list, parameters: dict, estimator: str) -> None:
    from datasets import load_dataset

    from rpg_llm.ppo.config import ResidualPPOConfig
    from rpg_llm.ppo.trainer import ResidualPPOTrainer

    dataset = load_dataset("json", data_files=os.path.join(assets, "prompts.jsonl"), split="train")
    completions = s["prompts_per_step"] * s["num_generations"]
    args = ResidualPPOConfig(
        output_dir=os.path.join(assets, f"out-rpg-{estimator}"),
        kl_coef=s["beta"],
        response_length=s["response_length"],
        advantage_estimator=estimator,
        num_generations=s["num_generations"],
        # one optimizer step per rollout: micro-batches of per_device, accumulated over the whole rollout
        per_device_train_batch_size=s["per_device_train_batch_size"],
        gradient_accumulation_steps=completions // s["per_device_train_batch_size"],
        num_mini_batches=1,
        num_ppo_epochs=1,
        learning_rate=s["learning_rate"],
        local_rollout_forward_batch_size=completions,
        max_steps=s["iterations"],
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=0,
        use_cpu=True,
    )
    trainer = ResidualPPOTrainer(
        args,
        os.path.join(assets, "policy"),
        train_dataset=dataset,
        reward_model=os.path.join(assets, "reward"),
        callbacks=[lambda trainer, stats: marks.append((time.perf_counter(), time.process_time()))],
    )
    parameters["trainable"] = sum(p.numel() for group in trainer.optimizer.param_groups for p in group["params"])
    marks.append((time.perf_counter(), time.process_time()))
    trainer.train()


def run_trl(assets: str, s: dict, marks: list, parameters: dict) -> None:
    from datasets import load_dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import RLOOConfig, RLOOTrainer

    tokenizer = AutoTokenizer.from_pretrained(os.path.join(assets, "policy"))
    dataset = load_dataset("json", data_files=os.path.join(assets, "prompts.jsonl"), split="train")
    completions = s["prompts_per_step"] * s["num_generations"]
    args = RLOOConfig(
        output_dir=os.path.join(assets, "out-trl"),
        beta=s["beta"],
        num_generations=s["num_generations"],
        max_completion_length=s["response_length"],
        per_device_train_batch_size=s["per_device_train_batch_size"],
        # TRL: generation batch = per_device × steps_per_generation (= accumulation): one generation per optimizer step
        gradient_accumulation_steps=completions // s["per_device_train_batch_size"],
        num_iterations=1,
        learning_rate=s["learning_rate"],
        max_steps=s["iterations"],
        gradient_checkpointing=False,
        bf16=False,
        use_cpu=True,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=0,
        logging_steps=10**6,
    )

    class Marks(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks.append((time.perf_counter(), time.process_time()))

    trainer = RLOOTrainer(
        os.path.join(assets, "policy"),
        reward_funcs=os.path.join(assets, "reward"),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[Marks()],
    )
    parameters["trainable"] = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    marks.append((time.perf_counter(), time.process_time()))
    trainer.train()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--impl", choices=["rpg-rloo", "rpg-gae", "trl-rloo"], required=True)
    parser.add_argument("--assets", required=True)
    parser.add_argument("--settings", required=True, help="JSON of the shared settings")
    cli = parser.parse_args()
    settings = json.loads(cli.settings)
    import torch

    torch.set_num_threads(settings.get("threads", 1))
    torch.manual_seed(0)
    rss_before = rss_mib()
    import datasets  # noqa: F401

    if cli.impl.startswith("rpg"):
        import rpg_llm.ppo.trainer  # noqa: F401
    else:
        import trl.trainer.rloo_trainer  # noqa: F401
    rss_imported = rss_mib()
    marks: list[tuple[float, float]] = []
    parameters: dict[str, int] = {}
    if cli.impl.startswith("rpg"):
        run_rpg(cli.assets, settings, marks, parameters, cli.impl.split("-")[1])
    else:
        run_trl(cli.assets, settings, marks, parameters)
    print_worker_result(cli.impl, marks, rss_before, rss_imported, trainable_parameters=parameters["trainable"])


if __name__ == "__main__":
    main()
