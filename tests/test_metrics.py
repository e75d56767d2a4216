"""Each metric on a tiny case worked out by hand, from the per-query values up."""

import numpy as np
import pytest

from cirbench.protocol import metrics as M

# 3 queries, rankings over a gallery of 5 items (indices), best first
RANKED = np.array([[2, 0, 4, 1, 3],
                   [1, 3, 0, 2, 4],
                   [4, 3, 2, 1, 0]])


def values(out):
    return {k: v.value() for k, v in out.items()}


def view(targets, ranked=RANKED):
    return M.RankView.from_ranking(ranked, targets)


def test_recall_single_target():
    # targets: q0 -> 0 (rank 2), q1 -> 1 (rank 1), q2 -> 0 (rank 5)
    out = M.recall_at_k(view([[0], [1], [0]]), [1, 2, 5])
    assert values(out) == {"R@1": pytest.approx(100 / 3), "R@2": pytest.approx(200 / 3), "R@5": pytest.approx(100.0)}
    assert out["R@2"].values.tolist() == [1.0, 1.0, 0.0]  # the per-query values behind the number


def test_recall_with_several_targets_counts_any_hit_once():
    out = M.recall_at_k(view([[0, 4], [2], [1]]), [1, 3])
    # q0: targets at ranks 2 and 3 -> hit@3 only; q1: rank 4 -> miss; q2: rank 4 -> miss
    assert values(out) == {"R@1": 0.0, "R@3": pytest.approx(100 / 3)}


def test_recall_query_without_ground_truth_is_a_miss():
    assert values(M.recall_at_k(view([[], [1], [4]]), [1])) == {"R@1": pytest.approx(200 / 3)}


def test_recall_beyond_the_ranked_depth_is_a_miss():
    # only the top 2 of each ranking are known: q0's target at rank 2 is found, q2's (rank 5) is not
    shallow = view([[0], [1], [0]], RANKED[:, :2])
    assert shallow.target_ranks[2].tolist() == [0]
    assert values(M.recall_at_k(shallow, [1, 2])) == {"R@1": pytest.approx(100 / 3), "R@2": pytest.approx(200 / 3)}


def test_positive_recall_is_the_domain_conversion_definition():
    # q0 positives {0, 4, 3}: top2 holds 0 -> 1/3, top3 holds 0, 4 -> 2/3
    # q1 positives {3}: top2 -> 1, top3 -> 1
    # q2 has no positive -> 0 (official quirk)
    out = values(M.positive_recall_at_k(view([[0, 4, 3], [3], []]), [2, 3]))
    assert out["R@2"] == pytest.approx(100 * (1 / 3 + 1 + 0) / 3)
    assert out["R@3"] == pytest.approx(100 * (2 / 3 + 1 + 0) / 3)


def test_map_at_k_circo_definition():
    # q0 GT {0, 4}: hits at ranks 2, 3 -> P@2 = 1/2, P@3 = 2/3
    #   AP@2 = (1/2) / min(2, 2) = 1/4 ; AP@3 = (1/2 + 2/3) / 2 = 7/12
    # q1 GT {1, 2, 4}: hits at ranks 1, 4, 5 -> P@1 = 1, P@4 = 2/4, P@5 = 3/5
    #   AP@2 = 1 / min(2, 3) = 1/2 ; AP@3 = 1 / 3
    out = values(M.map_at_k(view([[0, 4], [1, 2, 4]], RANKED[:2]), [2, 3, 5]))
    assert out["mAP@2"] == pytest.approx(100 * (1 / 4 + 1 / 2) / 2)
    assert out["mAP@3"] == pytest.approx(100 * (7 / 12 + 1 / 3) / 2)
    # AP@5: q0 = (1/2 + 2/3) / 2 = 7/12 ; q1 = (1 + 1/2 + 3/5) / 3 = 0.7
    assert out["mAP@5"] == pytest.approx(100 * (7 / 12 + 0.7) / 2)


def test_primary_recall_reads_the_first_target_only():
    # q0: first target 4 at rank 3 (0 at rank 2 does not count); q1: first target 1 at rank 1
    out = values(M.primary_recall_at_k(view([[4, 0], [1]], RANKED[:2]), [1, 2, 3]))
    assert out == {"R@1": 50.0, "R@2": 50.0, "R@3": 100.0}


def test_rank_summary_uses_the_official_median():
    ranks = M.RankView(np.zeros((4, 0), dtype=int), [np.zeros(1)] * 4, np.array([1, 4, 2, 10]))
    out = values(M.rank_summary(ranks))
    # mean 4.25; official median: floor(median of 0-based ranks {0, 3, 1, 9} = 2.0) + 1 = 3
    assert out == {"mean_rank": 4.25, "median_rank": 3.0}
    # an even count whose middle ranks differ by one: 0-based median 1.5 -> floor -> 1 -> rank 2
    # (the median of the 1-based ranks would say 2.5)
    out = values(M.rank_summary(M.RankView(np.zeros((4, 0)), [np.zeros(1)] * 4, np.array([1, 2, 3, 4]))))
    assert out["median_rank"] == 2.0


def test_queries_without_a_target_are_left_out_of_rank_summaries():
    out = values(M.rank_summary(M.RankView(np.zeros((3, 0)), [np.zeros(0)] * 3, np.array([0, 3, 5]))))
    assert out == {"mean_rank": 4.0, "median_rank": 4.0}


def test_compute_reads_the_subset_view_for_subset_families_and_scoped_splits():
    gallery_view = view([[0], [1], [0]])
    subset_view = view([[3], [0], [4]], np.array([[3, 1, -1], [1, 0, 2], [4, 0, -1]]))
    views = {"gallery": gallery_view, "subset": subset_view}
    out = values(M.compute(views, {"recall": [1], "recall_subset": [1]}))
    assert out == {"R@1": pytest.approx(100 / 3), "Rs@1": pytest.approx(200 / 3)}
    # a split whose queries rank only their own gallery (GeneCIS): every family reads the subsets
    assert values(M.compute(views, {"recall": [1, 2]}, scope="subset")) == {"R@1": pytest.approx(200 / 3),
                                                                            "R@2": 100.0}


# -- cases the mutation run found unpinned (tests/mutation.py) ----------------------------------------

def test_needed_depth_is_the_largest_gallery_wide_cut_off():
    """Only gallery-wide families need the ranking's depth; subset families rank each query's members."""
    assert M.needed_depth({"recall": [1, 5, 10, 50], "recall_subset": [1, 2, 3], "positive_recall": [100, 200]}) == 200
    assert M.needed_depth({"recall_subset": [1, 2, 3]}) == 0
    assert M.needed_depth({}) == 0
    assert M.needed_depth({"map": [5, 10], "rank": []}) == 10


def test_map_of_a_target_beyond_the_ranked_top_and_of_a_query_without_ground_truth():
    """q0: targets at rank 2 and beyond the known top (rank 0): AP@5 = (1/2) / 2, the second target
    contributes nothing (it is not found at a position); q1 has no ground truth: AP 0, not an error."""
    v = M.RankView(np.zeros((2, 5), dtype=np.int64), [np.array([2, 0]), np.array([], dtype=np.int64)],
                   np.array([2, 0]), np.array([2, 0]))
    assert M.map_at_k(v, [5])["mAP@5"].values.tolist() == [0.25, 0.0]


def test_primary_recall_of_a_query_whose_first_target_was_not_found_is_a_miss():
    v = M.RankView(np.zeros((2, 3), dtype=np.int64), [np.array([1]), np.array([0])], np.array([1, 0]))
    assert M.primary_recall_at_k(v, [1, 3])["R@3"].values.tolist() == [1.0, 0.0]


def test_first_rank_is_zero_without_a_target_or_beyond_the_ranking():
    v = M.RankView.from_ranking(np.array([[2, 0], [1, 2], [0, 1]]), [[4], [2], []])
    assert v.first_rank.tolist() == [0, 2, 0]


@pytest.mark.parametrize("agg", ["aaa", "zzz", ""])
def test_an_unknown_aggregate_is_refused(agg):
    with pytest.raises(ValueError, match="unknown aggregate"):
        M.aggregate(np.array([1.0, 2.0]), agg)
