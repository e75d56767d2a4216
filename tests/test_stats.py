"""Bootstrap intervals and paired tests on cases worked out by hand."""

import numpy as np
import pytest

from cirbench.protocol import metrics as M
from cirbench.analysis import stats


def test_identical_methods_differ_by_nothing_with_p_one():
    a = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    result = stats.paired(a, a.copy(), "percent", n=500)
    assert result.difference == 0.0 and (result.low, result.high) == (0.0, 0.0) and result.p == 1.0
    assert not result.significant


def test_a_method_better_on_every_query_is_significant():
    a, b = np.ones(40), np.zeros(40)
    result = stats.paired(a, b, "percent", n=999)
    assert result.difference == 100.0 and (result.low, result.high) == (100.0, 100.0)
    assert result.p == pytest.approx(2 / 1000) and result.significant
    assert stats.format_p(result.p, 999) == "< 0.002"
    reverse = stats.paired(b, a, "percent", n=999)
    assert reverse.difference == -100.0 and reverse.p == pytest.approx(2 / 1000)


def test_a_small_mixed_difference_is_not_significant():
    # 6 queries: a wins on 2, b wins on 1: difference 1/6 = 16.7 points, far from significant
    a = np.array([1.0, 1.0, 0.0, 1.0, 0.0, 0.0])
    b = np.array([0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    result = stats.paired(a, b, "percent", n=2000, key="s")
    assert result.difference == pytest.approx(100 / 6)
    assert result.low < 0 < result.high and result.p > 0.3


def test_interval_of_a_two_query_split_by_hand():
    # values {0, 1}: a resample's mean is 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4, so the 2.5th and
    # 97.5th percentiles of 1,000 draws are 0 and 100
    assert stats.interval(np.array([0.0, 1.0]), "percent", n=1000) == (0.0, 100.0)
    assert stats.interval(np.full(30, 0.25), "percent") == (25.0, 25.0)


def test_resamples_are_seeded_and_shared_by_every_method_of_a_split():
    one = stats.resamples(50, 20, seed=0, key="cirr:val")
    assert np.array_equal(one, stats.resamples(50, 20, seed=0, key="cirr:val"))
    assert not np.array_equal(one, stats.resamples(50, 20, seed=1, key="cirr:val"))
    assert not np.array_equal(one, stats.resamples(50, 20, seed=0, key="cirr:test1"))


def test_average_over_splits():
    low, high = stats.average_interval([(np.full(10, 0.1), "percent", "a"), (np.full(20, 0.3), "percent", "b")], n=200)
    assert (low, high) == pytest.approx((20.0, 20.0))


def test_rank_aggregates_follow_the_metric_definitions():
    ranks = np.array([[1.0, 4.0, 2.0, 10.0], [1.0, 2.0, 3.0, 4.0]])
    assert stats.aggregate_rows(ranks, "median_rank").tolist() == [3.0, 2.0]
    assert stats.aggregate_rows(ranks, "mean").tolist() == [4.25, 2.5]
    for row in ranks:
        assert M.aggregate(row, "median_rank") == stats.aggregate_rows(row[None], "median_rank")[0]


def test_align_pairs_queries_by_id():
    a, b = stats.align(["q1", "q2", "q3"], np.array([1.0, 2.0, 3.0]), ["q3", "q1"], np.array([30.0, 10.0]))
    assert a.tolist() == [1.0, 3.0] and b.tolist() == [10.0, 30.0]


# -- what the mutation run let through (tests/mutation.py stats) ------------------------------------------

def test_the_default_seed_is_zero_and_seeds_numpy_with_the_split_key():
    """Reports quote intervals for seed 0: the default draws are numpy's default_rng([0, crc32(key)])."""
    import zlib

    expected = np.random.default_rng([0, zlib.crc32(b"circo:val")]).integers(0, 7, size=(5, 7))
    assert np.array_equal(stats.resamples(7, 5, key="circo:val"), expected)
    # the paired test's default seed is the same 0: a beats b on queries 0-2, b beats a on query 3
    a, b = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0]), np.array([0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    idx = np.random.default_rng([0, zlib.crc32(b"k")]).integers(0, 7, size=(200, 7))
    diff = 100 * (a[idx].mean(1) - b[idx].mean(1))
    got = stats.paired(a, b, "percent", n=200, key="k")
    assert (got.low, got.high) == pytest.approx((np.percentile(diff, 2.5), np.percentile(diff, 97.5)))


def test_an_empty_split_has_no_interval_and_does_not_fail():
    assert np.isnan(stats.interval(np.array([]), "percent", n=50)).all()
    assert stats.resamples(0, 4).shape == (4, 0)


@pytest.mark.parametrize("agg", ["average", "recall", "max", "zeta"])
def test_an_unknown_aggregate_is_refused(agg):
    # names on either side of 'mean', 'median_rank' and 'percent' in sort order
    with pytest.raises(ValueError, match="unknown aggregate"):
        stats.aggregate_rows(np.ones((2, 3)), agg)


def test_significance_is_p_strictly_below_005():
    assert not stats.Paired(1.0, 0.5, 2.0, 0.05, 10, 1000).significant
    assert stats.Paired(1.0, 0.5, 2.0, 0.0499, 10, 1000).significant


def test_the_split_average_of_a_paired_test_by_hand():
    """Two splits: a mean aggregate whose difference is skewed and continuous (so another seed gives
    another interval), and a split where a and b agree (every draw 0). The average difference is half
    the first split's (not the sum, nor twice it), and so is every draw."""
    import zlib

    skewed = np.arange(12.0) ** 2 / 10
    parts = [(skewed, np.zeros(12), "mean", "s:a"), (np.array([1.0, 0.0, 1.0]), np.array([1.0, 0.0, 1.0]), "percent", "s:b")]
    got = stats.paired_parts(parts, n=300)
    assert got.difference == pytest.approx(skewed.mean() / 2) and got.n_queries == 15
    idx = np.random.default_rng([0, zlib.crc32(b"s:a")]).integers(0, 12, size=(300, 12))
    half = skewed[idx].mean(1) / 2
    assert (got.low, got.high) == pytest.approx((np.percentile(half, 2.5), np.percentile(half, 97.5)))


def test_the_p_value_counts_draws_on_each_side_of_zero_not_of_one():
    """Differences of half a point on every query (a mean aggregate, e.g. AP): every draw is +0.5 (or
    -0.5), none is <= 0 (>= 0), so p is the smallest reportable 2 / (n + 1)."""
    b = np.array([3.0, 7.0, 1.0, 9.0])
    for a in (b + 0.5, b - 0.5):
        got = stats.paired(a, b, "mean", n=99, key="k")
        assert got.p == pytest.approx(2 / 100) and abs(got.difference) == pytest.approx(0.5)


def test_paired_values_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="differ in length"):
        stats.paired(np.ones(4), np.ones(5), "percent", n=100)


def test_align_does_not_trust_two_lists_of_the_same_ids_in_another_order():
    a, b = stats.align(["q2", "q1"], np.array([2.0, 1.0]), ["q1", "q2"], np.array([10.0, 20.0]))
    assert a.tolist() == [2.0, 1.0] and b.tolist() == [20.0, 10.0]


def test_format_p():
    assert stats.format_p(float("nan")) == "n/a"
    assert stats.format_p(0.5) == "0.500" and stats.format_p(0.0123) == "0.012"
    assert stats.format_p(2 / 1001) == "< 0.002"
    # 2 / 1999 = 0.0010005: the floor is shown rounded up to the next thousandth
    assert stats.format_p(2 / 1999, 1998) == "< 0.002"


def test_the_smallest_bootstrap_is_100_resamples(tmp_path):
    from cirbench.analysis.compare import compare_methods
    from cirbench.errors import UsageError

    with pytest.raises(UsageError, match="--bootstrap 99: a paired test needs at least 100"):
        compare_methods(tmp_path, "a", "b", resamples=99)
    with pytest.raises(UsageError) as exc:  # 100 passes the check and meets the empty folder
        compare_methods(tmp_path, "a", "b", resamples=100)
    assert "--bootstrap" not in str(exc.value)


def test_holm_adjusts_a_family_of_p_values_by_hand():
    """p = (0.01, 0.04, 0.03, 0.005), m = 4; sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03,
    0.06, 0.04, made monotone -> 0.02, 0.03, 0.06, 0.06; a NaN stays out of the family (m stays 4)."""
    import numpy as np

    from cirbench.analysis.stats import holm

    got = holm([0.01, 0.04, float("nan"), 0.03, 0.005])
    assert np.allclose(got[[0, 1, 3, 4]], [0.03, 0.06, 0.06, 0.02]) and np.isnan(got[2])
    assert holm([0.6, 0.9]).tolist() == [1.0, 1.0]  # capped at 1


def test_a_family_of_tests_gets_resamples_enough_to_survive_holm():
    """2 / (n + 1) is the smallest bootstrap p; Holm multiplies the smallest of m by m. With 1,000 resamples a
    matrix of 8 methods (28 pairs) could never show a difference (28 x 2/1001 = 0.056); the family's
    resamples are raised so that it can (and left alone for small families)."""
    from cirbench.analysis import stats

    assert 28 * 2 / (1000 + 1) > stats.ALPHA
    n = stats.family_resamples(28, 1000)
    assert n == 2240 and 28 * 2 / (n + 1) < stats.ALPHA / 2
    assert stats.family_resamples(10, 1000) == 1000 and stats.family_resamples(1, 5000) == 5000
    # a clear difference in a 28-pair family is significant after Holm
    a, b = np.ones(200), np.zeros(200)
    result = stats.paired(a, b, "percent", n=n, key="k")
    assert stats.holm([result.p] + [1.0] * 27)[0] < stats.ALPHA
