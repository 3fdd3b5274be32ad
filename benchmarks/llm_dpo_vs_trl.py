"""Time per step and peak memory of DecoupledDPOTrainer against TRL's DPOTrainer (sigmoid loss).

    python benchmarks/llm_dpo_vs_trl.py                 # CPU, ~2 minutes
    python benchmarks/llm_dpo_vs_trl.py --steps 50 --hidden-size 512

Same locally built Llama, same preference batch, same optimizer; a full training step each
(forward of policy and reference, loss, backward, AdamW step). Timing: the trainers live in one
process and their steps are interleaved one by one (in rotating order), so drift in machine load hits both alike;
the report is the median step time and its ratio to TRL's. Memory: on CUDA the peak allocated
memory of each trainer's steps (in process); on CPU the peak RSS growth during training steps,
measured in a fresh child process per trainer (a thread samples the resident set while steps run).
Writes ``benchmarks/results/llm_dpo_vs_trl.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

# The tiny word-level model and random pairs are the tests' helpers (tests/llm/tiny_lm.py), not part of the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

VARIANTS = {
    # name: (trainer, config kwargs)
    "trl_sigmoid": ("trl", dict(loss_type=["sigmoid"], beta=0.1)),
    "rpg_decoupled": ("rpg", dict(loss_type=["decoupled"], beta=0.1, alpha_hat=0.1, omega_prime=0.2)),
    "rpg_ce": ("rpg", dict(loss_type=["ce"], beta=0.1)),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per trainer")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=4, help="preference pairs per batch")
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--words", type=int, default=2000)
    parser.add_argument("--length", type=int, default=64, help="prompt length and maximum completion length")
    parser.add_argument("--output", default="benchmarks/results/llm_dpo_vs_trl.json")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)  # internal: one variant, memory only
    parser.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def build_trainer(variant: str, workdir: Path, args):
    from llm.tiny_lm import random_preference_dataset
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from rpg_llm.dpo.config import DecoupledDPOConfig
    from rpg_llm.dpo.trainer import DecoupledDPOTrainer
    from rpg_llm.precision import bf16_supported_on_device

    kind, config = VARIANTS[variant]
    common = dict(
        output_dir=str(workdir / variant),
        per_device_train_batch_size=args.pairs,
        report_to="none",
        gradient_checkpointing=False,
        save_strategy="no",
        learning_rate=1e-5,
        seed=0,
        disable_tqdm=True,
        **config,
    )
    if kind == "trl":
        trainer_args = DPOConfig(bf16=bf16_supported_on_device(), **common)
        trainer_class = DPOTrainer
    else:
        trainer_args = DecoupledDPOConfig(**common)
        trainer_class = DecoupledDPOTrainer
    dataset = random_preference_dataset(
        args.pairs,
        num_words=args.words,
        prompt_length=args.length,
        max_completion_length=args.length,
        seed=0,
        with_labels=True,
    )
    model_dir = workdir / "model"
    trainer = trainer_class(
        str(model_dir),
        args=trainer_args,
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(model_dir),
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(args.pairs)])
    batch = {key: value.to(trainer.accelerator.device) for key, value in batch.items()}
    optimizer = torch.optim.AdamW([p for p in trainer.model.parameters() if p.requires_grad], lr=1e-5)
    trainer.model.train()
    return trainer, batch, optimizer


def train_step(trainer, batch, optimizer) -> None:
    loss = trainer.compute_loss(trainer.model, dict(batch))
    trainer.accelerator.backward(loss)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def synchronize():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def memory_child(variant: str, workdir: Path, args) -> None:
    """Peak RSS growth during training steps for one variant, in a fresh process.

    The process-wide high-water mark is set by imports (~1 GB) and says nothing about training, so a
    thread samples the resident set every millisecond while the steps run; the report is the peak
    minus the resident set just before the first step (activations, gradients, optimizer state).
    """
    import threading

    trainer, batch, optimizer = build_trainer(variant, workdir, args)
    before = current_rss_bytes()
    peak, done = [before], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], current_rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for _ in range(args.warmup + 2):
        train_step(trainer, batch, optimizer)
    done.set()
    sampler.join()
    print(json.dumps({"variant": variant, "rss_before_steps_bytes": before, "rss_growth_bytes": peak[0] - before}))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child, Path(args.workdir), args)
        return 0
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    from llm.tiny_lm import build_tiny_causal_lm

    from rpg.utils.atomic import write_text_atomic
    from rpg_llm.report import provenance

    started = time.perf_counter()
    # Commit and dirty flag at the start: the code that runs is the code recorded.
    facts = provenance(["python benchmarks/llm_dpo_vs_trl.py", *(argv if argv is not None else sys.argv[1:])])
    with tempfile.TemporaryDirectory(prefix="llm_dpo_bench_") as tmp:
        workdir = Path(tmp)
        build_tiny_causal_lm(
            workdir / "model", num_words=args.words, hidden_size=args.hidden_size, num_layers=args.layers, seed=0
        )
        trainers = {name: build_trainer(name, workdir, args) for name in VARIANTS}
        times = {name: [] for name in VARIANTS}
        peak_cuda = {}
        names = list(trainers)
        for step in range(args.warmup + args.steps):
            # Interleaved one step each, the order rotating every step so no trainer always runs first.
            for name in names[step % len(names) :] + names[: step % len(names)]:
                trainer, batch, optimizer = trainers[name]
                if torch.cuda.is_available():
                    torch.cuda.reset_peak_memory_stats()
                synchronize()
                start = time.perf_counter()
                train_step(trainer, batch, optimizer)
                synchronize()
                if step >= args.warmup:
                    times[name].append(time.perf_counter() - start)
                    if torch.cuda.is_available():
                        peak_cuda[name] = max(peak_cuda.get(name, 0), torch.cuda.max_memory_allocated())
        del trainers
        memory = {}
        if not torch.cuda.is_available():
            for name in VARIANTS:
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--memory-child",
                        name,
                        "--workdir",
                        str(workdir),
                        "--pairs",
                        str(args.pairs),
                        "--words",
                        str(args.words),
                        "--length",
                        str(args.length),
                        "--warmup",
                        str(args.warmup),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                memory[name] = json.loads(out.stdout.strip().splitlines()[-1])

    baseline = "trl_sigmoid"
    rows = {}
    for name in VARIANTS:
        median = statistics.median(times[name])
        row = {
            "median_step_seconds": median,
            "time_ratio_vs_trl": median / statistics.median(times[baseline]),
            "steps_timed": len(times[name]),
        }
        if torch.cuda.is_available():
            row["peak_cuda_bytes"] = peak_cuda[name]
            row["memory_ratio_vs_trl"] = peak_cuda[name] / peak_cuda[baseline]
        else:
            row.update(
                rss_growth_bytes=memory[name]["rss_growth_bytes"],
                rss_growth_ratio_vs_trl=memory[name]["rss_growth_bytes"] / memory[baseline]["rss_growth_bytes"],
            )
        rows[name] = row
    facts.update(
        {
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "threads": torch.get_num_threads(),
            "seed": 0,
            "model": f"Llama hidden={args.hidden_size} layers={args.layers} vocab={args.words + 4}",
            "batch": f"{args.pairs} pairs, prompt {args.length} tokens, completions 1..{args.length} tokens (+EOS)",
            "steps": args.steps,
            "warmup": args.warmup,
            "wall_seconds": round(time.perf_counter() - started, 1),
        }
    )
    result = {
        "provenance": facts,
        "baseline": baseline,
        "variants": {k: VARIANTS[k][1] for k in VARIANTS},
        "results": rows,
    }
    output = Path(args.output)
    write_text_atomic(output, json.dumps(result, indent=1, default=str))

    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"DecoupledDPOTrainer vs TRL DPOTrainer (sigmoid), {facts['device']}, median of {args.steps} steps"
    )
    for heading in ("variant", "s/step", "time ratio vs TRL", "peak memory ratio vs TRL"):
        table.add_column(heading)
    for name, row in rows.items():
        memory_ratio = row.get("memory_ratio_vs_trl", row.get("rss_growth_ratio_vs_trl"))
        table.add_row(
            name, f"{row['median_step_seconds']:.4f}", f"{row['time_ratio_vs_trl']:.3f}", f"{memory_ratio:.3f}"
        )
    Console(width=120).print(table)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
