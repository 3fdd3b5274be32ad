"""Shared fixture of the LLM tests: toy worlds (:mod:`rpg_llm.toy.world`), each built once per session."""

from __future__ import annotations

import pytest

from rpg_llm.toy.world import ToyWorld, ToyWorldConfig


@pytest.fixture(scope="session")
def toy_world(tmp_path_factory):
    """``toy_world(**fields)``: the world of those :class:`ToyWorldConfig` fields, built once per session.

    Small test worlds go to a per-session cache. No fields means the default world (the embedded default
    job's) in the shared cache, ``$RPG_CACHE`` or ``~/.cache/rpg``, so it is distilled once per machine.
    """
    cache = tmp_path_factory.mktemp("toy_worlds")
    built: dict[tuple, ToyWorld] = {}

    def build(**fields) -> ToyWorld:
        key = tuple(sorted(fields.items()))
        if key not in built:
            built[key] = ToyWorld.build(ToyWorldConfig(**fields), cache if fields else None, progress=False)
        return built[key]

    return build
