"""Optimized product quantization (Ge et al., non-parametric OPQ) in torch.

Alternates (a) product quantization of the rotated data ``x @ R`` (k-means in each of M subspaces, warm-started)
and (b) the orthogonal Procrustes update of ``R`` towards the quantized points. We write it rather than use
``faiss.OPQMatrix`` + ``ProductQuantizer`` because faiss needs K to be a power of two, seeds and threads its own
k-means (results can change with the OpenMP thread count) and runs on CPU only; this version reuses our seeded
k-means, runs on GPU, and its per-subspace distances (in the rotated space, which preserves distances) are what
collision resolution needs.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from recbole_llada.sid.quantizers.base import FitReport, Quantizer
from recbole_llada.sid.quantizers.kmeans import kmeans, squared_distances
from recbole_llada.sid.quantizers.rq_kmeans import KMeansQuantizerConfig

_REFINE_ITERS = 10  # k-means iterations per OPQ alternation, warm-started from the previous codebooks


class OPQQuantizer(Quantizer):
    """M subspaces of D / M dims after a learned rotation; the embedding dim must be divisible by M."""

    def __init__(self, cfg: KMeansQuantizerConfig):
        self.cfg = cfg
        self.sid_length = cfg.sid_length
        self.codebook_size = cfg.codebook_size
        self.rotation: Tensor | None = None  # [D, D], orthogonal
        self.codebooks: Tensor | None = None  # [M, K, D / M]

    def _product_quantize(self, rotated: Tensor, init: Tensor | None, iters: int) -> tuple[Tensor, Tensor]:
        """Codebooks ``[M, K, s]`` for the rotated data and its quantized reconstruction ``[N, D]``."""
        codebooks, reconstruction = [], []
        for head, block in enumerate(rotated.chunk(self.sid_length, dim=1)):
            start = None if init is None else init[head]
            result = kmeans(block, self.codebook_size, iters, self.cfg.seed + head, init=start)
            codebooks.append(result.centers)
            reconstruction.append(result.centers[result.assignments])
        return torch.stack(codebooks), torch.cat(reconstruction, dim=1)

    def fit(self, train_embeddings: Tensor) -> FitReport:
        start = time.perf_counter()
        x = train_embeddings.detach().float().to(self.cfg.device)
        dim = x.shape[1]
        if dim % self.sid_length != 0:
            raise ValueError(f"OPQ splits the embedding into {self.sid_length} equal parts, but its dim {dim} is not "
                             f"divisible by {self.sid_length}; choose sid_pca_dim divisible by sid_length")
        generator = torch.Generator().manual_seed(self.cfg.seed)
        rotation = torch.linalg.qr(torch.randn(dim, dim, generator=generator))[0].to(x.device)
        codebooks, quantized = self._product_quantize(x @ rotation, None, self.cfg.kmeans_iters)
        for _ in range(self.cfg.opq_iters):
            # Orthogonal Procrustes: the rotation that best maps x onto its current quantization.
            u, _, vh = torch.linalg.svd(x.T @ quantized)
            rotation = u @ vh
            codebooks, quantized = self._product_quantize(x @ rotation, codebooks, _REFINE_ITERS)
        self.rotation, self.codebooks = rotation, codebooks
        return FitReport(seconds=time.perf_counter() - start, epochs=self.cfg.opq_iters)

    def _rotated_blocks(self, embeddings: Tensor) -> tuple[Tensor, ...]:
        if self.rotation is None or self.codebooks is None:
            raise ValueError("quantizer is not fitted yet: call fit() first")
        rotated = embeddings.detach().float().to(self.rotation.device) @ self.rotation
        return rotated.chunk(self.sid_length, dim=1)

    def distances(self, embeddings: Tensor) -> Tensor:
        blocks = self._rotated_blocks(embeddings)
        per_head = [squared_distances(block, self.codebooks[head]) for head, block in enumerate(blocks)]
        return torch.stack(per_head, dim=1).cpu()

    def reconstruction_error(self, embeddings: Tensor) -> float:
        distances = self.distances(embeddings)
        # The rotation preserves distances, so the error is the sum of per-subspace errors.
        return float(distances.min(dim=-1).values.sum(dim=1).mean()) / embeddings.shape[1]
