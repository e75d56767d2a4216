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
