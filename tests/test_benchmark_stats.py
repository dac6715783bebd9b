"""The benchmark pages' statistics, against values computed by hand."""

import math
import sys

import pytest

from benchmarks import stats


def test_sample_std_uses_n_minus_one():
    # Deviations from the mean 2: -1, 0, +1; squares sum to 2; 2 / (3 - 1).
    assert stats.sample_std([1.0, 2.0, 3.0]) == pytest.approx(1.0)
    assert math.isnan(stats.sample_std([5.0]))


def test_paired_interval_of_the_b4_2x_differences():
    # Differences -0.29 +- 0.30, 0.07, -0.37: squares 0.2318, s^2 = 0.1159,
    # s = 0.34044, s / sqrt(3) = 0.19655, t(0.975, 2) = 4.3027: half-width
    # 0.8457.
    first = {0: 76.41, 1: 77.57, 2: 76.16}
    second = {0: 76.40, 1: 77.79, 2: 76.82}
    difference = stats.paired(first, second)
    assert difference.seeds == (0, 1, 2)
    assert difference.mean == pytest.approx(-0.29)
    assert difference.std == pytest.approx(0.340441, abs=1e-6)
    assert difference.low == pytest.approx(-1.1357, abs=1e-3)
    assert difference.high == pytest.approx(0.5557, abs=1e-3)
    assert difference.text() == "-0.29 [-1.14, +0.56]"
    assert difference.verdict("guided", "l1_oneshot") == "tie"


def test_paired_uses_the_common_seeds_and_says_ahead_outside_zero():
    first = {0: 3.0, 1: 4.0, 2: 5.0, 3: 9.0}
    second = {1: 1.0, 2: 2.0}
    difference = stats.paired(first, second)
    # Seeds 1 and 2: differences 3, 3: no spread, interval [3, 3].
    assert difference.seeds == (1, 2)
    assert (difference.low, difference.high) == (3.0, 3.0)
    assert difference.verdict("guided", "peer") == "guided ahead"
    assert stats.paired(second, first).verdict("peer", "guided") == (
        "guided ahead"
    )
    only = stats.paired(first, second, seeds=[2])
    assert only.n == 1 and only.text() == "+3.00"
    assert only.verdict() == "one seed, no interval"
    assert stats.paired(first, {7: 1.0}) is None


def test_t_table_matches_scipy_and_interpolates():
    scipy_stats = pytest.importorskip("scipy.stats")
    for dof in (1, 2, 3, 7, 30, 35, 50, 100, 1000):
        assert stats._table_t_975(dof) == pytest.approx(
            scipy_stats.t.ppf(0.975, dof), abs=2e-3
        )


def test_t_quantile_without_scipy_reads_the_table(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy", None)
    assert stats.t_quantile(2) == 4.3027
    with pytest.raises(ValueError, match="Received: confidence=0.9"):
        stats.t_quantile(2, confidence=0.9)
    with pytest.raises(ValueError, match="Received: dof=0"):
        stats.t_quantile(0)
