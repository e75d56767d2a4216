"""Metrics over the whole ranking (issue 35's protocols): mAP by Radenovic's trapezoid rule as FREEDOM's
and BASIC's code computes it (cirtorch's compute_ap, its 1e-5 kept), and FREEDOM's R@K and P@K over a
query's positives -- each worked out by hand, and the exact rank of every target however deep it lies."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import colour_encoder
from cirbench.protocol import metrics as M
from helpers import evaluate_colours

colour_encoder.register()


def view(exact: list[list[int]], top: list[list[int]] | None = None) -> M.RankView:
    exact_arrays = [np.array(r, dtype=np.int64) for r in exact]
    top = np.array(top if top is not None else [[0]] * len(exact))
    return M.RankView(top, exact_arrays, np.array([r[0] if r else 0 for r in exact]), exact_ranks=exact_arrays)


def test_trapezoid_ap_by_hand_and_not_the_non_interpolated_one():
    """Positives at 1-based ranks 1 and 3 (0-based 0 and 2): (1 + 1) / 2 + (1/2 + 2/3) / 2, times a recall
    step of 1 / (2 + 1e-5); the non-interpolated AP, (1 + 2/3) / 2, is another number. A query whose one
    positive is at rank 2: (0 + 1/2) / 2 / (1 + 1e-5). A query without positives: 0, counted."""
    got = M.average_precision(view([[1, 3], [2], []]))["mAP"].values
    assert got[0] == pytest.approx((1.0 + (0.5 + 2 / 3) / 2) / (2 + 1e-5), abs=1e-12)
    assert got[0] != pytest.approx((1 + 2 / 3) / 2, abs=1e-4)
    assert got[1] == pytest.approx(0.25 / (1 + 1e-5), abs=1e-12) and got[2] == 0.0
    assert M.average_precision(view([[1]]))["mAP"].value() == pytest.approx(100 / (1 + 1e-5))  # 99.999, not 100
    # the ranks need not come sorted
    assert M.average_precision(view([[3, 1]]))["mAP"].values[0] == got[0]
    # positives at ranks 1 and 2: (1 + 1)/2 + (1/1 + 2/2)/2, the second "before" precision 1/1 (not 1/2)
    assert M.average_precision(view([[1, 2]]))["mAP"].values[0] == pytest.approx(2 / (2 + 1e-5), abs=1e-12)
    # a positive the ranking does not reach (rank 0, e.g. outside a query's subset) counts in n only
    assert M.average_precision(view([[1, 0]]))["mAP"].values[0] == pytest.approx(1 / (2 + 1e-5), abs=1e-12)


def test_ap_refuses_a_view_without_exact_ranks():
    plain = M.RankView(np.array([[0]]), [np.array([1])], np.array([1]))
    with pytest.raises(ValueError, match="exact rank"):
        M.average_precision(plain)


def test_freedom_recall_and_precision_over_positives_by_hand():
    """Three positives at ranks 1, 4 and 60: R@5 = 2 / (3 + 1e-5), P@5 = 2 / (min(3, 5) + 1e-5); P@2 =
    1 / (2 + 1e-5) (min(3, 2) = 2); no positive: 0 for both."""
    v = view([[1, 4, 60], []])
    r = M.recall_over_positives(v, [5, 100])
    p = M.precision_over_positives(v, [2, 5])
    assert r["R@5"].values.tolist() == pytest.approx([2 / (3 + 1e-5), 0.0])
    assert r["R@100"].values.tolist() == pytest.approx([3 / (3 + 1e-5), 0.0])
    assert p["P@2"].values.tolist() == pytest.approx([1 / (2 + 1e-5), 0.0])
    assert p["P@5"].values.tolist() == pytest.approx([2 / (3 + 1e-5), 0.0])


def test_exact_ranks_of_every_target_with_ties_exclusion_and_chunks():
    from cirbench.protocol.scoring import exact_target_ranks, ranks_in

    gallery = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [1, 0], [0, 1], [1, 1], [1, 0], [0.5, 1]]), dim=1)
    query = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), dim=1)  # 3 queries, 2-d
    # query 0 scores 1, 1, 0, .71, 1, .45: order 0, 1, 4 (ties in gallery order), 3, 5, 2; item 1 left out
    # query 1 scores 0, 0, 1, .71, 0, .89: item 2 left out: 5, 3, 0, 1, 4 (ties), then 2
    # query 2 scores .71, .71, .71, 1, .71, .95: 3, 5, then the ties 0, 1, 2, 4
    targets = torch.tensor([[4, 2, -1], [0, 4, 3], [3, 5, -1]])
    exclude = torch.tensor([1, 2, -1])
    for chunk in (1, 2, 16):
        for block in (1, 2, 1024):
            got = exact_target_ranks(query, gallery, targets, exclude, chunk_size=chunk, query_chunk=block)
            assert got.tolist() == [[2, 5, 0], [3, 5, 2], [1, 2, 0]], (chunk, block)
    assert ranks_in(query @ gallery.T, targets).tolist() == [[3, 6, 0], [4, 6, 3], [1, 2, 0]]
    empty = exact_target_ranks(torch.empty(0, 2), gallery, torch.zeros(0, 3, dtype=torch.long))
    assert empty.shape == (0, 3) and empty.dtype == torch.long


def greys(tmp_path, metrics: dict, main: list[str]):
    """A folder dataset of 55 identical grey images (g00 ... g54) and one query for "gray" whose targets
    are g01 and g53, scored with ``metrics``."""
    from PIL import Image

    root = tmp_path / "greys"
    (root / "gallery").mkdir(parents=True)
    for i in range(55):
        Image.new("RGB", (8, 8), (128, 128, 128)).save(root / "gallery" / f"g{i:02d}.png")
    (root / "val.jsonl").write_text(json.dumps({"reference": "gallery/g00.png", "text": "gray",
                                                "targets": ["gallery/g01.png", "gallery/g53.png"]}) + "\n")
    (root / "cirbench.json").write_text(json.dumps({"metrics": metrics, "main_metrics": main}))
    return root


def test_the_engine_ranks_every_positive_exactly_beyond_the_kept_top(tmp_path):
    """55 identical grey images tie for the text "gray": the ranking is the gallery order, so the
    positives g01 and g53 sit at 1-based ranks 2 and 54 -- the second beyond the 50 the engine keeps. By
    hand: AP = ((0 + 1/2) + (1/53 + 2/54)) / 2 / (2 + 1e-5); R@3 = 1 / (2 + 1e-5), P@3 the same (min(2,
    3) = 2)."""
    root = greys(tmp_path, {"ap": [], "recall_over_positives": [3], "precision_over_positives": [3]},
                 ["mAP", "R@3", "P@3"])
    (cell,) = evaluate_colours(root, ["text-only"], tmp_path).cells
    assert cell.status == "computed", cell.error
    ap = ((0 + 1 / 2) + (1 / 53 + 2 / 54)) / 2 / (2 + 1e-5)
    m = cell.record.metrics
    assert m["mAP"] == pytest.approx(100 * ap) and m["R@3"] == pytest.approx(100 / (2 + 1e-5))
    assert m["P@3"] == pytest.approx(100 / (2 + 1e-5))


def test_the_scores_path_and_a_reranker_keep_the_ranks_exact(tmp_path):
    """The same greys through a method that gives its own scores (the text similarity: the same ranking),
    and through one that re-ranks the top 2 in reverse (g01 first: AP ((1 + 1)/2 + (1/53 + 2/54)/2) /
    (2 + 1e-5), the deep positive's rank untouched)."""
    from cirbench.contracts.method import Method

    root = greys(tmp_path, {"ap": []}, ["mAP"])

    class OwnScores(Method):
        name = "own-scores"
        scoring = "scores"

        def score(self, batch, gallery):
            text = torch.nn.functional.normalize(self.ctx.text_features(batch.texts).to(gallery.features.device), dim=1)
            return text @ torch.nn.functional.normalize(gallery.features, dim=1).T

    class SwapTwo(Method):
        name = "swap-two"
        rerank_depth = 2

        def encode_queries(self, batch):
            return self.ctx.text_features(batch.texts).to(batch.reference_features.device)

        def rerank(self, batch, candidates, scores):
            return -torch.arange(candidates.shape[1], dtype=torch.float32).flip(0).expand_as(scores)

    cells = {c.method: c for c in evaluate_colours(root, [OwnScores, SwapTwo, "text-only"], tmp_path).cells}
    plain = ((0 + 1 / 2) + (1 / 53 + 2 / 54)) / 2 / (2 + 1e-5)
    swapped = ((1 + 1) / 2 + (1 / 53 + 2 / 54) / 2) / (2 + 1e-5)
    assert cells["own-scores"].record.metrics["mAP"] == pytest.approx(100 * plain)
    assert cells["text-only"].record.metrics["mAP"] == pytest.approx(100 * plain)
    assert cells["swap-two"].record.metrics["mAP"] == pytest.approx(100 * swapped)
