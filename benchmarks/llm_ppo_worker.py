"""One side of benchmarks/llm_ppo_vs_trl.py, run in its own process (and, for TRL 1.12, its own venv).

    python benchmarks/llm_ppo_worker.py --impl rpg|trl --assets DIR --settings JSON

Prints one JSON line: per-iteration wall and CPU times (between consecutive iteration ends), peak RSS and
the RSS after importing torch (before anything else). The TRL side imports only torch / transformers / trl 1.12.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from memory_probe import print_worker_result, rss_mib  # noqa: E402  (this folder is on sys.path)


def run_rpg(assets: str, s: dict, marks: list[float]) -> None:
    from datasets import load_dataset

    from rpg_llm.ppo.config import ResidualPPOConfig
    from rpg_llm.ppo.trainer import ResidualPPOTrainer

    dataset = load_dataset("json", data_files=os.path.join(assets, "prompts.jsonl"), split="train")
    args = ResidualPPOConfig(
        output_dir=os.path.join(assets, "out-rpg"),
        kl_coef=s["kl_coef"],
        response_length=s["response_length"],
        per_device_train_batch_size=s["per_device_train_batch_size"],
        # rpg: rollout = per_device × accumulation × num_mini_batches
        gradient_accumulation_steps=s["rollout_batch"] // (s["per_device_train_batch_size"] * s["num_mini_batches"]),
        num_mini_batches=s["num_mini_batches"],
        num_ppo_epochs=s["num_ppo_epochs"],
        learning_rate=s["learning_rate"],
        local_rollout_forward_batch_size=s["local_rollout_forward_batch_size"],
        vf_coef=s["vf_coef"],
        max_steps=s["iterations"],
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=0,
        use_cpu=s["use_cpu"],
        stop_token="eos",  # as the TRL side: completions end at EOS (rpg, like TRL, samples the full length otherwise)
    )
    trainer = ResidualPPOTrainer(
        args,
        os.path.join(assets, "policy"),
        train_dataset=dataset,
        reward_model=os.path.join(assets, "reward"),
        callbacks=[lambda trainer, stats: marks.append((time.perf_counter(), time.process_time()))],
    )
    marks.append((time.perf_counter(), time.process_time()))
    trainer.train()


def run_trl(assets: str, s: dict, marks: list[float]) -> None:
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(os.path.join(assets, "policy"))
    dataset = load_dataset("json", data_files=os.path.join(assets, "prompts.jsonl"), split="train")
    dataset = dataset.map(lambda row: {"input_ids": tokenizer(row["prompt"])["input_ids"]}, remove_columns=["prompt"])
    args = PPOConfig(
        output_dir=os.path.join(assets, "out-trl"),
        kl_coef=s["kl_coef"],
        response_length=s["response_length"],
        per_device_train_batch_size=s["per_device_train_batch_size"],
        # TRL 1.12: rollout = per_device × accumulation; each of num_mini_batches holds rollout / num_mini_batches rows
        gradient_accumulation_steps=s["rollout_batch"] // s["per_device_train_batch_size"],
        num_mini_batches=s["num_mini_batches"],
        num_ppo_epochs=s["num_ppo_epochs"],
        learning_rate=s["learning_rate"],
        local_rollout_forward_batch_size=s["local_rollout_forward_batch_size"],
        vf_coef=s["vf_coef"],
        total_episodes=s["rollout_batch"] * s["iterations"],
        stop_token="eos",
        num_sample_generations=0,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=0,
        bf16=False,
        use_cpu=s["use_cpu"],
        missing_eos_penalty=None,
    )

    class Marks(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks.append((time.perf_counter(), time.process_time()))

    policy = AutoModelForCausalLM.from_pretrained(os.path.join(assets, "policy"))
    ref = AutoModelForCausalLM.from_pretrained(os.path.join(assets, "policy"))
    reward = AutoModelForSequenceClassification.from_pretrained(os.path.join(assets, "reward"), num_labels=1)
    value = AutoModelForSequenceClassification.from_pretrained(os.path.join(assets, "reward"), num_labels=1)
    trainer = PPOTrainer(
        args=args,
        processing_class=tokenizer,
        model=policy,
        ref_model=ref,
        reward_model=reward,
        value_model=value,
        train_dataset=dataset,
        callbacks=[Marks()],
    )
    marks.append((time.perf_counter(), time.process_time()))
    trainer.train()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--impl", choices=["rpg", "trl"], required=True)
    parser.add_argument("--assets", required=True)
    parser.add_argument("--settings", required=True, help="JSON of the shared settings")
    cli = parser.parse_args()
    settings = json.loads(cli.settings)
    import torch

    torch.set_num_threads(settings.get("threads", 1))
    torch.manual_seed(0)
    rss_before = rss_mib()
    # Import each side's stack first: the two envs carry different optional packages, so import
    # footprints differ; the training memory is the peak over this post-import baseline.
    import datasets  # noqa: F401

    if cli.impl == "rpg":
        import rpg_llm.ppo.trainer  # noqa: F401
    else:
        import trl.experimental.ppo  # noqa: F401
    rss_imported = rss_mib()
    marks: list[tuple[float, float]] = []
    (run_rpg if cli.impl == "rpg" else run_trl)(cli.assets, settings, marks)
    print_worker_result(cli.impl, marks, rss_before, rss_imported, torch=torch.__version__, versions=_versions())


def _versions() -> dict:
    from importlib.metadata import version

    return {name: version(name) for name in ("transformers", "trl", "accelerate")}


if __name__ == "__main__":
    main()
