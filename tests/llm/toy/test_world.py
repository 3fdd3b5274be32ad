"""The toy token world: exact targets agree with rpg.maxent, rewards are what they claim, evaluation is exact."""

import math
import re

import pytest
import torch

from rpg.maxent import soft_value_iteration
from rpg_llm.toy.world import ToyWorld, ToyWorldConfig

SMALL = dict(vocab_size=5, completion_length=3, num_prompts=3, distill_steps=150, hidden_size=32, num_heads=2, seed=3)


@pytest.fixture(scope="module")
def world(toy_world):
    return toy_world(**SMALL)


def test_exact_prior_is_the_sequence_gibbs_distribution_of_r(world):
    # Deterministic dynamics: the soft-optimal policy of r at α is π(y|x) ∝ exp(r(y)/α).
    basic, _ = world.completion_rewards()
    prior = world.exact_prior_log_probs()
    gibbs = torch.log_softmax(basic / world.config.alpha, dim=-1)
    torch.testing.assert_close(prior, gibbs)


@pytest.mark.parametrize("omega_prime,alpha_hat", [(0.5, 0.5), (1.5, 0.5), (0.0, 0.7), (0.3, 2.0)])
def test_target_equals_sequence_formula_and_soft_optimum_of_scaled_r_plus_addon(world, omega_prime, alpha_hat):
    target = world.exact_target_log_probs(omega_prime, alpha_hat)
    basic, addon = world.completion_rewards()
    prior = world.exact_prior_log_probs()
    # Sequence level: π* ∝ π_prior^(ω'/α̂) · exp(r_R/α̂).
    formula = torch.log_softmax((omega_prime * prior + addon) / alpha_hat, dim=-1)
    torch.testing.assert_close(target, formula)
    # docs/theory.md §2: the soft-optimal policy of (ω'/α)·r + r_R at temperature α̂, solved on the augmented MDP.
    transition, addon_table, _ = world._augmented_mdp()
    num_masks = 2 ** len(world.target_words)
    word_of = torch.arange(transition.shape[0]) // num_masks
    scaled_basic = (omega_prime / world.config.alpha) * world.bigram[word_of, :]
    solved = soft_value_iteration(scaled_basic + addon_table, transition, world.completion_length, alpha_hat)
    ys = world.all_completions()
    direct = torch.stack(
        [
            world._sequence_log_prob(solved.log_policy, w.expand(len(ys)), ys, augmented=True)
            for w in world._first_words()
        ]
    )
    torch.testing.assert_close(target, direct)
    torch.testing.assert_close(target.exp().sum(-1), torch.ones(len(world.prompts), dtype=target.dtype))


def test_basic_reward_sums_bigrams_and_stops_at_eos(world):
    s = world.num_special
    prompt = torch.tensor([[world.pad_token_id, s + 1, s + 2]])  # left-padded prompt, last word 2
    completion = torch.tensor([[s + 0, s + 4, world.eos_token_id]])
    expected = world.bigram[2, 0] + world.bigram[0, 4]
    assert world.basic_reward(prompt, completion).item() == pytest.approx(float(expected), abs=1e-6)
    # Words after EOS do not count.
    after_eos = torch.tensor([[s + 0, world.eos_token_id, s + 4]])
    assert world.basic_reward(prompt, after_eos).item() == pytest.approx(float(world.bigram[2, 0]), abs=1e-6)


def test_addon_reward_counts_distinct_target_words(world):
    s, scale = world.num_special, world.config.addon_scale
    first = world.target_words[0]
    other = next(w for w in range(world.vocab_size) if w not in world.target_words)
    prompt = torch.tensor([[s + first]])  # prompt words do not count
    assert world.addon_reward(prompt, torch.tensor([[s + other] * 3])).item() == 0.0
    assert world.addon_reward(prompt, torch.tensor([[s + first, s + first, s + other]])).item() == pytest.approx(scale)
    both = torch.tensor([[s + w for w in world.target_words] + [s + other]])
    assert world.addon_reward(prompt, both).item() == pytest.approx(scale * len(world.target_words))


def test_reward_functions_follow_trl_signature(world):
    (addon,) = world.reward_functions()
    word = world.words[world.target_words[0]]
    other = world.words[next(w for w in range(world.vocab_size) if w not in world.target_words)]
    scores = addon(prompts=world.prompts[:2], completions=[f"{word} {other} {other}", f"{other} {other} {other}"])
    assert scores == pytest.approx([world.config.addon_scale, 0.0])
    dataset = world.prompt_dataset()
    assert dataset.column_names == ["prompt"] and list(dataset["prompt"]) == world.prompts


def test_model_log_probs_match_a_direct_forward(world):
    model = world.load_prior_model()
    table = world.model_log_probs(model)
    ys = world.all_completions()
    g = torch.Generator().manual_seed(0)
    picks = torch.randint(len(ys), (6,), generator=g)
    for p, prompt in enumerate(world.prompt_words):
        ids = torch.cat([torch.tensor(prompt).expand(len(picks), -1), ys[picks]], dim=-1) + world.num_special
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits.double(), -1)
        P = len(prompt)
        direct = logp[:, P - 1 : -1].gather(-1, ids[:, P:].unsqueeze(-1)).squeeze(-1).sum(-1)
        torch.testing.assert_close(table[p, picks], direct, atol=1e-5, rtol=0)


def test_prior_model_is_close_to_the_exact_prior_and_mc_agrees_with_exact(world):
    model = world.load_prior_model()
    exact = world.evaluate(model, omega_prime=0.5, alpha_hat=0.5)
    assert exact["kl_to_prior"] == pytest.approx(world.info["prior_kl_to_exact_prior"], abs=1e-9)
    assert exact["kl_to_prior"] < 0.05  # the distillation floor
    assert exact["total"] == pytest.approx(exact["basic"] + exact["addon"])
    mc = world.evaluate(model, omega_prime=0.5, alpha_hat=0.5, exact=False, num_samples=3000)
    assert abs(mc["kl_to_target"] - exact["kl_to_target"]) < 4 * mc["kl_stderr"] + 0.02
    assert abs(mc["addon"] - exact["addon"]) < 0.1


def test_exact_target_evaluates_to_zero_kl_and_greedy_target_maximizes_addon(world):
    target = world.exact_target_log_probs(0.0, 0.05)
    stats = world.evaluate_log_probs(target, 0.0, 0.05)
    assert stats["kl_to_target"] == pytest.approx(0.0, abs=1e-9)
    best = world.config.addon_scale * min(len(world.target_words), world.completion_length)
    assert stats["addon"] == pytest.approx(best, abs=1e-3)
    assert not math.isnan(stats["kl_to_prior"])


def test_build_reuses_the_cache(world, tmp_path):
    again = ToyWorld.build(ToyWorldConfig(**SMALL), world.directory.parent, progress=False)
    assert again.directory == world.directory
    assert again.prompts == world.prompts
    with pytest.raises(ValueError, match="vocab_size"):
        ToyWorldConfig(vocab_size=1)


def test_large_worlds_fall_back_to_monte_carlo_with_a_standard_error(world, monkeypatch):
    model = world.load_prior_model()
    exact = world.evaluate(model, omega_prime=1.0, alpha_hat=0.5)
    monkeypatch.setattr(world.config, "max_enumeration", 10)  # pretend V^L is too large to enumerate
    monkeypatch.setattr(world, "_completions", None)
    with pytest.raises(ValueError, match="max_enumeration"):
        world.all_completions()
    mc = world.evaluate(model, omega_prime=1.0, alpha_hat=0.5, num_samples=2000, seed=1)
    assert mc["method"].startswith("monte_carlo") and mc["kl_stderr"] > 0
    assert abs(mc["kl_to_target"] - exact["kl_to_target"]) < 4 * mc["kl_stderr"] + 0.02


@pytest.mark.parametrize("omega_prime,alpha_hat", [(None, None), (0.5, 0.25), (0.0, 0.5), (1.5, 0.5)])
def test_dynamic_programming_equals_enumeration(world, omega_prime, alpha_hat):
    # log Z, log π(y) and the expected rewards / KL of the exact prior and targets, without enumeration.
    _, addon = world.completion_rewards()
    ys = world.all_completions()
    first = world._first_words()[:, None, None].expand(-1, len(ys), 1)
    previous = torch.cat([first, ys.expand(len(world.prompts), -1, -1)], -1)
    basic = world.bigram[previous[..., :-1], previous[..., 1:]].sum(-1)  # r(y) in float64 (the reward API is float32)
    prior = world.exact_prior_log_probs()
    if omega_prime is None:
        log_z, log_probs = torch.logsumexp(basic / world.config.alpha, -1), prior
    else:
        unnormalized = (omega_prime * prior + addon) / alpha_hat  # log[π_prior^(ω'/α̂)·exp(r_R/α̂)]
        log_z = torch.logsumexp(unnormalized, -1)
        log_probs = world.exact_target_log_probs(omega_prime, alpha_hat)
        torch.testing.assert_close(log_probs, unnormalized - log_z.unsqueeze(-1), rtol=0, atol=1e-10)
    torch.testing.assert_close(world.log_partition(omega_prime, alpha_hat), log_z, rtol=0, atol=1e-10)
    picks = ys[[0, 7, 50, -1]]
    for p, first in enumerate(world._first_words()):
        direct = world.exact_log_probs(first.expand(len(picks)), picks, omega_prime, alpha_hat)
        torch.testing.assert_close(direct, log_probs[p, [0, 7, 50, -1]], rtol=0, atol=1e-12)
    by_dp = world.exact_policy_statistics(omega_prime, alpha_hat)
    p = log_probs.exp()
    by_enumeration = {
        "basic": (p * basic).sum(-1).mean(),
        "addon": (p * addon).sum(-1).mean(),
        "kl_to_prior": (p * (log_probs - prior)).sum(-1).mean(),
    }
    by_enumeration["total"] = by_enumeration["basic"] + by_enumeration["addon"]
    for key in ("basic", "addon", "total", "kl_to_prior"):
        assert by_dp[key] == pytest.approx(float(by_enumeration[key]), abs=1e-10), key


def test_content_only_law_never_leaves_the_support_and_monte_carlo_agrees_within_three_standard_errors(world):
    model = world.load_prior_model()
    raw = world.model_log_probs(model)
    content = world.model_log_probs(model, content_only=True)
    torch.testing.assert_close(content.exp().sum(-1), torch.ones(len(world.prompts), dtype=content.dtype))
    assert (raw.exp().sum(-1) < 1).all()  # the raw model does leave: that is the reported off-support mass
    exact = world.evaluate(model, 0.5, 0.25)
    assert exact["off_support_mass"] == pytest.approx(float(1 - raw.exp().sum(-1).mean()), abs=1e-12)
    mc = world.evaluate(model, 0.5, 0.25, exact=False, num_samples=4000, seed=2)
    for key in ("kl_to_target", "kl_to_prior", "basic", "addon"):
        assert mc[f"{key}_stderr"] > 0
        assert abs(mc[key] - exact[key]) < 3 * mc[f"{key}_stderr"], (key, mc[key], exact[key], mc[f"{key}_stderr"])
    # E_suppressed[Π_t raw content mass] is unbiased for the raw model's content mass (a mean of values in [0, 1]).
    assert abs(mc["off_support_mass"] - exact["off_support_mass"]) < 0.01


@pytest.mark.parametrize("omega_prime,alpha_hat", [(None, None), (0.5, 0.25), (0.0, 0.5)])
def test_exact_sampling_draws_the_enumerated_law(world, omega_prime, alpha_hat):
    # Ancestral sampling from the per-token DP policy has the law that enumeration gives: Pearson's χ² over
    # every completion of each prompt stays within 5 standard deviations of its mean (degrees of freedom).
    exact = (
        world.exact_prior_log_probs() if omega_prime is None else world.exact_target_log_probs(omega_prime, alpha_hat)
    ).exp()  # [prompts, V^L]
    V, L, n = world.vocab_size, world.completion_length, 20_000
    g = torch.Generator().manual_seed(7)
    for prompt in range(len(world.prompts)):
        ys = world.sample_exact(torch.full((n,), prompt), g, omega_prime, alpha_hat)
        index = (ys * V ** torch.arange(L - 1, -1, -1)).sum(-1)  # lexicographic, as all_completions()
        counts = torch.bincount(index, minlength=V**L).double()
        expected = n * exact[prompt]
        sparse = expected < 5  # pooled into one cell, as χ² asks (a lone hit in a 1e-4 cell would add ~10^3)
        if sparse.any():
            counts = torch.cat([counts[~sparse], counts[sparse].sum().view(1)])
            expected = torch.cat([expected[~sparse], expected[sparse].sum().view(1)])
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        dof = len(counts) - 1
        assert chi2 < dof + 5 * math.sqrt(2 * dof), (prompt, chi2)


@pytest.mark.parametrize(
    "prompt_index, coefficients, message",
    [
        (torch.tensor(0), (None, None), "1-D tensor"),
        (torch.tensor([0, 3]), (None, None), "indices in [0, 3)"),
        (torch.tensor([-1]), (None, None), "indices in [0, 3)"),
        (torch.tensor([0]), (0.5, None), "give both omega_prime and alpha_hat or neither"),
    ],
)
def test_exact_sampling_rejects_bad_input_in_one_line(world, prompt_index, coefficients, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        world.sample_exact(prompt_index, torch.Generator().manual_seed(0), *coefficients)


def test_a_large_world_builds_and_evaluates_without_enumeration(tmp_path):
    # V = 128 words, L = 24 tokens: 128^24 completions; the exact tables are dynamic programming.
    config = ToyWorldConfig(vocab_size=128, completion_length=24, distill_steps=0, hidden_size=32, num_heads=2)
    world = ToyWorld.build(config, tmp_path, progress=False)
    assert len(set(world.words)) == 128
    with pytest.raises(ValueError, match="max_enumeration"):
        world.all_completions()
    log_z = world.log_partition(0.5, 0.25)
    assert torch.isfinite(log_z).all() and torch.isfinite(world.log_partition()).all()
    stats = world.exact_policy_statistics(0.5, 0.25)
    assert 0 < stats["addon"] <= config.addon_scale * config.num_target_words and stats["kl_to_prior"] > 0
    # Log-densities of completions drawn from the exact target's per-token policy sum to its log-probability.
    solution = world.target_solution(0.5, 0.25)
    ys = world.sample_exact(torch.zeros(8, dtype=torch.long), torch.Generator().manual_seed(0), 0.5, 0.25)
    first = world._first_words()[:1].expand(8)
    next_state, _, _ = world._augmented_mdp()
    state, log_p = first * 4, torch.zeros(8, dtype=torch.float64)
    for t in range(config.completion_length):
        log_p += solution.log_policy[t, state, ys[:, t]]
        state = next_state[state, ys[:, t]]
    torch.testing.assert_close(world.exact_log_probs(first, ys, 0.5, 0.25), log_p, rtol=0, atol=1e-9)
    mc = world.evaluate(world.load_prior_model(), 0.5, 0.25, num_samples=64)
    assert mc["method"].startswith("monte_carlo") and mc["kl_to_target_stderr"] > 0
    assert 0 < mc["off_support_mass"] < 1  # an untrained model's raw law leaves the content words


def test_greedy_mass_on_special_tokens_matches_enumerating_what_the_sampler_can_write(world):
    # Every sequence of L tokens over words, <pad>, <eos>, cut after the first <eos> (the sampler pads the rest).
    import itertools

    V, L, alpha_hat = world.vocab_size, world.completion_length, 0.5
    pad, eos = V, V + 1
    targets = set(world.target_words)
    weights = {}
    for tokens in itertools.product(range(V + 2), repeat=L):
        cut = tokens[: tokens.index(eos) + 1] if eos in tokens else tokens
        mentioned = len({t for t in cut if t in targets})
        weights[cut] = math.exp(world.config.addon_scale * mentioned / alpha_hat)
    special = sum(w for seq, w in weights.items() if pad in seq or eos in seq)
    expected = special / sum(weights.values())
    assert world.greedy_mass_on_special_tokens(alpha_hat) == pytest.approx(expected, abs=1e-12)
    assert 0.2 < expected < 0.9  # what the content-only target of Greedy hides
