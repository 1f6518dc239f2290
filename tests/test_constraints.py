"""SIDIndex against brute force over the item table."""

import itertools

import pytest
import torch

from recbole_llada.decoding.constraints import SIDIndex


def _random_item_sid(n_real: int, sid_length: int, codebook_size: int, seed: int) -> torch.Tensor:
    """Unique random SIDs for items 1..n_real; row 0 (padding) is all zeros."""
    generator = torch.Generator().manual_seed(seed)
    all_sids = torch.tensor(list(itertools.product(range(codebook_size), repeat=sid_length)))
    chosen = all_sids[torch.randperm(len(all_sids), generator=generator)[:n_real]]
    return torch.cat([torch.zeros(1, sid_length, dtype=torch.long), chosen])


def _random_partials(item_sid: torch.Tensor, codebook_size: int, n_rows: int, seed: int):
    """Half from real items with random positions hidden, half fully random (often invalid)."""
    generator = torch.Generator().manual_seed(seed)
    n_items, sid_length = item_sid.shape
    from_items = item_sid[torch.randint(1, n_items, (n_rows,), generator=generator)]
    random_codes = torch.randint(0, codebook_size, (n_rows, sid_length), generator=generator)
    source = torch.where(torch.rand(n_rows, 1, generator=generator) < 0.5, from_items,
                         random_codes)
    hidden = torch.rand(n_rows, sid_length, generator=generator) < 0.5
    return source.masked_fill(hidden, -1)


def _brute_force_allowed(item_sid, partial, position, codebook_size):
    allowed = torch.zeros(len(partial), codebook_size, dtype=torch.bool)
    for row in range(len(partial)):
        for sid in item_sid[1:].tolist():
            agrees = all(partial[row, m] < 0 or partial[row, m] == sid[m]
                         for m in range(len(sid)) if m != position[row])
            if agrees:
                allowed[row, sid[position[row]]] = True
    return allowed


@pytest.mark.parametrize("sid_length,codebook_size,n_real,seed",
                         [(3, 4, 20, 0), (2, 5, 7, 1), (4, 3, 40, 2), (1, 6, 4, 3)])
def test_allowed_codes_match_brute_force(sid_length, codebook_size, n_real, seed):
    item_sid = _random_item_sid(n_real, sid_length, codebook_size, seed)
    index = SIDIndex(item_sid, codebook_size)
    partial = _random_partials(item_sid, codebook_size, 60, seed)
    position = torch.randint(0, sid_length, (60,), generator=torch.Generator().manual_seed(seed))
    expected = _brute_force_allowed(item_sid, partial, position, codebook_size)
    assert torch.equal(index.allowed_codes(partial, position), expected)
    assert torch.equal(index.allowed_codes(partial, position, validate=False), expected)
    everywhere = index.allowed_codes_all_positions(partial)
    assert torch.equal(index.allowed_codes_all_positions(partial, validate=False), everywhere)
    for m in range(sid_length):
        at_m = torch.full((60,), m)
        assert torch.equal(everywhere[:, m], _brute_force_allowed(item_sid, partial, at_m,
                                                                  codebook_size))


def test_is_consistent_and_lookup_match_brute_force():
    sid_length, codebook_size = 3, 4
    item_sid = _random_item_sid(25, sid_length, codebook_size, seed=4)
    index = SIDIndex(item_sid, codebook_size)
    partial = _random_partials(item_sid, codebook_size, 80, seed=4)
    for row, consistent in zip(partial.tolist(), index.is_consistent(partial).tolist()):
        expected = any(all(c < 0 or c == s for c, s in zip(row, sid))
                       for sid in item_sid[1:].tolist())
        assert consistent == expected
    all_sids = torch.tensor(list(itertools.product(range(codebook_size), repeat=sid_length)))
    queries = torch.cat([all_sids, torch.tensor([[-1, 0, 0], [0, 4, 0]])])
    item_of = {tuple(sid): item for item, sid in enumerate(item_sid.tolist()) if item > 0}
    expected = [item_of.get(tuple(q), -1) for q in queries.tolist()]
    assert index.lookup(queries).tolist() == expected


def test_padding_row_is_not_an_item():
    item_sid = torch.tensor([[0, 0], [1, 2], [2, 1]])
    index = SIDIndex(item_sid, codebook_size=3)
    assert index.lookup(torch.tensor([[0, 0]])).tolist() == [-1]
    allowed = index.allowed_codes(torch.tensor([[-1, -1]]), torch.tensor([0]))
    assert allowed.tolist() == [[False, True, True]]


def test_invalid_tables_are_rejected():
    with pytest.raises(ValueError, match="unique"):
        SIDIndex(torch.tensor([[0, 0], [1, 2], [1, 2]]), codebook_size=3)
    with pytest.raises(ValueError, match="0..2"):
        SIDIndex(torch.tensor([[0, 0], [1, 3]]), codebook_size=3)
    with pytest.raises(ValueError):
        SIDIndex(torch.tensor([[0, 0], [1, -1]]), codebook_size=3)
    with pytest.raises(ValueError):
        SIDIndex(torch.zeros(1, 2, dtype=torch.long), codebook_size=3)


def test_invalid_queries_are_rejected():
    index = SIDIndex(torch.tensor([[0, 0], [1, 2]]), codebook_size=3)
    with pytest.raises(ValueError):
        index.allowed_codes(torch.tensor([[3, -1]]), torch.tensor([1]))
    with pytest.raises(ValueError):
        index.allowed_codes(torch.tensor([[1, -1]]), torch.tensor([2]))
    with pytest.raises(ValueError):
        index.allowed_codes(torch.tensor([[1, -1, -1]]), torch.tensor([1]))


def test_to_returns_the_moved_index():
    index = SIDIndex(torch.tensor([[0, 0], [1, 2]]), codebook_size=3)
    assert index.to("cpu") is index
    assert index.device == torch.device("cpu")
