"""make_unique against a brute-force reference that enumerates every code combination."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from recbole_llada.sid.unique import make_unique


def brute_force_unique(codes: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
    """The documented rule, spelled out: per group the closest item keeps the SID; the others, in index order,
    each take the cheapest combination nobody holds yet (all K^M combinations enumerated)."""
    n_items, sid_length = codes.shape
    codebook_size = distances.shape[2]
    rows = [tuple(row) for row in codes.tolist()]
    cost = lambda item, combination: sum(float(distances[item, head, code]) for head, code in enumerate(combination))
    keeper = {}
    for item, row in enumerate(rows):
        if row not in keeper or cost(item, row) < cost(keeper[row], row):
            keeper[row] = item
    used = set(keeper)
    result = list(rows)
    for item in range(n_items):
        if keeper[rows[item]] == item:
            continue
        free = [c for c in itertools.product(range(codebook_size), repeat=sid_length) if c not in used]
        result[item] = min(free, key=lambda combination: cost(item, combination))
        used.add(result[item])
    return torch.tensor(result)


def identical_groups(n_items: int, n_distinct: int, sid_length: int, codebook_size: int, seed: int):
    """Items drawn from a few distinct 'embeddings': identical items have identical distances and codes."""
    generator = torch.Generator().manual_seed(seed)
    distinct = torch.rand(n_distinct, sid_length, codebook_size, generator=generator, dtype=torch.float64)
    members = torch.randint(n_distinct, (n_items,), generator=generator)
    distances = distinct[members]
    return distances.argmin(dim=-1), distances


@pytest.mark.parametrize("seed", range(5))
def test_matches_brute_force_with_many_identical_items(seed):
    codes, distances = identical_groups(n_items=40, n_distinct=6, sid_length=3, codebook_size=4, seed=seed)
    result = make_unique(codes, distances)
    assert len(torch.unique(result.codes, dim=0)) == 40 and result.n_colliding_after == 0
    assert torch.equal(result.codes, brute_force_unique(codes, distances))
    assert result.n_colliding_before == 40 - len(torch.unique(codes, dim=0)) == result.n_moved
    unmoved = torch.ones(40, dtype=torch.bool)
    unmoved[result.moved] = False
    assert torch.equal(result.codes[unmoved], codes[unmoved])


def test_matches_brute_force_for_distinct_items_with_non_argmin_codes():
    generator = torch.Generator().manual_seed(7)
    distances = torch.rand(30, 2, 6, generator=generator, dtype=torch.float64)
    codes = torch.randint(2, (30, 2), generator=generator)  # e.g. after Sinkhorn: not every code is the argmin
    assert torch.equal(make_unique(codes, distances).codes, brute_force_unique(codes, distances))


def test_cheap_two_head_change_beats_expensive_one_head_change():
    distances = torch.tensor([
        [[0.0, 0.1, 9.0], [0.0, 0.1, 9.0]],  # item 0 keeps (0, 0)
        [[0.0, 0.1, 9.0], [0.0, 0.1, 9.0]],  # identical item 1 takes (0, 1) or (1, 0)
        [[0.0, 0.1, 9.0], [0.0, 0.1, 9.0]],  # item 2 takes the other one
        [[0.0, 0.1, 9.0], [0.0, 0.1, 9.0]],  # item 3: (1, 1) costs 0.2, any one-head change left costs 9
    ])
    result = make_unique(torch.zeros(4, 2, dtype=torch.long), distances)
    assert result.codes[3].tolist() == [1, 1]


def test_fills_every_combination_when_all_items_are_identical():
    distances = torch.rand(1, 3, 2, dtype=torch.float64).expand(8, 3, 2).clone()
    result = make_unique(distances.argmin(dim=-1), distances)
    assert sorted(map(tuple, result.codes.tolist())) == list(itertools.product(range(2), repeat=3))


def test_too_many_items_is_a_clear_error():
    with pytest.raises(ValueError, match="9 items cannot all get distinct SIDs"):
        make_unique(torch.zeros(9, 3, dtype=torch.long), torch.rand(9, 3, 2))


def test_keeps_the_item_closest_to_the_shared_code():
    distances = torch.tensor([[[0.5, 5.0, 6.0]], [[0.2, 5.0, 6.0]], [[0.7, 5.0, 6.0]]])
    result = make_unique(torch.zeros(3, 1, dtype=torch.long), distances)
    assert result.codes[1].tolist() == [0]  # item 1 is closest to code 0
    assert result.moved.tolist() == [0, 2]


def test_fast_on_a_large_set_with_big_identical_groups():
    rng = np.random.default_rng(0)
    distinct = torch.from_numpy(rng.random((800, 4, 256)).astype(np.float32))
    members = torch.from_numpy(rng.integers(800, size=25000))
    distances = distinct[members]
    result = make_unique(distances.argmin(dim=-1), distances)
    assert result.n_colliding_after == 0 and result.n_moved == 25000 - 800
