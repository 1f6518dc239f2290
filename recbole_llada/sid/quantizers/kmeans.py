"""Seeded k-means (k-means++ seeding, Lloyd iterations) in torch, on whatever device the data lives."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

_CHUNK_ROWS = 65536  # bounds the [rows, k] distance block for large N


def squared_distances(x: Tensor, centers: Tensor) -> Tensor:
    """``[N, D] x [K, D] -> [N, K]`` squared Euclidean distances."""
    products = x @ centers.T
    distances = x.pow(2).sum(1, keepdim=True) - 2 * products + centers.pow(2).sum(1)
    return distances.clamp_min_(0)


def assign(x: Tensor, centers: Tensor) -> tuple[Tensor, Tensor]:
    """Nearest center of each row and its squared distance, computed in row chunks."""
    indices, distances = [], []
    for chunk in x.split(_CHUNK_ROWS):
        best = squared_distances(chunk, centers).min(dim=1)
        indices.append(best.indices)
        distances.append(best.values)
    return torch.cat(indices), torch.cat(distances)


def kmeans_plus_plus(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding: each next center drawn with probability proportional to its squared distance."""
    n = x.shape[0]
    first = torch.randint(n, (1,), generator=generator, device=x.device)
    centers = [x[first]]
    closest = squared_distances(x, centers[0]).squeeze(1)
    for _ in range(1, k):
        total = closest.sum()
        # With fewer distinct points than k every distance is zero; fall back to uniform draws (duplicate centers).
        weights = closest if total > 0 else torch.ones_like(closest)
        chosen = torch.multinomial(weights, 1, generator=generator)
        centers.append(x[chosen])
        closest = torch.minimum(closest, squared_distances(x, centers[-1]).squeeze(1))
    return torch.cat(centers)


@dataclass
class KMeansResult:
    centers: Tensor  # [k, D]
    assignments: Tensor  # [N] long
    inertia: float  # mean squared distance to the assigned center
    iterations: int


def kmeans(x: Tensor, k: int, n_iters: int = 100, seed: int = 0, init: Tensor | None = None) -> KMeansResult:
    """Lloyd's k-means on ``x [N, D]``; deterministic for a seed on CPU.

    ``init`` (``[k, D]``) replaces k-means++ seeding, e.g. to warm-start from a previous solution. An empty cluster
    is re-seeded with the point currently farthest from its center, so all k centers stay in use when N >= k.
    """
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"kmeans needs a non-empty [N, D] tensor, got shape {tuple(x.shape)}")
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    x = x.detach().float()
    generator = torch.Generator(device=x.device).manual_seed(seed)
    centers = kmeans_plus_plus(x, k, generator) if init is None else init.detach().float().clone()
    if centers.shape != (k, x.shape[1]):
        raise ValueError(f"init has shape {tuple(centers.shape)}, expected {(k, x.shape[1])}")
    assignments, distances = assign(x, centers)
    iterations = 0
    for iterations in range(1, n_iters + 1):
        counts = torch.bincount(assignments, minlength=k)
        sums = torch.zeros_like(centers).index_add_(0, assignments, x)
        nonempty = counts > 0
        centers[nonempty] = sums[nonempty] / counts[nonempty].unsqueeze(1).float()
        empty = (~nonempty).nonzero().squeeze(1)
        if len(empty) > 0:
            farthest = distances.topk(min(len(empty), x.shape[0])).indices
            centers[empty[:len(farthest)]] = x[farthest]
        new_assignments, distances = assign(x, centers)
        if torch.equal(new_assignments, assignments) and len(empty) == 0:
            break
        assignments = new_assignments
    return KMeansResult(centers, assignments, float(distances.mean()), iterations)


def residual_kmeans(x: Tensor, k: int, n_levels: int, n_iters: int, seed: int) -> Tensor:
    """Codebooks ``[n_levels, k, D]``: level l runs k-means (seed + l) on what the levels before it left over."""
    residual = x
    codebooks = []
    for level in range(n_levels):
        result = kmeans(residual, k, n_iters, seed + level)
        codebooks.append(result.centers)
        residual = residual - result.centers[result.assignments]
    return torch.stack(codebooks)
