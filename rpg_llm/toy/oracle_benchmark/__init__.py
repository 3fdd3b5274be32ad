"""The exact-oracle benchmark: RLHF trainers (rpg's and TRL's) scored against the exact optimum of
what each one optimizes, on the toy token world (docs/llm_oracle_benchmark.md)."""
