"""Collision resolution: give every item its own SID by moving duplicates to the nearest unused code combination.

Distance of a combination ``c`` for an item = ``sum_m distances[item, m, c_m]``. In each group of items sharing a
SID the item closest to it keeps it; the others ("movers") are handled in increasing item index, each taking the
nearest combination no item holds yet. The nearest free combination is found exactly by best-first enumeration
of combinations in increasing distance (a heap over per-head rank tuples; changing one head is explored before
two, but a cheap two-head change still comes before an expensive one-head change). Movers with identical
distance rows (identical embeddings, common on Amazon data) resume one shared enumeration: everything it has
yielded so far is taken, so continuing it is still exact and the whole group costs one pass.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class UniqueResult:
    codes: Tensor  # LongTensor [N, M], all rows distinct
    n_colliding_before: int  # items sharing their SID with another item kept it: N - distinct SIDs before
    n_colliding_after: int  # always 0
    n_moved: int
    moved: Tensor  # LongTensor of the moved items' row indices, ascending


class _NearestCombinations:
    """Yields code combinations of one item in increasing total distance (ties: smaller rank tuple first)."""

    def __init__(self, distances: np.ndarray):
        distances = distances.astype(np.float64)
        order = np.argsort(distances, axis=1, kind="stable")  # [M, K] codes by increasing distance
        # Python lists: the heap loop indexes single elements, which is much faster on lists than on arrays.
        self.order = order.tolist()
        self.sorted = np.take_along_axis(distances, order, axis=1).tolist()
        self.sid_length, self.codebook_size = distances.shape
        start = (0,) * self.sid_length
        self.heap = [(self._cost(start), start)]
        self.seen = {start}

    def _cost(self, ranks: tuple[int, ...]) -> float:
        return sum(self.sorted[head][rank] for head, rank in enumerate(ranks))

    def next_free(self, used: set[tuple[int, ...]]) -> tuple[int, ...]:
        while self.heap:
            _, ranks = heapq.heappop(self.heap)
            for head in range(self.sid_length):
                if ranks[head] + 1 < self.codebook_size:
                    successor = ranks[:head] + (ranks[head] + 1,) + ranks[head + 1:]
                    if successor not in self.seen:
                        self.seen.add(successor)
                        heapq.heappush(self.heap, (self._cost(successor), successor))
            combination = tuple(self.order[head][rank] for head, rank in enumerate(ranks))
            if combination not in used:
                return combination
        raise RuntimeError("every code combination is taken")  # unreachable while N <= K^M


def make_unique(codes: Tensor, distances: Tensor) -> UniqueResult:
    """Make all rows of ``codes [N, M]`` distinct, moving as few items as the collisions require.

    ``distances [N, M, K]`` are the quantizer's per-head squared distances. Deterministic: same input, same output.
    Raises ``ValueError`` when N exceeds the K^M available combinations.
    """
    if codes.ndim != 2 or distances.ndim != 3 or distances.shape[:2] != codes.shape:
        raise ValueError(f"expected codes [N, M] and distances [N, M, K], got {tuple(codes.shape)} and "
                         f"{tuple(distances.shape)}")
    n_items, sid_length = codes.shape
    codebook_size = distances.shape[2]
    if n_items > codebook_size ** sid_length:
        raise ValueError(f"{n_items} items cannot all get distinct SIDs from {sid_length} codebooks of "
                         f"{codebook_size} codes ({codebook_size ** sid_length} combinations); raise "
                         f"sid_codebook_size or sid_length")
    if n_items and (codes.min() < 0 or codes.max() >= codebook_size):
        raise ValueError(f"codes must lie in 0..{codebook_size - 1}")
    codes = codes.detach().cpu().long()
    distances = distances.detach().cpu()
    current_cost = distances.gather(2, codes.unsqueeze(2)).squeeze(2).double().sum(1).numpy()
    codes_np = codes.numpy()
    _, group, counts = np.unique(codes_np, axis=0, return_inverse=True, return_counts=True)
    group = group.reshape(-1)
    n_colliding_before = int(n_items - len(counts))

    # Sorted by group, then distance, then index: the first row of each group is the item that keeps the SID.
    order = np.lexsort((np.arange(n_items), current_cost, group))
    first_of_group = np.ones(n_items, dtype=bool)
    first_of_group[1:] = group[order[1:]] != group[order[:-1]]
    keeps = np.zeros(n_items, dtype=bool)
    keeps[order[first_of_group]] = True
    movers = np.flatnonzero(~keeps)

    new_codes = codes_np.copy()
    used = set(map(tuple, codes_np[keeps].tolist()))
    mover_distances = distances[torch.from_numpy(movers)].numpy()
    enumerations: dict[bytes, _NearestCombinations] = {}
    for mover, row in zip(movers, mover_distances):
        key = row.tobytes()
        if key not in enumerations:
            enumerations[key] = _NearestCombinations(row)
        combination = enumerations[key].next_free(used)
        used.add(combination)
        new_codes[mover] = combination

    n_colliding_after = int(n_items - len(np.unique(new_codes, axis=0)))
    return UniqueResult(torch.from_numpy(new_codes), n_colliding_before, n_colliding_after, len(movers),
                        torch.from_numpy(movers).long())
