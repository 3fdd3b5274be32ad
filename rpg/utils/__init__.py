"""Plumbing both domains share and that is not math: provenance of results and crash-safe writes.

Standard library only (plus torch, which ``rpg`` already needs), so ``rpg_llm`` and ``rpg_control``
can import it without importing each other.
"""
