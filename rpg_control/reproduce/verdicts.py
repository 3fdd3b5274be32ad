"""When does one of our numbers reproduce one of the paper's claims? A test over seeds.

A claim compares two table cells, "A above B". Each cell rests on a few training runs (seeds); the
unit of replication is the seed, not the evaluation episode (episodes of one seed share its policy).
So the test compares the seeds' means:

- ``d`` = mean over A's seeds − mean over B's seeds (each seed's figure = its mean over its episodes);
- ``se`` = sqrt(s_A² / n_A + s_B² / n_B), s = the sample std (ddof 1) of the seeds' means;
- Welch's degrees of freedom, and ``t`` = the two-sided 95% Student-t quantile for them (rounded down,
  so conservative): with 2 seeds per cell that is 12.7, with 5 seeds about 2.3-2.8.

**reproduced** when d > t·se; **opposite** (the data say B above A) when d < −t·se; otherwise
**inconclusive**, with the numbers. A cell that is one fixed checkpoint (Table II's prior) has no seed
spread: its uncertainty is its evaluation's standard error, std / sqrt(episodes), and it adds no
degrees of freedom. A cell with a single seed has no spread to measure: always inconclusive.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

# Two-sided 95% quantiles of Student's t (df -> t); larger df use the next smaller tabulated df.
_T975 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    12: 2.179,
    15: 2.131,
    20: 2.086,
    30: 2.042,
    60: 2.000,
    120: 1.980,
}

REPRODUCED, OPPOSITE, INCONCLUSIVE, MISSING = "reproduced", "opposite", "inconclusive", "n/a (runs missing)"


def t_quantile(df: float) -> float:
    """Two-sided 95% t quantile for ``df`` degrees of freedom, rounded down to a tabulated df."""
    if df < 1:
        return math.inf
    usable = [k for k in _T975 if k <= df]
    return _T975[max(usable)] if df < 1000 else 1.960


@dataclass(frozen=True)
class Cell:
    """One side of a comparison: the per-seed means, or one fixed checkpoint's mean and its std. error."""

    values: tuple[float, ...]
    fixed_se: float | None = None  # set for a single fixed checkpoint (no seeds)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    def variance_of_mean(self) -> float | None:
        if self.fixed_se is not None:
            return self.fixed_se**2
        if len(self.values) < 2:
            return None
        return statistics.variance(self.values) / len(self.values)

    def dof(self) -> float:
        return 0.0 if self.fixed_se is not None else len(self.values) - 1.0


@dataclass(frozen=True)
class Comparison:
    difference: float
    standard_error: float | None
    threshold: float | None  # t · se
    verdict: str

    def text(self) -> str:
        if self.standard_error is None:
            return f"d = {self.difference:+.1f}, no spread over seeds to test it (one seed)"
        return f"d = {self.difference:+.1f}, se = {self.standard_error:.1f}, needs |d| > {self.threshold:.1f}"


def compare(a: Cell | None, b: Cell | None) -> Comparison | None:
    """Test "a above b" (see the module docstring); None when a side has no runs."""
    if a is None or b is None or not a.values or not b.values:
        return None
    difference = a.mean - b.mean
    var_a, var_b = a.variance_of_mean(), b.variance_of_mean()
    if var_a is None or var_b is None or a.dof() + b.dof() < 1:
        return Comparison(difference, None, None, INCONCLUSIVE)
    se = math.sqrt(var_a + var_b)
    if se == 0:
        verdict = REPRODUCED if difference > 0 else OPPOSITE if difference < 0 else INCONCLUSIVE
        return Comparison(difference, 0.0, 0.0, verdict)
    # Welch-Satterthwaite degrees of freedom; a fixed cell contributes variance but no dof.
    parts = [(v, cell.dof()) for v, cell in ((var_a, a), (var_b, b)) if cell.dof() > 0 and v > 0]
    dof = (var_a + var_b) ** 2 / sum(v**2 / k for v, k in parts) if parts else 0.0
    threshold = t_quantile(dof) * se
    verdict = REPRODUCED if difference > threshold else OPPOSITE if difference < -threshold else INCONCLUSIVE
    return Comparison(difference, se, threshold, verdict)


def combine(verdicts: list[str]) -> str:
    """A claim made of several comparisons ("Soft above each other variant")."""
    if not verdicts or MISSING in verdicts:
        return MISSING
    if all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    return OPPOSITE if OPPOSITE in verdicts else INCONCLUSIVE


def bold(verdict: str) -> str:
    return {
        REPRODUCED: "**reproduced**",
        OPPOSITE: "**not reproduced (the opposite holds)**",
        INCONCLUSIVE: "**inconclusive**",
    }.get(verdict, verdict)
