"""The toy token world with exact targets, and the embedded-default jobs that compare trainers on it.

Not needed to train a real model: ``world`` builds the world (a distilled tiny Llama prior and the exact
optimal policies), ``tiny_llama`` its word tokenizer and model shape, ``ppo_job`` / ``dpo_job`` run the
comparison tables, ``dpo_pairs`` samples preference pairs with Bradley–Terry labels on the known reward.
"""
