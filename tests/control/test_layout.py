"""The training code's layout may change; its results may not. A fixed-seed run's checkpoints and
metrics rows are pinned to a checksum, and no function of rpg_control grows past 80 lines."""

import ast
import hashlib
import json
import platform
from pathlib import Path

import pytest
import torch

pytest.importorskip("mujoco")

import mujoco  # noqa: E402

from rpg_control.checkpoint import load_checkpoint  # noqa: E402
from rpg_control.config import load_config  # noqa: E402
from rpg_control.train import train  # noqa: E402
from rpg_control.train_log import WALL_CLOCK_FIELDS  # noqa: E402

TINY = {"num_envs": 2, "steps_per_env": 8, "num_minibatches": 2, "num_epochs": 2, "checkpoint_every_steps": 32}
# What a checkpoint holds that the run computed (not provenance, not wall clock).
CHECKPOINT_KEYS = (
    "model",
    "optimizer",
    "normalizer",
    "rng",
    "prior",
    "step",
    "iteration",
    "best_score",
    "best_step",
    "selection",
    "normalizer_frozen",
)

# First written by the code of commit b78b1b1 (before the split of train() into run_state / rollout / storage /
# train_log), which the split reproduced bit for bit; regenerated for the faster PPO update (fused Adam, one
# autograd node per tanh MLP: equal to the old update within 1e-7, not bit for bit) and again for the gradient
# written out without autograd (issue 15; equal to the legacy update within the same tolerance, checked by
# tests/control/test_fast_update.py first), and again for the preallocated gradients (the first layer's
# weight gradient written through a transposed view, the entropy from the global log σ's one row; issue 15,
# after test_fast_update.py passed), on this software and CPU, one torch thread (the test suite's
# setting). A deliberate change of the numerics changes it: regenerate it with `python tests/control/test_layout.py`.
PINNED = {
    "soft+resume": "9f9fa06a9bde978b11bdf7a7352ad0595de8f31287c6424b7dabf6117714447f",
    "residual": "cd5009209d14bcbf7c77a697f6c7a2212d232225c07dd12e4c02cbbc59afe5b5",
}
# Environments that gave exactly these checksums (pinned on the first; mujoco 4.0.1 checked to match on
# 2026-12-07: the same Hopper trajectories, checkpoints and metrics bit for bit under both releases).
PINNED_ENVIRONMENTS = (
    "torch 2.13.0+cpu, mujoco 4.0.0, x86_64 AVX2",
    "torch 2.13.0+cpu, mujoco 4.0.1, x86_64 AVX2",
)


def _environment() -> str:
    capability = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends.cpu, "get_cpu_capability") else "?"
    return f"torch {torch.__version__}, mujoco {mujoco.__version__}, {platform.machine()} {capability}"


def _digest(value) -> object:
    """A JSON-able copy of ``value`` with each tensor replaced by dtype, shape and the SHA-256 of its bytes."""
    if torch.is_tensor(value):
        data = value.detach().contiguous().cpu().numpy().tobytes()
        return f"{value.dtype}{tuple(value.shape)}:{hashlib.sha256(data).hexdigest()}"
    if isinstance(value, dict):
        return {str(k): _digest(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_digest(v) for v in value]
    return value


def run_fingerprint(run_dir: Path) -> str:
    """SHA-256 over last.pt and best.pt (computed parts) and every metrics row minus its wall-clock fields."""
    record = {}
    for name in ("last.pt", "best.pt"):
        payload = load_checkpoint(run_dir / "checkpoints" / name)
        record[name] = _digest({k: payload[k] for k in CHECKPOINT_KEYS})
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    record["metrics"] = [{k: v for k, v in row.items() if k not in WALL_CLOCK_FIELDS} for row in rows]
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def fingerprints(tmp_path: Path) -> dict[str, str]:
    """Soft PPO trained 64 steps, killed, resumed to 96; then Residual PPO customizing it (prior, warm-up)."""
    soft = tmp_path / "soft"
    train(load_config("hopper", "soft", {**TINY, "total_steps": 64}), soft, progress=False)
    train(load_config("hopper", "soft", {**TINY, "total_steps": 96}), soft, progress=False)
    residual = tmp_path / "residual"
    prior = str(soft / "checkpoints" / "best.pt")
    config = load_config(
        "hopper", "residual", {**TINY, "total_steps": 64, "prior": prior, "critic_warmup_fraction": 0.25}
    )
    train(config, residual, progress=False)
    return {"environment": _environment(), "soft+resume": run_fingerprint(soft), "residual": run_fingerprint(residual)}


def test_a_fixed_seed_run_reproduces_the_pinned_checkpoints_and_metrics(tmp_path):
    if _environment() not in PINNED_ENVIRONMENTS:
        pytest.skip(f"checksums pinned on {' / '.join(PINNED_ENVIRONMENTS)}, this is {_environment()}")
    assert fingerprints(tmp_path) == {"environment": _environment(), **PINNED}


def test_the_fingerprint_sees_a_changed_parameter(tmp_path):
    """The checksum is not blind: one parameter nudged by one ulp changes it."""
    train(load_config("hopper", "soft", {**TINY, "total_steps": 32}), tmp_path, progress=False)
    before = run_fingerprint(tmp_path)
    for name in ("last.pt", "best.pt"):
        path = tmp_path / "checkpoints" / name
        payload = load_checkpoint(path)
        weight = next(iter(payload["model"].values()))
        weight.view(-1)[0] = torch.nextafter(weight.view(-1)[0], torch.tensor(float("inf")))
        torch.save(payload, path)
    assert run_fingerprint(tmp_path) != before


def test_no_function_in_rpg_control_is_over_80_lines():
    package = Path(__file__).resolve().parents[2] / "rpg_control"
    long = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80:
                long.append(f"{path.relative_to(package)}:{node.lineno} {node.name}")
    assert not long


def test_the_variant_names_are_defined_once():
    from rpg_control import cli, config, variants
    from rpg_control.reproduce import plan

    assert config.VARIANTS is variants.VARIANTS and plan.TRAINING_VARIANTS is variants.VARIANTS
    assert config.CUSTOMIZATION_VARIANTS is variants.CUSTOMIZATION_VARIANTS is plan.CUSTOMIZATION_VARIANTS
    assert cli.SCRATCH_VARIANTS is variants.SCRATCH_VARIANTS


if __name__ == "__main__":  # print the fingerprints of this checkout's code, to pin them above
    import tempfile

    torch.set_num_threads(1)  # the suite's setting (tests/conftest.py): GEMM rounding depends on the split
    with tempfile.TemporaryDirectory() as folder:
        print(json.dumps(fingerprints(Path(folder)), indent=4))
