"""Time per PPO iteration and peak memory: rpg's ResidualPPOTrainer vs TRL's last PPOTrainer (trl 1.12.0).

    python benchmarks/llm_ppo_vs_trl.py [--iterations 10] [--repeats 2]

TRL removed PPOTrainer after 1.12 (``trl.experimental.ppo``); this script installs ``torch==2.13.0
trl==1.12.0`` into a plain venv (no system site-packages, so it cannot see this env's trl 1.16) at
``$RPG_CACHE/venv-trl-1.12.0`` the first time. Both sides get the same tiny Llama policy, the same
reward model (TRL's value model is a copy of it, as in TRL's PPO example; rpg's critic is a copy of
the policy trunk, same size), the same prompts, batch, response length, epochs, minibatches and
KL coefficient (rpg: ω' = α̂ = kl_coef), one thread each, run alternately in separate processes.
rpg's side runs in a plain venv of its own llm stack (``$RPG_CACHE/venv-rpg-bench``, this checkout on
PYTHONPATH) so that neither process carries extra packages that transformers would import.
Reports the time per iteration (median per run after ``--warmup`` iterations; each side's best run, as
timeit does, since other jobs share the machine) and the peak RSS, as rpg / TRL ratios, into
``benchmarks/results/llm_ppo_vs_trl.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TRL_VERSION = "1.12.0"


def ensure_venv(path: Path, requirements: list[str], probe_code: str) -> Path:
    """A plain venv (no system site-packages) with ``requirements``, created once and reused."""
    python = path / "bin" / "python"
    probe = [str(python), "-c", probe_code]
    if (
        python.exists()
        and subprocess.run(probe, capture_output=True, env=dict(os.environ, PYTHONPATH="")).returncode == 0
    ):
        return python
    print(f"creating {path} with {' '.join(requirements)} (once) ...", flush=True)
    venv.EnvBuilder(with_pip=True, system_site_packages=False, clear=True).create(path)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *requirements], check=True)
    subprocess.run(probe, check=True, env=dict(os.environ, PYTHONPATH=""))
    return python


def ensure_trl_venv(path: Path) -> Path:
    return ensure_venv(
        path,
        ["torch==2.13.0", f"trl=={TRL_VERSION}"],
        "import trl, sys; from trl.experimental.ppo import PPOTrainer; sys.exit(trl.__version__ != '%s')" % TRL_VERSION,
    )


def ensure_rpg_venv(path: Path) -> Path:
    """The same kind of plain venv for rpg's side (its llm stack, this checkout on PYTHONPATH), so both
    processes carry only what they need and peak RSS compares like with like."""
    import accelerate
    import datasets
    import peft
    import transformers
    import trl

    pins = [
        "torch==2.13.0",
        f"trl=={trl.__version__}",
        f"transformers=={transformers.__version__}",
        f"peft=={peft.__version__}",
        f"accelerate=={accelerate.__version__}",
        f"datasets=={datasets.__version__}",
        "rich",
        "pyyaml",
    ]
    return ensure_venv(
        path,
        pins,
        "import trl, peft, accelerate, datasets, transformers, rich, yaml; import sys; sys.exit(trl.__version__ != %r)"
        % trl.__version__,
    )


def build_assets(directory: Path, seed: int = 0) -> dict:
    """A tiny Llama policy + tokenizer, a same-size Llama reward model, 256 prompts (jsonl)."""
    import torch
    from transformers import LlamaForCausalLM, LlamaForSequenceClassification

    sys.path.insert(0, str(ROOT))
    from rpg_llm.toy.tiny_llama import tiny_llama_config, word_tokenizer

    torch.manual_seed(seed)
    words = [f"w{i}" for i in range(500)]
    tokenizer = word_tokenizer(words)  # <pad>, <eos>, then the words: vocab 502
    shape = dict(hidden_size=128, num_layers=2, num_heads=4, max_positions=128)
    LlamaForCausalLM(tiny_llama_config(tokenizer, **shape)).save_pretrained(directory / "policy")
    tokenizer.save_pretrained(directory / "policy")
    reward_model = LlamaForSequenceClassification(tiny_llama_config(tokenizer, **shape, num_labels=1))
    reward_model.save_pretrained(directory / "reward")
    tokenizer.save_pretrained(directory / "reward")
    g = torch.Generator().manual_seed(seed)
    with open(directory / "prompts.jsonl", "w") as f:
        for _ in range(256):
            n = int(torch.randint(6, 13, (1,), generator=g))
            f.write(
                json.dumps({"prompt": " ".join(words[i] for i in torch.randint(500, (n,), generator=g).tolist())})
                + "\n"
            )
    return {
        "policy": "Llama 2 layers, hidden 128, vocab 502",
        "reward/value": "LlamaForSequenceClassification, same shape",
        "prompts": "256 prompts of 6-12 words",
    }


def run_worker(python: str, impl: str, assets: Path, settings: dict) -> dict:
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=str(ROOT) if impl == "rpg" else "",
    )
    out = subprocess.run(
        [
            python,
            str(HERE / "llm_ppo_worker.py"),
            "--impl",
            impl,
            "--assets",
            str(assets),
            "--settings",
            json.dumps(settings),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"{impl} worker failed:\n{out.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=4, help="alternating runs of each side")
    parser.add_argument("--response_length", type=int, default=24)
    parser.add_argument("--venv", default=None, help="where the trl 1.12.0 venv lives")
    parser.add_argument(
        "--rpg_python", default="venv", help="'venv' (a plain venv like TRL's, default) or 'current' (this interpreter)"
    )
    parser.add_argument("--output", default=str(HERE / "results" / "llm_ppo_vs_trl.json"))
    cli = parser.parse_args(argv)
    if cli.iterations <= cli.warmup:
        parser.error("--iterations must exceed --warmup")
    cache = Path(os.environ.get("RPG_CACHE") or Path.home() / ".cache" / "rpg")
    trl_python = ensure_trl_venv(Path(cli.venv) if cli.venv else cache / f"venv-trl-{TRL_VERSION}")
    rpg_python = sys.executable if cli.rpg_python == "current" else str(ensure_rpg_venv(cache / "venv-rpg-bench"))
    # Same rollout (32 prompts), same 2 mini-batches of 16 = 2 micro-batches of 8, 4 epochs: identical
    # forward/backward work.
    settings = dict(
        kl_coef=0.05,
        response_length=cli.response_length,
        per_device_train_batch_size=8,
        rollout_batch=32,
        num_mini_batches=2,
        num_ppo_epochs=4,
        learning_rate=1e-5,
        local_rollout_forward_batch_size=32,
        vf_coef=0.1,
        iterations=cli.iterations,
        use_cpu=True,
        threads=1,
    )
    runs: dict[str, list[dict]] = {"rpg": [], "trl": []}
    with tempfile.TemporaryDirectory() as tmp:
        assets = Path(tmp)
        described = build_assets(assets)
        for repeat in range(cli.repeats):
            for impl in ("rpg", "trl") if repeat % 2 == 0 else ("trl", "rpg"):
                result = run_worker(rpg_python if impl == "rpg" else str(trl_python), impl, assets, settings)
                runs[impl].append(result)
                steady = result["iteration_seconds"][cli.warmup :]
                cpu = result["iteration_cpu_seconds"][cli.warmup :]
                print(
                    f"{impl}: {statistics.median(steady):.3f} s/iteration wall, {statistics.median(cpu):.3f} s CPU, "
                    f"peak RSS {result['peak_rss_mib']:.0f} MiB",
                    flush=True,
                )
    summary = {}
    for impl, results in runs.items():
        steady = [t for r in results for t in r["iteration_seconds"][cli.warmup :]]
        cpu = [t for r in results for t in r["iteration_cpu_seconds"][cli.warmup :]]
        per_run_wall = [statistics.median(r["iteration_seconds"][cli.warmup :]) for r in results]
        per_run_cpu = [statistics.median(r["iteration_cpu_seconds"][cli.warmup :]) for r in results]
        summary[impl] = {
            # Best run = least disturbed by other jobs on a shared machine (as timeit takes the minimum).
            "best_run_median_seconds_per_iteration": min(per_run_wall),
            "best_run_median_cpu_seconds_per_iteration": min(per_run_cpu),
            "per_run_median_seconds": per_run_wall,
            "per_run_median_cpu_seconds": per_run_cpu,
            "median_seconds_per_iteration": statistics.median(steady),
            "median_cpu_seconds_per_iteration": statistics.median(cpu),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in results),
            "rss_after_imports_mib": max(r["rss_after_imports_mib"] for r in results),
            "training_peak_rss_mib": max(r["peak_rss_mib"] - r["rss_after_imports_mib"] for r in results),
            "versions": results[0]["versions"],
        }
    ratio_time = (
        summary["rpg"]["best_run_median_seconds_per_iteration"]
        / summary["trl"]["best_run_median_seconds_per_iteration"]
    )
    ratio_cpu = (
        summary["rpg"]["best_run_median_cpu_seconds_per_iteration"]
        / summary["trl"]["best_run_median_cpu_seconds_per_iteration"]
    )
    ratio_time_pooled = summary["rpg"]["median_seconds_per_iteration"] / summary["trl"]["median_seconds_per_iteration"]
    ratio_mem = summary["rpg"]["training_peak_rss_mib"] / summary["trl"]["training_peak_rss_mib"]
    ratio_total_mem = summary["rpg"]["peak_rss_mib"] / summary["trl"]["peak_rss_mib"]
    sys.path.insert(0, str(ROOT))
    from rpg.utils.atomic import write_text_atomic
    from rpg_llm.report import provenance

    payload = {
        "provenance": provenance(
            [sys.executable, "benchmarks/llm_ppo_vs_trl.py", *(argv if argv is not None else sys.argv[1:])],
            {"seeds": 0, "repeats": cli.repeats, "iterations": cli.iterations, "warmup_dropped": cli.warmup},
        ),
        "settings": settings,
        "assets": described,
        "environments": {"rpg": rpg_python, "trl": str(trl_python)},
        "summary": summary,
        "ratio_time_rpg_over_trl": ratio_time,
        "ratio_cpu_time_rpg_over_trl": ratio_cpu,
        "ratio_time_pooled_medians_rpg_over_trl": ratio_time_pooled,
        "time_note": "Per run: median over post-warm-up iterations; ratios compare each side's best (least "
        "disturbed) run, "
        "as timeit takes the minimum. wall = what a user waits; CPU = the process's CPU time with one thread, "
        "less inflated by other jobs on a shared machine. Pooled medians over all runs are kept for reference.",
        "load_average_at_end": os.getloadavg(),
        "ratio_training_peak_rss_rpg_over_trl": ratio_mem,
        "ratio_total_peak_rss_rpg_over_trl": ratio_total_mem,
        "memory_note": "CPU run: memory is process RSS. 'training' = peak RSS minus RSS after importing "
        "each side's stack "
        "(the envs differ in optional packages that transformers/trl import, which shifts the total by tens of MiB).",
        "target": "time ratio <= 0.7 at no more memory",
        "runs": runs,
    }
    output = Path(cli.output)
    write_text_atomic(output, json.dumps(payload, indent=1))
    print(
        f"time per iteration rpg/TRL (best runs) = {ratio_time:.2f}x wall, {ratio_cpu:.2f}x CPU "
        f"(pooled medians {ratio_time_pooled:.2f}x); training peak RSS rpg/TRL = {ratio_mem:.2f}x "
        f"(total peak RSS {ratio_total_mem:.2f}x)  -> {output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
