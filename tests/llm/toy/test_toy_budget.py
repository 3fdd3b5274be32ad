"""benchmarks/toy_budget.py: every named setting is a valid toy-job config with the completions its name says,
and the committed measurements (results/llm/toy_budget.jsonl) use only those names."""

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _script():
    spec = importlib.util.spec_from_file_location("toy_budget", ROOT / "benchmarks" / "toy_budget.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SETTINGS = _script().SETTINGS


@pytest.mark.parametrize("name", SETTINGS)
def test_each_setting_resolves_to_what_its_name_says(name):
    from rpg_llm.toy.ppo_job import default_ppo_config

    changes, grpo_scaling = SETTINGS[name]
    config = default_ppo_config(**changes, output_dir="unused")
    if name.startswith("default"):
        completions, epochs, iterations = 256, 2, 160
    else:
        completions, epochs, iterations = (
            int(n) for n in re.match(r"(?:before: )?(\d+).*? x (\d+) epochs? x (\d+)", name).groups()
        )
    assert (config.local_batch_size, config.num_ppo_epochs, config.max_steps) == (completions, epochs, iterations)
    assert grpo_scaling == ("group" if "per group" in name else "batch")


def test_the_committed_measurements_name_known_settings():
    rows = [json.loads(line) for line in (ROOT / "results" / "llm" / "toy_budget.jsonl").read_text().splitlines()]
    assert rows and {row["settings"] for row in rows} <= set(SETTINGS)
    assert all(0 <= row["kl_to_target"] < 1 and "provenance" in row for row in rows)
