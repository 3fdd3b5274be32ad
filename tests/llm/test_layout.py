"""Layout rule of rpg_llm: the library (trainers, configs, their helpers) never imports the toy world.

Only the command lines (``ppo/cli.py``, ``dpo/cli.py``) reach into ``rpg_llm.toy``, to run the embedded
default job; everything a user imports to train a real model stands without it.
"""

import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "rpg_llm"
COMMAND_LINES = {"ppo/cli.py", "dpo/cli.py"}
IMPORTS_TOY = re.compile(
    r"^\s*(?:from\s+rpg_llm\.toy\b|import\s+rpg_llm\.toy\b|from\s+rpg_llm\s+import\s+toy\b)", re.MULTILINE
)


def _library_files() -> list[pathlib.Path]:
    files = [path for path in PACKAGE.rglob("*.py") if path.relative_to(PACKAGE).parts[0] != "toy"]
    return [path for path in files if path.relative_to(PACKAGE).as_posix() not in COMMAND_LINES]


def test_the_library_does_not_import_the_toy_world():
    files = _library_files()
    assert {"ppo/trainer.py", "dpo/trainer.py", "cli_common.py"} <= {p.relative_to(PACKAGE).as_posix() for p in files}
    offenders = [path.relative_to(ROOT).as_posix() for path in files if IMPORTS_TOY.search(path.read_text())]
    assert offenders == []


def test_public_names_load_on_first_use():
    code = (
        "import sys, rpg_llm\n"
        "assert 'transformers' not in sys.modules and 'trl' not in sys.modules, 'import rpg_llm should stay cheap'\n"
        "from rpg_llm import DecoupledDPOConfig, DecoupledDPOTrainer, ResidualPPOConfig, ResidualPPOTrainer\n"
        "from rpg_llm.dpo import config, trainer\n"
        "from rpg_llm.ppo import config as ppo_config, trainer as ppo_trainer\n"
        "assert (DecoupledDPOConfig, DecoupledDPOTrainer) == (config.DecoupledDPOConfig, trainer.DecoupledDPOTrainer)\n"
        "assert (ResidualPPOConfig, ResidualPPOTrainer) == (ppo_config.ResidualPPOConfig, "
        "ppo_trainer.ResidualPPOTrainer)\n"
        "print(sorted(rpg_llm.__all__))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[0] == str(
        sorted(["ResidualPPOTrainer", "ResidualPPOConfig", "DecoupledDPOTrainer", "DecoupledDPOConfig"])
    )
