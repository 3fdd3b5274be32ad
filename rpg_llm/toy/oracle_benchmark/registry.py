"""Every contender of the exact-oracle benchmark, by key (each module lists its own in ``CONTENDERS``)."""

from __future__ import annotations

import importlib

from rpg_llm.toy.oracle_benchmark.contract import Contender

__all__ = ["CONTENDER_MODULES", "all_contenders", "trainer_settings"]

CONTENDER_MODULES = ("rpg_contenders", "trl_contenders", "preference_contenders")


def _modules():
    return [importlib.import_module(f"rpg_llm.toy.oracle_benchmark.{name}") for name in CONTENDER_MODULES]


def trainer_settings() -> dict:
    """module -> the settings its trainers take beyond the benchmark's (each module's ``trainer_settings()``):
    the shared toy PPO defaults, TRL's schedule, the preference learning rate, ... A change to any of them
    must not let the run cache serve runs made before it, so the cache's key covers them."""
    return {module.__name__.rsplit(".", 1)[-1]: module.trainer_settings() for module in _modules()}


def all_contenders() -> dict[str, Contender]:
    """key -> Contender, in the modules' order; a key defined twice is an error."""
    table: dict[str, Contender] = {}
    for module in _modules():
        for contender in module.CONTENDERS:
            if contender.key in table:
                raise ValueError(f"contender key {contender.key!r} is defined twice")
            table[contender.key] = contender
    return table
