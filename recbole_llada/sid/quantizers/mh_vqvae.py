"""Multi-Head VQ-VAE, the paper's tokenizer: M parallel codebooks, one per slice of the latent.

The encoder maps an embedding to ``M * d`` dims (paper: 128 -> 512 -> 256 -> 4 * 32), the latent is split into M
sub-vectors and each is replaced by the nearest of its own K codes, so all M codes carry equal weight ("parallel
semantic IDs"). Codebooks start from k-means on the training latents; gradients reach the encoder through the
straight-through estimator; loss = MSE reconstruction + mean over heads of (codebook MSE + beta * commitment MSE).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from recbole_llada.sid.quantizers.kmeans import kmeans
from recbole_llada.sid.quantizers.vae import (AutoencoderQuantizer, Quantized, VAEConfig, VQAutoencoder, lookup,
                                             sinkhorn_assign)


class MultiHeadVQVAE(VQAutoencoder):
    def __init__(self, in_dim: int, cfg: VAEConfig, generator: torch.Generator):
        super().__init__(in_dim, cfg.sid_length * cfg.code_dim, cfg, generator)
        # One head per SID token: the multi-head VQ-VAE's own word for M.
        self.n_heads, self.code_dim = cfg.sid_length, cfg.code_dim

    def _heads(self, latent: Tensor) -> Tensor:
        return latent.view(latent.shape[0], self.n_heads, self.code_dim)

    def _scores(self, latent: Tensor) -> Tensor:
        """``||c||^2 - 2 h.c`` per head ``[M, B, K]``: the squared distance less ``||h||^2``, same argmin."""
        heads = self._heads(latent).transpose(0, 1)  # [M, B, d]
        code_norms = self.codebooks.pow(2).sum(-1).unsqueeze(1)  # [M, 1, K]
        return torch.baddbmm(code_norms, heads, self.codebooks.transpose(1, 2), alpha=-2)

    def head_distances(self, latent: Tensor) -> Tensor:
        head_norms = self._heads(latent).pow(2).sum(-1).T.unsqueeze(-1)  # [M, B, 1]
        return (self._scores(latent) + head_norms).clamp_min(0).transpose(0, 1)

    def quantize(self, latent: Tensor, sinkhorn: tuple[float, int] | None = None) -> Quantized:
        with torch.no_grad():
            scores = self._scores(latent)
            codes = scores.argmin(dim=-1).T  # [B, M]
            if sinkhorn is not None:
                # Sinkhorn rescales the whole matrix by its range, so it needs the true distances.
                last_distances = scores[-1] + self._heads(latent)[:, -1].pow(2).sum(-1, keepdim=True)
                last = sinkhorn_assign(last_distances, *sinkhorn)
                codes = torch.cat([codes[:, :-1], last.unsqueeze(1)], dim=1)
        heads = self._heads(latent)
        vectors = lookup(self.codebooks, codes)  # [B, M, d]
        # Equal-sized heads: the MSE over all heads equals the mean over heads of each head's MSE.
        codebook_loss = F.mse_loss(vectors, heads.detach())
        commitment_loss = F.mse_loss(vectors.detach(), heads)
        return Quantized(vectors.reshape(latent.shape[0], -1), codes, codebook_loss, commitment_loss)

    @torch.no_grad()
    def init_codebooks(self, latent: Tensor, kmeans_iters: int, seed: int) -> None:
        heads = self._heads(latent)
        for head in range(self.n_heads):
            self.codebooks[head] = kmeans(heads[:, head], self.codebooks.shape[1], kmeans_iters, seed + head).centers


class MultiHeadVQVAEQuantizer(AutoencoderQuantizer):
    """The paper's parallel-SID tokenizer (see module docstring); ``cfg.code_dim`` is the per-head size d."""

    def build_model(self, in_dim: int, generator: torch.Generator) -> MultiHeadVQVAE:
        return MultiHeadVQVAE(in_dim, self.cfg, generator)
