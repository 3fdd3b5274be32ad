"""RLOO and GRPO advantages (rpg.advantage) against plain Python loops, and their bad-input errors."""

import statistics

import pytest
import torch

from rpg.advantage import group_normalized_advantages, leave_one_out_advantages

RETURNS = torch.tensor([1.0, 3.0, -2.0, 0.5, 4.0, 4.0, 4.0, 4.0, -1.0, 2.0, 7.0, 0.0], dtype=torch.float64)


@pytest.mark.parametrize("k", [2, 3, 4, 6])
def test_leave_one_out_is_return_minus_the_mean_of_the_others(k):
    values = RETURNS.tolist()
    expected = []
    for start in range(0, len(values), k):
        group = values[start : start + k]
        for i, r in enumerate(group):
            others = group[:i] + group[i + 1 :]
            expected.append(r - sum(others) / len(others))
    torch.testing.assert_close(leave_one_out_advantages(RETURNS, k), torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("k", [2, 3, 4, 6])
@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_group_normalized_is_centered_by_the_group_and_scaled_as_asked(k, scale):
    values = RETURNS.tolist()
    batch_std = statistics.stdev(values)
    expected = []
    for start in range(0, len(values), k):
        group = values[start : start + k]
        mean = sum(group) / k
        std = {"group": statistics.stdev(group), "batch": batch_std, "none": None}[scale]
        expected += [(r - mean) / (std + 1e-4) if std is not None else r - mean for r in group]
    expected = torch.tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(group_normalized_advantages(RETURNS, k, scale), expected)


def test_a_group_that_agrees_gets_zero_advantage_under_every_estimator():
    # At the exact target the return of eq. 8 is the same for every completion of a prompt (α̂·log Z(x)).
    agree = torch.full((8,), 2.5, dtype=torch.float64)
    assert torch.all(leave_one_out_advantages(agree, 4) == 0)
    for scale in ("group", "batch", "none"):
        assert torch.all(group_normalized_advantages(agree, 4, scale) == 0)


def test_unscaled_grpo_is_a_fixed_multiple_of_rloo():
    k = 4
    unscaled = group_normalized_advantages(RETURNS, k, "none")
    torch.testing.assert_close(unscaled * k / (k - 1), leave_one_out_advantages(RETURNS, k))


def test_groups_do_not_mix():
    shifted = RETURNS.clone()
    shifted[:4] += 100.0  # moving one prompt's returns leaves the other prompts' advantages alone
    for fn in (lambda r: leave_one_out_advantages(r, 4), lambda r: group_normalized_advantages(r, 4)):
        torch.testing.assert_close(fn(shifted)[4:], fn(RETURNS)[4:])
        torch.testing.assert_close(fn(shifted)[:4], fn(RETURNS)[:4])


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: leave_one_out_advantages(RETURNS, 1), "num_generations must be >= 2"),
        (lambda: group_normalized_advantages(RETURNS, 1), "num_generations must be >= 2"),
        (lambda: leave_one_out_advantages(RETURNS, 5), "groups of num_generations=5"),
        (lambda: group_normalized_advantages(RETURNS.view(3, 4), 4), "1-D"),
        (lambda: group_normalized_advantages(RETURNS, 4, "prompt"), "scale must be one of"),
    ],
)
def test_bad_input_fails_in_one_line(call, match):
    with pytest.raises(ValueError, match=match) as error:
        call()
    assert "\n" not in str(error.value)
