"""Residual k-means: M levels of k-means, each on what the previous levels left over (no neural network)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from recbole_llada.sid.quantizers.base import FitReport, Quantizer
from recbole_llada.sid.quantizers.kmeans import residual_kmeans, squared_distances


@dataclass
class KMeansQuantizerConfig:
    """Hyperparameters of the k-means based quantizers (RQ-KMeans, OPQ): the ``sid_*`` config keys of the same
    names, without defaults of their own (``sid.build.quantizer_config`` fills them from the config; the keys'
    defaults and meanings are in properties/model/LLaDARec.yaml)."""

    sid_length: int
    codebook_size: int
    kmeans_iters: int
    opq_iters: int  # OPQ only
    seed: int
    device: str

    def __post_init__(self) -> None:
        for name in ("sid_length", "codebook_size", "kmeans_iters", "opq_iters"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


class ResidualKMeansQuantizer(Quantizer):
    """Level m's codebook is k-means (seed + m) on the training residuals after levels < m."""

    def __init__(self, cfg: KMeansQuantizerConfig):
        self.cfg = cfg
        self.sid_length = cfg.sid_length
        self.codebook_size = cfg.codebook_size
        self.codebooks: Tensor | None = None  # [M, K, D]

    def fit(self, train_embeddings: Tensor) -> FitReport:
        start = time.perf_counter()
        self.codebooks = residual_kmeans(train_embeddings.detach().float().to(self.cfg.device), self.codebook_size,
                                         self.sid_length, self.cfg.kmeans_iters, self.cfg.seed)
        return FitReport(seconds=time.perf_counter() - start)

    def _fitted(self) -> Tensor:
        if self.codebooks is None:
            raise ValueError("quantizer is not fitted yet: call fit() first")
        return self.codebooks

    def _greedy(self, embeddings: Tensor) -> tuple[Tensor, Tensor]:
        """Per-level distances ``[N, M, K]`` and the residual left after the greedy codes."""
        codebooks = self._fitted()
        residual = embeddings.detach().float().to(codebooks.device)
        distances = []
        for level in range(self.sid_length):
            level_distances = squared_distances(residual, codebooks[level])
            distances.append(level_distances)
            residual = residual - codebooks[level][level_distances.argmin(dim=1)]
        return torch.stack(distances, dim=1), residual

    def distances(self, embeddings: Tensor) -> Tensor:
        return self._greedy(embeddings)[0].cpu()

    def reconstruction_error(self, embeddings: Tensor) -> float:
        return float(self._greedy(embeddings)[1].pow(2).mean())
