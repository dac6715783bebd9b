"""Statistics for the benchmark pages: sample std, paired differences.

A method is compared with another on the seeds both have run: each seed
starts both from the same reference and the same batches, so the
per-seed differences are paired. The page reports their mean and the 95 %
t-interval of that mean (`t` quantile for `n - 1` degrees of freedom), and
calls the comparison a tie when the interval contains zero.

    mean d ± t(0.975, n - 1) * s / sqrt(n),   s = sample std (ddof=1)

scipy's `t.ppf` is used when scipy is installed; otherwise the table below
(two-sided 95 %, the values of `scipy.stats.t.ppf(0.975, dof)` to 4
decimals), interpolated in `1 / dof` between its rows.
"""

import dataclasses
import math

import numpy as np

# t(0.975, dof) for dof 1..30, then 40, 60, 120 and the normal limit.
T_975 = {
    1: 12.7062,
    2: 4.3027,
    3: 3.1824,
    4: 2.7764,
    5: 2.5706,
    6: 2.4469,
    7: 2.3646,
    8: 2.3060,
    9: 2.2622,
    10: 2.2281,
    11: 2.2010,
    12: 2.1788,
    13: 2.1604,
    14: 2.1448,
    15: 2.1314,
    16: 2.1199,
    17: 2.1098,
    18: 2.1009,
    19: 2.0930,
    20: 2.0860,
    21: 2.0796,
    22: 2.0739,
    23: 2.0687,
    24: 2.0639,
    25: 2.0595,
    26: 2.0555,
    27: 2.0518,
    28: 2.0484,
    29: 2.0452,
    30: 2.0423,
    40: 2.0211,
    60: 2.0003,
    120: 1.9799,
    math.inf: 1.9600,
}


def _table_t_975(dof):
    if dof in T_975:
        return T_975[dof]
    rows = sorted(T_975)
    upper = next(r for r in rows if r > dof)
    lower = max(r for r in rows if r < dof)
    # Linear in 1 / dof, the usual interpolation for t tables.
    weight = (1 / lower - 1 / dof) / (1 / lower - 1 / upper)
    return T_975[lower] + weight * (T_975[upper] - T_975[lower])


def t_quantile(dof, confidence=0.95):
    """The two-sided `confidence` quantile of Student's t with `dof`
    degrees of freedom (`t.ppf((1 + confidence) / 2, dof)`).

    Without scipy only `confidence=0.95` is available (from `T_975`).
    """
    if dof < 1:
        raise ValueError(
            "`dof` must be at least 1 (an interval needs two seeds). "
            f"Received: dof={dof}"
        )
    try:
        from scipy import stats as scipy_stats
    except ImportError:
        scipy_stats = None
    if scipy_stats is not None:
        return float(scipy_stats.t.ppf((1 + confidence) / 2, dof))
    if abs(confidence - 0.95) > 1e-12:
        raise ValueError(
            "Without scipy only `confidence=0.95` is tabulated. Received: "
            f"confidence={confidence}. Install scipy for other levels."
        )
    return _table_t_975(dof)


def sample_std(values):
    """The sample standard deviation (ddof=1); NaN for fewer than two
    values."""
    values = np.asarray(values, dtype="float64")
    if values.size < 2:
        return math.nan
    return float(values.std(ddof=1))


def mean_interval(values, confidence=0.95):
    """`(mean, low, high)`: the mean of `values` and its t-interval; the
    bounds are NaN for fewer than two values."""
    values = np.asarray(values, dtype="float64")
    if values.size == 0:
        raise ValueError("`values` must not be empty. Received: []")
    mean = float(values.mean())
    if values.size < 2:
        return mean, math.nan, math.nan
    half = t_quantile(values.size - 1, confidence) * (
        sample_std(values) / math.sqrt(values.size)
    )
    return mean, mean - half, mean + half


def verdict(low, high, first="A", second="B"):
    """'tie' when `[low, high]` contains zero, else '<first> ahead' (the
    interval above zero) or '<second> ahead'; 'one seed, no interval'
    when the bounds are NaN."""
    if math.isnan(low) or math.isnan(high):
        return "one seed, no interval"
    if low <= 0.0 <= high:
        return "tie"
    return f"{first} ahead" if low > 0 else f"{second} ahead"


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    """`first - second` per seed, its mean and the interval of the mean."""

    seeds: tuple
    differences: tuple
    mean: float
    std: float
    low: float
    high: float

    @property
    def n(self):
        return len(self.seeds)

    def verdict(self, first="A", second="B"):
        return verdict(self.low, self.high, first, second)

    def text(self, digits=2):
        """'+0.38 [-1.45, +2.21]', or '+0.38' for a single seed."""
        mean = f"{self.mean:+.{digits}f}"
        if math.isnan(self.low):
            return mean
        return f"{mean} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def paired(first, second, seeds=None, confidence=0.95):
    """The `PairedDifference` of `first - second` (`{seed: value}` each)
    over the seeds both have (restricted to `seeds` when given), or None
    when they share none."""
    common = set(first) & set(second)
    if seeds is not None:
        common &= set(seeds)
    common = sorted(common)
    if not common:
        return None
    differences = [first[s] - second[s] for s in common]
    mean, low, high = mean_interval(differences, confidence)
    return PairedDifference(
        seeds=tuple(common),
        differences=tuple(differences),
        mean=mean,
        std=sample_std(differences),
        low=low,
        high=high,
    )
