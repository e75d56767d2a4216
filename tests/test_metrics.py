"""Each metric on a tiny case worked out by hand."""

import pytest
import torch

from cirbench import metrics as M

# 3 queries, rankings over a gallery of 5 items (indices), best first
RANKED = torch.tensor([[2, 0, 4, 1, 3],
                       [1, 3, 0, 2, 4],
                       [4, 3, 2, 1, 0]])


def test_recall_single_target():
    # targets: q0 -> 0 (rank 2), q1 -> 1 (rank 1), q2 -> 0 (rank 5)
    out = M.recall_at_k(RANKED, [[0], [1], [0]], [1, 2, 5])
    assert out == {"R@1": pytest.approx(100 / 3), "R@2": pytest.approx(200 / 3), "R@5": pytest.approx(100.0)}


def test_recall_with_several_targets_counts_any_hit_once():
    out = M.recall_at_k(RANKED, [[0, 4], [2], [1]], [1, 3])
    # q0: targets at ranks 2 and 3 -> hit@3 only; q1: rank 4 -> miss; q2: rank 4 -> miss
    assert out == {"R@1": 0.0, "R@3": pytest.approx(100 / 3)}


def test_recall_query_without_ground_truth_is_a_miss():
    assert M.recall_at_k(RANKED, [[], [1], [4]], [1]) == {"R@1": pytest.approx(200 / 3)}


def test_positive_recall_is_the_domain_conversion_definition():
    # q0 positives {0, 4, 3}: top2 holds 0 -> 1/3, top3 holds 0, 4 -> 2/3
    # q1 positives {3}: top2 -> 1, top3 -> 1
    # q2 has no positive -> 0 (official quirk)
    out = M.positive_recall_at_k(RANKED, [[0, 4, 3], [3], []], [2, 3])
    assert out["R@2"] == pytest.approx(100 * (1 / 3 + 1 + 0) / 3)
    assert out["R@3"] == pytest.approx(100 * (2 / 3 + 1 + 0) / 3)


def test_map_at_k_circo_definition():
    # q0 GT {0, 4}: hits at ranks 2, 3 -> P@2 = 1/2, P@3 = 2/3
    #   AP@2 = (1/2) / min(2, 2) = 1/4 ; AP@3 = (1/2 + 2/3) / 2 = 7/12
    # q1 GT {1, 2, 4}: hits at ranks 1, 4, 5 -> P@1 = 1, P@4 = 2/4, P@5 = 3/5
    #   AP@2 = 1 / min(2, 3) = 1/2 ; AP@3 = 1 / 3
    out = M.map_at_k(RANKED[:2], [[0, 4], [1, 2, 4]], [2, 3, 5])
    assert out["mAP@2"] == pytest.approx(100 * (1 / 4 + 1 / 2) / 2)
    assert out["mAP@3"] == pytest.approx(100 * (7 / 12 + 1 / 3) / 2)
    # AP@5: q0 = (1/2 + 2/3) / 2 = 7/12 ; q1 = (1 + 1/2 + 3/5) / 3 = 0.7
    assert out["mAP@5"] == pytest.approx(100 * (7 / 12 + 0.7) / 2)


def test_rank_summary():
    assert M.rank_summary([1, 4, 2, 10]) == {"mean_rank": 4.25, "median_rank": 3.0}
