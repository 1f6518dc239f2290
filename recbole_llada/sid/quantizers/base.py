"""The one interface every SID quantizer implements, so the tokenizer ablation is a config switch."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class FitReport:
    """What fitting did; the VAE quantizers fill the training fields, the k-means ones leave them at defaults."""

    seconds: float
    epochs: int = 0
    best_epoch: int = 0  # epoch of the kept checkpoint (by the checkpoint rule)
    best_collisions: int | None = None  # training-item collisions of the kept checkpoint
    final_loss: float | None = None
    check_epochs: list[int] = field(default_factory=list)  # the checked epochs (every check_every, and the last)
    loss_history: list[float] = field(default_factory=list)  # one value per check
    collision_history: list[int] = field(default_factory=list)  # one value per check


class Quantizer(ABC):
    """Maps embeddings ``[N, D]`` to ``M`` codes in ``0..K-1`` (one per head/level)."""

    sid_length: int  # M
    codebook_size: int

    @abstractmethod
    def fit(self, train_embeddings: Tensor) -> FitReport:
        """Learn the codebooks from training items only."""

    @abstractmethod
    def distances(self, embeddings: Tensor) -> Tensor:
        """``[N, M, K]`` squared distance of each item's head-m vector to each code of codebook m.

        Residual quantizers give level m's distances given the greedy codes of levels < m.
        """

    @abstractmethod
    def reconstruction_error(self, embeddings: Tensor) -> float:
        """Mean squared error between the embeddings and their reconstruction from the codes."""

    def encode(self, embeddings: Tensor) -> Tensor:
        """``LongTensor[N, M]``: the nearest code of every head."""
        return self.distances(embeddings).argmin(dim=-1)

    def rebalance_collisions(self, embeddings: Tensor, codes: Tensor) -> Tensor:
        """Optionally re-assign colliding items before the generic nearest-free-combination step; default: no-op."""
        return codes


def count_collisions(codes: Tensor) -> int:
    """Items that share their code row with an earlier item: ``N - number of distinct rows``."""
    return codes.shape[0] - torch.unique(codes, dim=0).shape[0]
