"""Chunked top-k: the tie rule, the removed reference, subsets and agreement with a full sort."""

import torch

from cirbench.protocol.scoring import rank_subsets, target_ranks, topk


def unit(*rows):
    return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float), dim=-1)


def test_ties_rank_lower_gallery_index_first_across_chunks():
    # gallery items 0..5; items 1, 3, 4 are identical, so they tie for every query
    gallery = unit([0, 1], [1, 0], [0, 1], [1, 0], [1, 0], [-1, 0])
    query = unit([1, 0])
    for chunk in (1, 2, 4, 100):
        scores, index = topk(query, gallery, 2, chunk_size=chunk)
        assert index.tolist() == [[1, 3]], chunk
        scores, index = topk(query, gallery, 4, chunk_size=chunk)
        assert index.tolist() == [[1, 3, 4, 0]], chunk  # 0 and 2 tie at 0: index 0 first


def test_removed_reference_never_appears_and_others_move_up():
    gallery = unit([1, 0], [0.9, 0.1], [0, 1])
    query = unit([1, 0], [1, 0])
    _s, index = topk(query, gallery, 3, exclude=torch.tensor([0, -1]), chunk_size=2)
    # k shrinks to 2 when a reference is removed from a 3-item gallery
    assert index.tolist() == [[1, 2], [0, 1]]


def test_chunked_topk_matches_full_sort():
    torch.manual_seed(0)
    gallery = torch.nn.functional.normalize(torch.randn(1000, 16), dim=-1)
    queries = torch.nn.functional.normalize(torch.randn(37, 16), dim=-1)
    full = torch.argsort(queries @ gallery.T, dim=1, descending=True, stable=True)[:, :50]
    _s, index = topk(queries, gallery, 50, chunk_size=128, query_chunk=10)
    assert torch.equal(index, full)


def test_target_ranks_follow_the_same_tie_rule():
    gallery = unit([1, 0], [0, 1], [1, 0], [0.5, 0.5])
    query = unit([1, 0], [1, 0], [0, 1])
    ranks = target_ranks(query, gallery, torch.tensor([2, 0, 3]), chunk_size=3)
    # q0: item 2 ties with item 0 which comes first -> rank 2; q1: item 0 -> rank 1; q2: item 3 after item 1 -> 2
    assert ranks.tolist() == [2, 1, 2]
    ranks = target_ranks(query, gallery, torch.tensor([2, 0, 3]), exclude=torch.tensor([0, -1, 1]))
    assert ranks.tolist() == [1, 1, 1]


def test_rank_subsets_orders_each_querys_members_with_padding_last():
    gallery = unit([1, 0], [0, 1], [0.8, 0.2], [0.2, 0.8])
    query = unit([1, 0], [0, 1])
    members = torch.tensor([[1, 2, -1], [0, 2, 3]])
    assert rank_subsets(query, gallery, members).tolist() == [[2, 1, -1], [3, 2, 0]]


def test_one_pass_gives_the_top_and_the_exact_rank_of_a_target_beyond_it():
    from cirbench.protocol.scoring import rank_vectors

    torch.manual_seed(1)
    gallery = torch.nn.functional.normalize(torch.randn(300, 8), dim=-1)
    queries = torch.nn.functional.normalize(torch.randn(20, 8), dim=-1)
    targets = torch.randint(0, 300, (20,))
    order = torch.argsort(queries @ gallery.T, dim=1, descending=True, stable=True)
    expected = (order == targets[:, None]).nonzero()[:, 1] + 1
    for chunk in (7, 64, 1000):
        _s, top, ranks = rank_vectors(queries, gallery, 5, targets, chunk_size=chunk)
        assert torch.equal(top, order[:, :5]) and torch.equal(ranks, expected), chunk


def test_a_method_s_score_matrix_ranks_with_the_same_rules():
    from cirbench.protocol.scoring import rank_scores

    scores = torch.tensor([[0.1, 0.9, 0.9, 0.3], [0.5, 0.5, 0.2, 0.8]])
    s, top, ranks = rank_scores(scores, 3, first=torch.tensor([2, 0]), exclude=torch.tensor([-1, 3]))
    # q0: 1 and 2 tie -> 1 first; target 2 at rank 2. q1: item 3 (the reference) removed; 0 and 1 tie
    assert top.tolist() == [[1, 2, 3], [0, 1, 2]]
    assert ranks.tolist() == [2, 1]


def test_order_by_scores_breaks_ties_by_the_members_own_order():
    """A per-query gallery ranks ties in its own order (GeneCIS: the official tensor, target first)."""
    from cirbench.protocol.scoring import order_by_scores

    members = torch.tensor([[5, 2, 7, -1], [3, 1, -1, -1]])
    scores = torch.tensor([[0.4, 0.4, 0.9, 0.0], [0.1, 0.1, 0.0, 0.0]])
    assert order_by_scores(scores, members).tolist() == [[7, 5, 2, -1], [3, 1, -1, -1]]


# -- cases the mutation run (tests/mutation.py) found unpinned --------------------------------------------

def test_no_queries_give_empty_results_of_the_right_shape():
    from cirbench.protocol.scoring import rank_vectors

    s, i, r = rank_vectors(torch.empty(0, 2), unit([1, 0], [0, 1], [1, 1]), 2)
    assert tuple(s.shape) == (0, 2) and tuple(i.shape) == (0, 2) and tuple(r.shape) == (0,)


def test_without_targets_every_rank_is_zero():
    from cirbench.protocol.scoring import rank_scores, rank_vectors

    gallery = unit([1, 0], [0, 1], [1, 1])
    query = unit([0, 1], [1, 0])
    assert rank_vectors(query, gallery, 2)[2].tolist() == [0, 0]
    assert rank_scores(query @ gallery.T, 2)[2].tolist() == [0, 0]
    # a query without a target (-1) beside one with a target: 0 and the target's rank
    assert rank_vectors(query, gallery, 1, first=torch.tensor([-1, 2]))[2].tolist() == [0, 2]
    assert rank_scores(query @ gallery.T, 1, first=torch.tensor([-1, 2]))[2].tolist() == [0, 2]


def test_k_is_cut_to_what_the_gallery_holds():
    """k beyond the gallery: all of it, less one item when some query removes its reference -- also when
    that reference is item 0; k = 0 gives no columns."""
    from cirbench.protocol.scoring import rank_scores, rank_vectors

    gallery = unit([1, 0], [0.6, 0.8], [0, 1])
    query = unit([1, 0], [0, 1])
    scores = query @ gallery.T
    for ranker in (lambda **kw: rank_vectors(query, gallery, **kw), lambda **kw: rank_scores(scores, **kw)):
        assert ranker(k=10)[1].tolist() == [[0, 1, 2], [2, 1, 0]]
        assert ranker(k=10, exclude=torch.tensor([-1, -1]))[1].tolist() == [[0, 1, 2], [2, 1, 0]]
        assert ranker(k=10, exclude=torch.tensor([0, 0]))[1].tolist() == [[1, 2], [2, 1]]
        assert ranker(k=10, exclude=torch.tensor([0, -1]))[1].tolist() == [[1, 2], [2, 1]]
        # a reference elsewhere than item 0 shortens the list alike (it never trails at the end)
        assert ranker(k=10, exclude=torch.tensor([1, -1]))[1].tolist() == [[0, 2], [2, 1]]
        # k = 0: no column of scores or indices (3 items, one chunk: dropping only the last column, or
        # keeping the first, would leave some), and the targets' ranks still exact
        none = ranker(k=0, first=torch.tensor([1, 0]))
        assert tuple(none[0].shape) == tuple(none[1].shape) == (2, 0) and none[2].tolist() == [2, 3]


def test_a_target_at_gallery_index_zero_is_ranked_by_its_own_score():
    from cirbench.protocol.scoring import rank_scores

    scores = torch.tensor([[0.5, 0.9, 0.1], [0.2, 0.3, 0.25]])
    assert rank_scores(scores, 1, first=torch.tensor([0, 0]))[2].tolist() == [2, 3]


def test_a_reference_in_a_later_chunk_is_removed_there():
    """Chunks of 2 over 5 items: references at 2 and 4 (each the first column of its chunk) and 3."""
    gallery = unit([1, 0], [0.8, 0.6], [0.99, 0.1], [0.6, 0.8], [1, 0.01])
    query = unit([1, 0], [1, 0], [1, 0])
    full = topk(query, gallery, 4, exclude=torch.tensor([2, 4, 3]), chunk_size=100)[1].tolist()
    chunked = topk(query, gallery, 4, exclude=torch.tensor([2, 4, 3]), chunk_size=2)[1].tolist()
    assert full == chunked == [[0, 4, 1, 3], [0, 2, 1, 3], [0, 4, 2, 1]]
    ranks = target_ranks(query, gallery, torch.tensor([1, 1, 1]), exclude=torch.tensor([2, 4, 3]), chunk_size=2)
    assert ranks.tolist() == [3, 3, 4]
