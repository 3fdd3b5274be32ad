"""Contenders of the exact-oracle benchmark (to be filled in: see contract.py for what one is)."""

from __future__ import annotations

from rpg_llm.toy.oracle_benchmark.contract import Contender

CONTENDERS: list[Contender] = []
