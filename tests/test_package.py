"""Layout rules: rpg/ is torch-only theory; the console command lists its subcommands."""

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FORBIDDEN = ("transformers", "trl", "peft", "accelerate", "datasets", "gymnasium", "mujoco", "rpg_llm", "rpg_control")


def test_rpg_imports_no_domain_stack_statically():
    pattern = re.compile(r"^\s*(?:import|from)\s+(" + "|".join(FORBIDDEN) + r")\b", re.MULTILINE)
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "rpg").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_importing_rpg_loads_no_domain_stack():
    code = "import sys, rpg, rpg.cli; print(','.join(m for m in {!r} if m in sys.modules))".format(FORBIDDEN)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


@pytest.mark.parametrize("side", ["rpg_llm", "rpg_control"])
def test_domains_do_not_import_each_other(side):
    other = "rpg_control" if side == "rpg_llm" else "rpg_llm"
    pattern = re.compile(rf"^\s*(?:import|from)\s+{other}\b", re.MULTILINE)
    assert [p.name for p in (ROOT / side).rglob("*.py") if pattern.search(p.read_text())] == []


def test_cli_help_lists_the_subcommands():
    out = subprocess.run([sys.executable, "-m", "rpg.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("ppo", "dpo", "control"):
        assert re.search(rf"^\s+{command}\s", out, re.MULTILINE), out


def test_cli_unknown_command_is_one_clear_line():
    result = subprocess.run([sys.executable, "-m", "rpg.cli", "trian"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "unknown command 'trian'; choose one of: ppo, dpo, control" in result.stderr


def test_no_function_in_the_packages_is_over_80_lines():
    import ast

    long = []
    for package in ("rpg", "rpg_llm", "rpg_control"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    if node.end_lineno - node.lineno + 1 > 80:
                        long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert long == []
