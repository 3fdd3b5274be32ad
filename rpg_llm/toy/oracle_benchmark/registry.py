"""Every contender of the exact-oracle benchmark, by key (each module lists its own in ``CONTENDERS``)."""

from __future__ import annotations

import importlib

from rpg_llm.toy.oracle_benchmark.contract import Contender

__all__ = ["CONTENDER_MODULES", "all_contenders"]

CONTENDER_MODULES = ("rpg_contenders", "trl_contenders", "preference_contenders")


def all_contenders() -> dict[str, Contender]:
    """key -> Contender, in the modules' order; a key defined twice is an error."""
    table: dict[str, Contender] = {}
    for name in CONTENDER_MODULES:
        module = importlib.import_module(f"rpg_llm.toy.oracle_benchmark.{name}")
        for contender in module.CONTENDERS:
            if contender.key in table:
                raise ValueError(f"contender key {contender.key!r} is defined twice")
            table[contender.key] = contender
    return table
