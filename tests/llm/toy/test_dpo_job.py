"""Oracle test: on the toy world each preference loss moves the prior toward its own exact target.

Pairs are sampled from the exact prior and labelled by Bradley–Terry on the true r_R, so the
population optimum is known in closed form (paper eq. 25): decoupled DPO → π_prior^(ω'/α̂)·exp(r_R/α̂),
DPO → π_prior·exp(r_R/β). With ω'/α̂ = 2 the two targets are far apart (KL ≈ 2 between them), so
"closer to its own target than to the other one" separates the losses, not just "it moved".
Measured on the default settings (seed 0, 8000 pairs, 120 steps): DPO 0.75 → 0.27, decoupled 1.21 → 0.22.
"""

from __future__ import annotations

import pytest

from rpg_llm.toy.dpo_job import default_methods, evaluate_preference_method, train_preference_method
from rpg_llm.toy.dpo_pairs import sample_preference_pairs

BETA, ALPHA_HAT, OMEGA_PRIME = 0.5, 0.5, 1.0


@pytest.mark.slow
def test_dpo_and_decoupled_dpo_move_toward_their_own_exact_targets(toy_world, tmp_path):
    world = toy_world()  # the default world, in the shared cache: $RPG_CACHE or ~/.cache/rpg
    train_pairs = sample_preference_pairs(world, 8000, seed=0)
    heldout_pairs = sample_preference_pairs(world, 500, seed=1)
    reference_log_probs = world.model_log_probs(world.load_prior_model())
    dpo, decoupled = default_methods(BETA, ALPHA_HAT, OMEGA_PRIME, ["dpo", "decoupled"])

    def kl(log_probs, method):
        return world.evaluate_log_probs(log_probs, *method.target_coefficients)["kl_to_target"]

    results = {}
    for method in (dpo, decoupled):
        model = train_preference_method(
            world,
            method,
            train_pairs,
            tmp_path / method.loss_type,
            max_steps=120,
            learning_rate=5e-4,
            batch_size=64,
            progress=False,
        )
        log_probs = world.model_log_probs(model)
        results[method.loss_type] = dict(
            evaluate_preference_method(world, model, method, heldout_pairs, reference_log_probs),
            start=kl(reference_log_probs, method),
            to_other_target=kl(log_probs, decoupled if method is dpo else dpo),
        )

    dpo_result, decoupled_result = results["sigmoid"], results["decoupled"]
    # Each halves (or better) its KL to its own target, starting from the prior model...
    assert dpo_result["kl_to_target"] < 0.5 * dpo_result["start"], dpo_result
    assert decoupled_result["kl_to_target"] < 0.4 * decoupled_result["start"], decoupled_result
    # ...ends at least twice as close to its own target as to the other loss's target...
    assert dpo_result["kl_to_target"] < 0.5 * dpo_result["to_other_target"], dpo_result
    assert decoupled_result["kl_to_target"] < 0.5 * decoupled_result["to_other_target"], decoupled_result
    # ...and has left the prior (the exact targets sit 0.90 / 0.78 nats from it).
    assert dpo_result["kl_to_prior"] > 0.3 and decoupled_result["kl_to_prior"] > 0.3, results
    # ω'/α̂ = 2 sharpens the prior: decoupled DPO keeps more basic reward (target 9.96 vs DPO's 7.28).
    assert decoupled_result["basic"] > dpo_result["basic"] + 1.0, results
    # The learned implicit rewards rank held-out pairs better than chance (BT labels are noisy: ~0.6 is good).
    assert dpo_result["implicit_reward_accuracy"] > 0.55 and decoupled_result["implicit_reward_accuracy"] > 0.55
