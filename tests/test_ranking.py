"""Full-sort scores from generated items, against a per-user Python reference."""

import pytest
import torch

from recbole_llada.decoding.ranking import ranked_scores, scores_from_generated


def _reference_ranking(generated: list[int], fallback: list[int], min_finite: int) -> list[int]:
    """The finite items of one user, best first."""
    ranking = []
    for item in generated:
        if item > 0 and item not in ranking:
            ranking.append(item)
    for item in fallback:
        if len(ranking) >= min_finite:
            break
        if item > 0 and item not in ranking:
            ranking.append(item)
    return ranking


def _finite_ranking(scores_row: torch.Tensor) -> list[int]:
    finite = torch.isfinite(scores_row).nonzero().flatten()
    return finite[scores_row[finite].argsort(descending=True)].tolist()


def _check(item_ids, n_items, fallback_order, min_finite):
    scores = scores_from_generated(item_ids, n_items, fallback_order, min_finite)
    assert scores.shape == (item_ids.shape[0], n_items)
    assert torch.all(torch.isneginf(scores[:, 0]))
    assert not torch.isnan(scores).any() and not torch.isposinf(scores).any()
    for b in range(item_ids.shape[0]):
        expected = _reference_ranking(item_ids[b].tolist(), fallback_order.tolist(), min_finite)
        finite_values = scores[b][torch.isfinite(scores[b])]
        assert finite_values.unique().numel() == finite_values.numel()  # no ties
        assert _finite_ranking(scores[b]) == expected
        top = scores[b].topk(len(expected)).indices.tolist()
        assert top == expected
    return scores


def test_generated_order_kept_and_fallback_fills_only_the_shortfall():
    item_ids = torch.tensor([[5, 3, -1, 3, 8],
                             [2, 4, 6, 7, 9],
                             [-1, -1, -1, -1, -1],
                             [0, 9, -1, 9, 1]])
    fallback_order = torch.tensor([9, 2, 0, 1, 4, 3, 5, 6, 7, 8])  # includes padding 0
    scores = _check(item_ids, 10, fallback_order, min_finite=4)
    # User 1 generated 5 distinct items, more than min_finite: nothing is added.
    assert torch.isfinite(scores[1]).sum() == 5
    # Fallback items rank below every generated item.
    assert scores[0, 2] < scores[0, 8]


@pytest.mark.parametrize("seed", range(5))
def test_random_cases_match_the_reference(seed):
    generator = torch.Generator().manual_seed(seed)
    n_items, width = 15, 6
    item_ids = torch.randint(-1, n_items, (8, width), generator=generator)
    fallback_order = torch.randperm(n_items - 1, generator=generator) + 1
    min_finite = int(torch.randint(0, n_items + 3, (1,), generator=generator))
    _check(item_ids, n_items, fallback_order, min_finite)


def test_all_items_ranked_when_min_finite_covers_the_catalogue():
    item_ids = torch.tensor([[4, 2], [-1, -1]])
    scores = _check(item_ids, 6, torch.arange(1, 6), min_finite=5)
    assert torch.all(torch.isfinite(scores[:, 1:]))


def test_invalid_inputs_are_rejected():
    with pytest.raises(ValueError):
        scores_from_generated(torch.tensor([[7]]), 5, torch.arange(1, 5), 2)
    with pytest.raises(ValueError):
        scores_from_generated(torch.tensor([[1]]), 5, torch.tensor([1, 1, 2]), 2)
    with pytest.raises(ValueError):
        scores_from_generated(torch.tensor([[1]]), 5, torch.tensor([1, 5]), 2)


@pytest.mark.parametrize("n_keys", [1, 2, 3])
def test_ranked_scores_sort_lexicographically_with_ties_by_item_id(n_keys):
    generator = torch.Generator().manual_seed(n_keys)
    batch_size, n_items = 4, 12
    # Few distinct values, -inf among them, so ties on every key occur.
    keys = [torch.randint(0, 3, (batch_size, n_items), generator=generator).float() for _ in range(n_keys)]
    keys[0][:, 5] = float("-inf")
    scores = ranked_scores(*keys)
    for row in range(batch_size):
        expected = sorted(range(1, n_items), key=lambda item: ([-key[row, item].item() for key in keys], item))
        finite = [item for item in scores[row].argsort(descending=True).tolist() if item != 0]
        assert finite == expected
        assert torch.isneginf(scores[row, 0]) and scores[row, 1:].unique().numel() == n_items - 1


@pytest.mark.parametrize("top_k", [1, 3, 9, 10])
def test_ranked_scores_top_k_resolves_the_full_sorts_first_ranks_and_keeps_the_key_below(top_k):
    """Against the full sort (the brute force of the test above): the same first top_k items in the same order,
    scored above every other item, whose scores are their keys; padding -inf. Ties and -inf everywhere."""
    generator = torch.Generator().manual_seed(top_k)
    batch_size, n_items = 6, 12
    key = torch.randint(-2, 2, (batch_size, n_items), generator=generator).float()
    key[:, 5] = float("-inf")
    key[0, :] = float("-inf")  # a row of -inf only: its top_k are the lowest ids
    key[1, 0] = 10.0  # padding scored highest: never ranked
    scores = ranked_scores(key, top_k=top_k)
    full = ranked_scores(key)
    for row in range(batch_size):
        expected = full[row].argsort(descending=True).tolist()[:top_k]
        top = scores[row].topk(top_k)
        assert top.indices.tolist() == expected
        rest = [item for item in range(1, n_items) if item not in expected]
        assert top.values.min() > scores[row, rest].max()
        assert torch.equal(scores[row, rest], key[row, rest])
        assert torch.isneginf(scores[row, 0]) and (top.values[:-1] > top.values[1:]).all()


def test_ranked_scores_top_k_is_ignored_with_several_keys_or_no_room():
    keys = [torch.tensor([[0.0, 1.0, 1.0, 2.0, 0.5]]), torch.tensor([[0.0, 3.0, 2.0, 1.0, 0.0]])]
    assert torch.equal(ranked_scores(*keys, top_k=2), ranked_scores(*keys))
    assert torch.equal(ranked_scores(keys[0], top_k=4), ranked_scores(keys[0]))  # top_k >= the real items


def test_ranked_scores_top_k_stay_distinct_for_keys_of_large_magnitude():
    key = torch.full((1, 50), 3.0e7)
    key[0, 7] = 3.0e7 + 64  # the one float32 step above the others at this magnitude (spacing 2)
    scores = ranked_scores(key, top_k=10)
    top = scores[0].topk(10)
    assert top.indices.tolist() == [7, 1, 2, 3, 4, 5, 6, 8, 9, 10]
    assert (top.values[:-1] > top.values[1:]).all()


def test_ranked_scores_reject_mismatched_keys():
    with pytest.raises(ValueError):
        ranked_scores(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError):
        ranked_scores()
