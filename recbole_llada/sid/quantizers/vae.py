"""What the two VQ-VAE quantizers share: MLP autoencoder, Sinkhorn balancing, training loop, checkpoint choice.

Training follows the official MultiHeadVQVAE tokenizer: AdamW, gradient norm clipped at 1, loss = reconstruction
MSE + quantization loss, the last head assigned by Sinkhorn balancing during training, and one checkpoint kept
among those checked every ``check_every`` epochs: by default (``checkpoint_rule: collision``, as the official
config) the first with the fewest collisions among training items, or (``loss``, the official alternative) the one
with the lowest training loss. On CUDA each optimizer step is one replay of a captured CUDA graph instead of ~150
kernel launches from Python, so 10,000 epochs over 25k items take under two minutes on an H200.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from recbole_llada.sid.quantizers.base import FitReport, Quantizer, count_collisions

logger = logging.getLogger(__name__)

CHECKPOINT_RULES = ("collision", "loss")
_WARMUP_STEPS = 3  # eager steps on a side stream before capturing a CUDA graph, as torch.cuda.graph requires
_EVAL_ROWS = 65536


@dataclass
class VAEConfig:
    """Hyperparameters of the MH-VQVAE and RQ-VAE quantizers: the ``sid_*`` config keys of the same names, without
    defaults of their own (``sid.build.quantizer_config`` fills them from the config; the keys' defaults and
    meanings are in properties/model/LLaDARec.yaml)."""

    sid_length: int
    codebook_size: int
    code_dim: int
    hidden_sizes: tuple[int, ...]
    epochs: int
    lr: float
    weight_decay: float
    batch_size: int
    beta: float
    kmeans_init: bool
    kmeans_iters: int
    sinkhorn_epsilon: float
    sinkhorn_iters: int
    sinkhorn_rounds: int
    check_every: int
    checkpoint_rule: str
    seed: int
    device: str
    # Not config keys: the official tokenizer's gradient clipping, and two CUDA speed switches.
    max_grad_norm: float = 1.0
    cuda_graphs: bool = True
    tf32: bool = True  # CUDA only: TF32 matmuls while training; the final codes are computed in full float32

    def __post_init__(self) -> None:
        positive = ("sid_length", "codebook_size", "code_dim", "epochs", "batch_size", "check_every")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.checkpoint_rule not in CHECKPOINT_RULES:
            raise ValueError(f"checkpoint_rule must be one of {CHECKPOINT_RULES}, got {self.checkpoint_rule!r}")
        self.hidden_sizes = tuple(int(size) for size in self.hidden_sizes)


def mlp(sizes: list[int], generator: torch.Generator) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last), Xavier-normal weights and zero biases."""
    layers: list[nn.Module] = []
    for index, (size_in, size_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(size_in, size_out)
        nn.init.xavier_normal_(linear.weight, generator=generator)
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if index < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@torch.no_grad()
def sinkhorn_assign(distances: Tensor, epsilon: float, iters: int) -> Tensor:
    """Balanced assignment of ``B`` rows to ``K`` codes: row-wise argmax of the Sinkhorn transport plan.

    ``distances`` is ``[..., B, K]``; leading dims are independent problems. Each problem's distances are first
    rescaled to [-1, 1] as in the official code, so ``epsilon`` has a fixed meaning. Same iterations as the
    official code (normalise rows, then columns; float64), written with scaling vectors: the plan is
    ``diag(row) @ kernel @ diag(col)``, so an iteration is two matrix-vector products and two reciprocals,
    which matters inside the 10,000-epoch training loop. Each row of the kernel starts at its maximum, exp(0) = 1,
    so nothing overflows; the rescaling bounds the smallest entry at exp(-2 / epsilon).
    """
    distances = distances.double()
    low = distances.amin(dim=(-2, -1), keepdim=True)
    high = distances.amax(dim=(-2, -1), keepdim=True)
    middle = (high + low) / 2
    log_kernel = -(distances - middle) / ((high - middle + 1e-5) * epsilon)
    kernel = torch.exp(log_kernel - log_kernel.amax(dim=-1, keepdim=True))
    col = torch.ones_like(kernel[..., :1, :]).transpose(-2, -1)  # [..., K, 1]
    for _ in range(iters):
        row = torch.reciprocal(kernel @ col)  # [..., B, 1]: each row carries equal mass
        col = torch.reciprocal(kernel.transpose(-2, -1) @ row)  # [..., K, 1]: each code receives equal mass
    return (kernel * col.transpose(-2, -1)).argmax(dim=-1)  # a row's scale cannot change its argmax


def lookup(codebooks: Tensor, codes: Tensor) -> Tensor:
    """``codebooks [M, K, d]``, ``codes [B, M]`` -> code vectors ``[B, M, d]``.

    A one-hot batched matmul rather than indexing: its backward is one more matmul instead of the sort-based
    scatter-add behind an index backward on CUDA, which costs several kernels in every training step.
    """
    one_hot = torch.zeros(codes.shape[1], codes.shape[0], codebooks.shape[1], device=codes.device,
                          dtype=codebooks.dtype).scatter_(2, codes.T.unsqueeze(2), 1.0)  # [M, B, K]
    return torch.bmm(one_hot, codebooks).transpose(0, 1)


@dataclass
class Quantized:
    vectors: Tensor  # [B, latent_dim] quantized latent (no straight-through yet)
    codes: Tensor  # [B, M]
    codebook_loss: Tensor
    commitment_loss: Tensor


class VQAutoencoder(nn.Module):
    """MLP encoder -> quantizer -> mirror MLP decoder; subclasses define the latent size and the quantizer."""

    def __init__(self, in_dim: int, latent_dim: int, cfg: VAEConfig, generator: torch.Generator):
        super().__init__()
        sizes = [in_dim, *cfg.hidden_sizes, latent_dim]
        self.encoder = mlp(sizes, generator)
        self.decoder = mlp(sizes[::-1], generator)
        self.codebooks = nn.Parameter(torch.empty(cfg.sid_length, cfg.codebook_size, cfg.code_dim))
        bound = 1.0 / cfg.codebook_size
        nn.init.uniform_(self.codebooks, -bound, bound, generator=generator)

    @abstractmethod
    def quantize(self, latent: Tensor, sinkhorn: tuple[float, int] | None = None) -> Quantized:
        """Quantize ``[B, latent_dim]``; ``sinkhorn=(epsilon, iters)`` balances the last head's assignment."""

    @abstractmethod
    def head_distances(self, latent: Tensor) -> Tensor:
        """``[B, M, K]`` squared distances per head (greedy residuals for residual quantization)."""

    @abstractmethod
    def init_codebooks(self, latent: Tensor, kmeans_iters: int, seed: int) -> None:
        """Set the codebooks by k-means on the latents of the training items."""

    def loss(self, x: Tensor, beta: float, sinkhorn: tuple[float, int] | None) -> Tensor:
        latent = self.encoder(x)
        quantized = self.quantize(latent, sinkhorn)
        straight_through = latent + (quantized.vectors - latent).detach()
        reconstruction = F.mse_loss(self.decoder(straight_through), x)
        return reconstruction + quantized.codebook_loss + beta * quantized.commitment_loss

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decoder(self.quantize(self.encoder(x)).vectors)


class _TrainStep:
    """One optimizer step on a batch; on CUDA each batch size gets its own captured graph after a short warm-up."""

    def __init__(self, model: VQAutoencoder, optimizer: torch.optim.Optimizer, cfg: VAEConfig,
                 sinkhorn: tuple[float, int] | None, use_graphs: bool):
        self.model, self.optimizer, self.cfg, self.sinkhorn = model, optimizer, cfg, sinkhorn
        self.use_graphs = use_graphs
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, Tensor, Tensor]] = {}
        self.eager_calls: dict[int, int] = {}

    def _eager(self, batch: Tensor) -> Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.model.loss(batch, self.cfg.beta, self.sinkhorn)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm, foreach=True)
        self.optimizer.step()
        return loss.detach()

    def __call__(self, data: Tensor, rows: Tensor) -> Tensor:
        """Step on ``data[rows]``; returns the loss (a device tensor, no synchronisation)."""
        size = rows.shape[0]
        if not self.use_graphs:
            return self._eager(data.index_select(0, rows))
        if size in self.graphs:
            graph, static_batch, static_loss = self.graphs[size]
            torch.index_select(data, 0, rows, out=static_batch)
            graph.replay()
            return static_loss
        calls = self.eager_calls.get(size, 0)
        if calls < _WARMUP_STEPS:
            self.eager_calls[size] = calls + 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                loss = self._eager(data.index_select(0, rows))
            torch.cuda.current_stream().wait_stream(side)
            return loss
        static_batch = data.index_select(0, rows)
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            static_loss = self._eager(static_batch)
        self.graphs[size] = (graph, static_batch, static_loss)
        graph.replay()  # capturing records the step without running it
        return static_loss


@torch.no_grad()
def _codes(model: VQAutoencoder, data: Tensor) -> Tensor:
    return torch.cat([model.quantize(model.encoder(chunk)).codes for chunk in data.split(_EVAL_ROWS)])


@contextlib.contextmanager
def _tf32_matmuls(enabled: bool) -> Iterator[None]:
    """Let CUDA matmuls use TF32 tensor cores for the duration (about 20% off each H200 step); restores after."""
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled or previous
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


def train_autoencoder(model: VQAutoencoder, data: Tensor, cfg: VAEConfig, show_progress: bool = True) -> FitReport:
    """Train on ``data`` (already on the model's device) and load the checkpoint ``cfg.checkpoint_rule`` picks."""
    with _tf32_matmuls(cfg.tf32 and data.device.type == "cuda"):
        return _train(model, data, cfg, show_progress)


def _train(model: VQAutoencoder, data: Tensor, cfg: VAEConfig, show_progress: bool) -> FitReport:
    start = time.perf_counter()
    device = data.device
    use_graphs = cfg.cuda_graphs and device.type == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  fused=device.type == "cuda", capturable=use_graphs)
    sinkhorn = (cfg.sinkhorn_epsilon, cfg.sinkhorn_iters) if cfg.sinkhorn_epsilon > 0 else None
    step = _TrainStep(model, optimizer, cfg, sinkhorn, use_graphs)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    n_items = data.shape[0]
    all_rows = torch.arange(n_items, device=device)

    best_score, best_collisions, best_epoch, best_state = math.inf, 0, 0, None
    check_epochs: list[int] = []
    loss_history: list[float] = []
    collision_history: list[int] = []
    epoch_loss = torch.zeros((), device=device)
    progress = tqdm(range(1, cfg.epochs + 1), desc="SID tokenizer", disable=not show_progress, mininterval=2.0)
    for epoch in progress:
        checking = epoch % cfg.check_every == 0 or epoch == cfg.epochs
        model.train()
        # With one batch per epoch the order of items cannot matter, so skip the shuffle.
        order = all_rows if n_items <= cfg.batch_size else torch.randperm(n_items, generator=generator, device=device)
        if checking:
            epoch_loss.zero_()
        batches = order.split(cfg.batch_size)
        for rows in batches:
            loss = step(data, rows)
            if checking:
                epoch_loss += loss
        if not checking:
            continue
        mean_loss = float(epoch_loss) / len(batches)
        if not math.isfinite(mean_loss):
            raise ValueError(f"SID tokenizer training diverged at epoch {epoch} (loss {mean_loss})")
        model.eval()
        collisions = count_collisions(_codes(model, data))
        check_epochs.append(epoch)
        loss_history.append(mean_loss)
        collision_history.append(collisions)
        progress.set_postfix(loss=f"{mean_loss:.4f}", collisions=collisions)
        score = collisions if cfg.checkpoint_rule == "collision" else mean_loss
        if score < best_score:  # ties keep the earlier checkpoint, as the official trainer does
            best_score, best_collisions, best_epoch = score, collisions, epoch
            best_state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    logger.info("SID tokenizer: kept epoch %d of %d (rule: %s) with %d collisions among %d training items",
                best_epoch, cfg.epochs, cfg.checkpoint_rule, best_collisions, n_items)
    return FitReport(seconds=time.perf_counter() - start, epochs=cfg.epochs, best_epoch=best_epoch,
                     best_collisions=int(best_collisions), final_loss=loss_history[-1], check_epochs=check_epochs,
                     loss_history=loss_history, collision_history=collision_history)


class AutoencoderQuantizer(Quantizer):
    """Quantizer backed by a ``VQAutoencoder``; inputs may live anywhere, results come back on the CPU."""

    def __init__(self, cfg: VAEConfig, show_progress: bool = True):
        self.cfg = cfg
        self.sid_length = cfg.sid_length
        self.codebook_size = cfg.codebook_size
        self.show_progress = show_progress
        self.model: VQAutoencoder | None = None

    @abstractmethod
    def build_model(self, in_dim: int, generator: torch.Generator) -> VQAutoencoder:
        """The autoencoder for inputs of ``in_dim`` features."""

    def fit(self, train_embeddings: Tensor) -> FitReport:
        device = torch.device(self.cfg.device)
        generator = torch.Generator().manual_seed(self.cfg.seed)
        self.model = self.build_model(train_embeddings.shape[1], generator).to(device)
        data = train_embeddings.detach().float().to(device)
        if self.cfg.kmeans_init:
            with torch.no_grad():
                latent = torch.cat([self.model.encoder(chunk) for chunk in data.split(_EVAL_ROWS)])
            self.model.init_codebooks(latent, self.cfg.kmeans_iters, self.cfg.seed)
        return train_autoencoder(self.model, data, self.cfg, self.show_progress)

    def _fitted(self) -> VQAutoencoder:
        if self.model is None:
            raise ValueError("quantizer is not fitted yet: call fit() first")
        return self.model

    @torch.no_grad()
    def distances(self, embeddings: Tensor) -> Tensor:
        model = self._fitted()
        device = next(model.parameters()).device
        chunks = embeddings.detach().float().split(_EVAL_ROWS)
        return torch.cat([model.head_distances(model.encoder(chunk.to(device))).cpu() for chunk in chunks])

    @torch.no_grad()
    def encode(self, embeddings: Tensor) -> Tensor:
        model = self._fitted()
        device = next(model.parameters()).device
        return _codes(model, embeddings.detach().float().to(device)).cpu()

    @torch.no_grad()
    def reconstruction_error(self, embeddings: Tensor) -> float:
        model = self._fitted()
        device = next(model.parameters()).device
        total = 0.0
        for chunk in embeddings.detach().float().split(_EVAL_ROWS):
            chunk = chunk.to(device)
            total += float((model.reconstruct(chunk) - chunk).pow(2).sum())
        return total / embeddings.numel()

    @torch.no_grad()
    def rebalance_collisions(self, embeddings: Tensor, codes: Tensor) -> Tensor:
        """The official collision pass: re-assign each colliding group's last head by Sinkhorn over the group.

        Groups whose members all have the same distances (identical embeddings) are skipped: Sinkhorn cannot
        tell them apart; ``make_unique`` handles them. Groups of equal size are solved as one batch. Repeats
        while some group changes, at most ``sinkhorn_rounds`` times.
        """
        if self.cfg.sinkhorn_epsilon <= 0:
            return codes
        last_head = self.distances(embeddings)[:, -1].double()  # [N, K]; other heads never change here
        codes = codes.clone()
        for _ in range(self.cfg.sinkhorn_rounds):
            changed = False
            groups_by_size: dict[int, list[np.ndarray]] = {}
            for group in _colliding_groups(codes):
                groups_by_size.setdefault(len(group), []).append(group)
            for size in sorted(groups_by_size):
                members = torch.from_numpy(np.stack(groups_by_size[size]))  # [G, size]
                blocks = last_head[members]  # [G, size, K]
                separable = (blocks != blocks[:, :1]).any(dim=2).any(dim=1)
                members, blocks = members[separable], blocks[separable]
                if len(members) == 0:
                    continue
                new_codes = sinkhorn_assign(blocks, self.cfg.sinkhorn_epsilon, self.cfg.sinkhorn_iters)
                if not torch.equal(new_codes, codes[members, -1]):
                    codes[members.reshape(-1), -1] = new_codes.reshape(-1)
                    changed = True
            if not changed:
                break
        return codes


def _colliding_groups(codes: Tensor) -> list[np.ndarray]:
    """Row indices of each set of rows sharing one code row (sets of two or more), in a deterministic order."""
    _, inverse, counts = np.unique(codes.numpy(), axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(counts)[:-1]
    return [group for group in np.split(order, bounds) if len(group) > 1]
