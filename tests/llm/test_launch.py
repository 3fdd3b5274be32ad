"""TRL's launch keys: ``num_processes`` / ``accelerate_config`` (YAML or flags) re-run ``rpg ppo`` / ``rpg dpo``
under ``accelerate launch``, as ``trl ppo`` / ``trl dpo`` do; the launched processes ignore them."""

from __future__ import annotations

import importlib.resources
import json
import os
import subprocess
import sys

import pytest

from rpg_llm.dpo import cli as dpo_cli
from rpg_llm.launch import LAUNCHED_ENV, relaunch_with_accelerate
from rpg_llm.ppo import cli as ppo_cli

from .tiny_lm import build_tiny_causal_lm

MULTI_GPU = str(importlib.resources.files("trl.accelerate_configs").joinpath("multi_gpu.yaml"))


@pytest.mark.parametrize("cli", [ppo_cli, dpo_cli], ids=["ppo", "dpo"])
def test_yaml_launch_keys_become_accelerate_launch_arguments(cli, tmp_path, monkeypatch):
    monkeypatch.delenv(LAUNCHED_ENV, raising=False)
    config = tmp_path / "job.yaml"
    config.write_text("num_processes: 2\naccelerate_config: multi_gpu\nmax_steps: 3\n")
    argv = ["--config", str(config), "--output_dir", str(tmp_path / "o")]
    parsed, launch_args, script_argv = cli.parse_with_launch(argv)
    assert launch_args == ["--config_file", MULTI_GPU, "--num_processes", "2"]
    assert script_argv == argv and parsed[2 if cli is ppo_cli else 1].max_steps == 3
    # as flags: they leave the job's own argv
    parsed, launch_args, script_argv = cli.parse_with_launch(["--num_processes", "2", *argv[2:]])
    assert launch_args == ["--num_processes", "2"] and script_argv == argv[2:]
    # inside the launched processes the keys are the launcher's: accepted and dropped
    monkeypatch.setenv(LAUNCHED_ENV, "1")
    assert cli.parse_with_launch(argv)[1] == []


@pytest.mark.parametrize("cli,module", [(ppo_cli, "rpg_llm.ppo.cli"), (dpo_cli, "rpg_llm.dpo.cli")], ids=["ppo", "dpo"])
def test_main_relaunches_itself_under_accelerate(cli, module, tmp_path, monkeypatch):
    monkeypatch.delenv(LAUNCHED_ENV, raising=False)
    seen = {}

    def fake_launch(arguments):
        seen.update(vars(arguments), launched_env=os.environ.get(LAUNCHED_ENV))

    import accelerate.commands.launch

    monkeypatch.setattr(accelerate.commands.launch, "launch_command", fake_launch)
    argv = [
        "--num_processes",
        "2",
        "--accelerate_config",
        "multi_gpu",
        "--max_steps",
        "3",
        "--output_dir",
        str(tmp_path),
    ]
    assert cli.main(argv) == 0
    assert (seen["num_processes"], seen["config_file"], seen["module"]) == (2, MULTI_GPU, True)
    assert seen["training_script"] == module and seen["training_script_args"] == [
        "--max_steps",
        "3",
        "--output_dir",
        str(tmp_path),
    ]
    assert seen["launched_env"] == "1" and LAUNCHED_ENV not in os.environ


def test_a_failing_launched_job_returns_its_exit_code(monkeypatch):
    def failing(arguments):
        raise subprocess.CalledProcessError(2, ["python"])

    assert relaunch_with_accelerate("rpg_llm.ppo.cli", ["--num_processes", "1"], [], launch=failing) == 2


def test_an_unknown_accelerate_config_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(LAUNCHED_ENV, raising=False)
    assert ppo_cli.main(["--accelerate_config", "zero9", "--output_dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("rpg ppo: error: Accelerate config zero9")


@pytest.mark.slow
def test_rpg_ppo_with_num_processes_runs_under_accelerate_launch(tmp_path):
    model = build_tiny_causal_lm(tmp_path / "model")
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"w{i} w{i + 1}"}) + "\n" for i in range(4)))
    (tmp_path / "launch_rewards.py").write_text(
        "def length(prompts, completions, **kwargs):\n    return [float(len(c)) for c in completions]\n"
    )
    config = tmp_path / "job.yaml"
    config.write_text(
        "num_processes: 1\ncpu: true\nmax_steps: 1\nresponse_length: 3\nper_device_train_batch_size: 2\n"
        "num_ppo_epochs: 1\nreward_funcs: ['launch_rewards:length']\n"
    )
    env = dict(os.environ, PYTHONPATH=f"{os.getcwd()}{os.pathsep}{tmp_path}", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env.pop(LAUNCHED_ENV, None)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "rpg.cli",
            "ppo",
            "--config",
            str(config),
            "--model_name_or_path",
            str(model),
            "--dataset_name",
            str(data),
            "--output_dir",
            str(tmp_path / "out"),
            "--disable_tqdm",
            "true",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "done: 1 iterations" in run.stdout and (tmp_path / "out" / "config.json").exists()
