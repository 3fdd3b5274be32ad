"""Tests of rpg_llm; the folders mirror the package (ppo/, dpo/, toy/)."""
