"""Residual-quantization VAE (TIGER-style hierarchical SIDs), for the tokenizer ablation.

The encoder maps an embedding to one ``d``-dim latent; level m quantizes what levels < m left over, each with its
own K codes, so early codes matter more than late ones (unlike the parallel heads of MH-VQVAE). Each level's
losses follow the RQ-VAE paper: codebook MSE to the stopped residual plus beta * commitment MSE of the residual
to the stopped code, averaged over levels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from recbole_llada.sid.quantizers.kmeans import residual_kmeans, squared_distances
from recbole_llada.sid.quantizers.vae import (AutoencoderQuantizer, Quantized, VAEConfig, VQAutoencoder, lookup,
                                             sinkhorn_assign)


class ResidualVQVAE(VQAutoencoder):
    def __init__(self, in_dim: int, cfg: VAEConfig, generator: torch.Generator):
        super().__init__(in_dim, cfg.code_dim, cfg, generator)
        self.n_levels = cfg.sid_length  # one residual level per SID token: RQ-VAE's word for M

    def head_distances(self, latent: Tensor) -> Tensor:
        residual, distances = latent, []
        for level in range(self.n_levels):
            level_distances = squared_distances(residual, self.codebooks[level])
            distances.append(level_distances)
            residual = residual - self.codebooks[level][level_distances.argmin(dim=1)]
        return torch.stack(distances, dim=1)

    def quantize(self, latent: Tensor, sinkhorn: tuple[float, int] | None = None) -> Quantized:
        quantized = torch.zeros_like(latent)
        codes, codebook_loss, commitment_loss = [], 0.0, 0.0
        for level in range(self.n_levels):
            residual = latent - quantized.detach()
            with torch.no_grad():
                distances = squared_distances(residual, self.codebooks[level])
                last = level == self.n_levels - 1
                code = sinkhorn_assign(distances, *sinkhorn) if sinkhorn and last else distances.argmin(dim=1)
            vector = lookup(self.codebooks[level:level + 1], code.unsqueeze(1)).squeeze(1)
            codebook_loss = codebook_loss + F.mse_loss(vector, residual.detach())
            commitment_loss = commitment_loss + F.mse_loss(vector.detach(), residual)
            quantized = quantized + vector
            codes.append(code)
        return Quantized(quantized, torch.stack(codes, dim=1), codebook_loss / self.n_levels,
                         commitment_loss / self.n_levels)

    @torch.no_grad()
    def init_codebooks(self, latent: Tensor, kmeans_iters: int, seed: int) -> None:
        self.codebooks.copy_(residual_kmeans(latent, self.codebooks.shape[1], self.n_levels, kmeans_iters, seed))


class ResidualVQVAEQuantizer(AutoencoderQuantizer):
    """RQ-VAE with ``cfg.sid_length`` levels on a ``cfg.code_dim``-dim latent."""

    def build_model(self, in_dim: int, generator: torch.Generator) -> ResidualVQVAE:
        return ResidualVQVAE(in_dim, self.cfg, generator)
