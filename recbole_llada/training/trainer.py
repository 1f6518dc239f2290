"""LLaDARecTrainer: RecBole's Trainer with the paper's optimisation recipe and cheaper validation.

Differences from RecBole's ``Trainer`` (everything else — early stopping, evaluation, the checkpoint file — is
inherited unchanged):
- RecBole's ``learner`` and ``clip_grad_norm`` keys (LLaDARec.yaml: AdamW, gradient norm clipped at 1, as the
  official code trains), with a cosine learning-rate schedule and linear warm-up (``warmup_ratio`` of all steps),
  stepped per batch.
- bf16 autocast on CUDA (no loss scaling needed, unlike RecBole's fp16 ``enable_amp`` path), and AdamW's fused
  CUDA kernel there (one kernel per step where the default multi-tensor path launches several).
- Validation decodes with ``valid_scoring`` and ``valid_num_beams`` (the official code selects models with greedy
  decoding); the test uses ``scoring`` and ``num_beams``.
- ``train_time_budget`` (seconds, optional) ends training at the first epoch boundary past the budget (at
  least one epoch always trains), as early stopping would: the best checkpoint so far is kept and tested. For
  benchmarks with a wall-clock limit.
- The log line and TensorBoard of each epoch show the loss part by part next to the total (``item loss``,
  ``history loss`` and, with the item scorer, ``scorer loss``: the weighted parts in the model's ``last_losses``,
  which sum to its loss, summed over the epoch's batches).
- Checkpoints carry the learning-rate schedule and the random state, so ``--resume`` continues exactly
  (``recbole_llada.training.resume``).
- An item-scorer adapter (``item_scorer_backbone``) whose best validation stays below its backbone's own (the score
  in the backbone's checkpoint, same metric) ends with a warning: on that data the adapter's scoring does not help.
"""

from __future__ import annotations

import math
import time

import torch
from recbole.data.interaction import Interaction
from recbole.utils import set_color
from torch.nn.utils import clip_grad_norm_
from tqdm import tqdm

from recbole_llada.devices import autocast
from recbole_llada.training.resume import ResumableTrainer


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate multiplier: linear warm-up to 1, then cosine decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def to_device(interaction: Interaction, device: torch.device) -> Interaction:
    """``interaction.to(device)`` without its host sync: RecBole copies each field with a blocking copy, which
    waits for all queued GPU work, so the next batch's kernels cannot be queued while this one computes (costly
    at small per-GPU batches, where launching kernels takes about as long as running them). A non-blocking copy
    from pageable memory is safe: CUDA stages the source before the call returns."""
    return Interaction({name: tensor.to(device, non_blocking=True)
                        for name, tensor in interaction.interaction.items()})


class LLaDARecTrainer(ResumableTrainer):
    def __init__(self, config, model):
        super().__init__(config, model)
        self.warmup_ratio = config["warmup_ratio"]
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self.train_time_budget = config["train_time_budget"]
        self._first_epoch_start: float | None = None
        self.budget_stop_epoch: int | None = None  # epochs trained when the budget ended training
        self.epoch_loss_parts: tuple[float, ...] | None = None  # the model's loss parts, summed over the last epoch
        # Wall seconds of every epoch trained and every validation run (benchmarks compare runs by their medians).
        self.epoch_seconds: dict[str, list[float]] = {"training": [], "evaluating": []}
        self._reduce_hook_input: torch.Tensor | None = None  # set_reduce_hook's dummy input, made once

    def set_reduce_hook(self):
        """RecBole's (one DistributedDataParallel forward of an identity, so that the backward all-reduces the
        gradients), with its dummy input made on the device once instead of copied there, a host sync, every step."""
        if self._reduce_hook_input is None:
            self._reduce_hook_input = torch.zeros(1, dtype=torch.long, device=self.device)
        forward = self.model.forward
        self.model.forward = lambda x: x
        self.distributed_model(self._reduce_hook_input)
        self.model.forward = forward

    @property
    def _budget_spent(self) -> bool:
        return self.budget_stop_epoch is not None

    def _build_optimizer(self, **kwargs):
        if self.learner.lower() == "adamw" and self.device.type == "cuda":
            # RecBole's AdamW, with its fused CUDA kernel (RecBole does not ask for it).
            params = kwargs.pop("params", self.model.parameters())
            return torch.optim.AdamW(params, lr=self.learning_rate, weight_decay=self.weight_decay, fused=True)
        return super()._build_optimizer(**kwargs)

    def _ensure_scheduler(self, steps_per_epoch: int) -> None:
        if self.scheduler is not None:
            return
        total_steps = self.epochs * steps_per_epoch
        warmup_steps = max(1, int(self.warmup_ratio * total_steps))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: warmup_cosine(step, total_steps, warmup_steps))

    def _budget_exhausted(self) -> bool:
        exhausted = bool(self.train_time_budget) and (
            time.perf_counter() - self._first_epoch_start > self.train_time_budget)
        if not self.config["single_spec"]:
            # Rank 0's clock decides for all: a rank that stopped alone would leave the others waiting forever in
            # their next gradient all-reduce.
            flag = torch.tensor([float(exhausted)], device=self.device)
            torch.distributed.broadcast(flag, src=0)
            exhausted = bool(flag.item())
        return exhausted

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self.epoch_loss_parts = None
        if self._first_epoch_start is None:
            self._first_epoch_start = time.perf_counter()
        elif self._budget_spent:
            return 0.0
        elif self._budget_exhausted():
            self.budget_stop_epoch = epoch_idx
            self.logger.info(f"train_time_budget of {self.train_time_budget} s spent: stopping after "
                             f"{epoch_idx} epochs")
            return 0.0
        start = time.perf_counter()
        self.model.train()
        self._ensure_scheduler(len(train_data))
        loss_func = loss_func or self.model.calculate_loss
        if not self.config["single_spec"] and train_data.shuffle:
            train_data.sampler.set_epoch(epoch_idx)
        batches = tqdm(train_data, total=len(train_data), ncols=100,
                       desc=set_color(f"Train {epoch_idx:>5}", "pink")) if show_progress else train_data
        total_loss = torch.zeros((), device=self.device)
        loss_parts = None
        for interaction in batches:
            interaction = to_device(interaction, self.device)
            self.optimizer.zero_grad(set_to_none=True)
            sync_loss = 0
            if not self.config["single_spec"]:
                self.set_reduce_hook()
                sync_loss = self.sync_grad_loss()
            with autocast(self.device, self.config["precision"]):
                loss = loss_func(interaction)
            (loss + sync_loss).backward()
            if self.clip_grad_norm:
                clip_grad_norm_(self.model.parameters(), **self.clip_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            total_loss += loss.detach()
            parts = torch.stack(self.model.last_losses)
            loss_parts = parts if loss_parts is None else loss_parts + parts
        # One host sync per epoch instead of one per batch.
        total_loss = total_loss.item()
        self.epoch_loss_parts = tuple(loss_parts.tolist())
        self._check_nan(torch.tensor(total_loss))
        self.epoch_seconds["training"].append(time.perf_counter() - start)
        return total_loss

    def _generate_train_loss_output(self, epoch_idx, s_time, e_time, losses):
        output = super()._generate_train_loss_output(epoch_idx, s_time, e_time, losses)
        if self.epoch_loss_parts is None:
            return output
        parts = ", ".join(f"{name} loss: {value:.4f}"
                          for name, value in zip(self.model.loss_part_names, self.epoch_loss_parts))
        return output[:-1] + f", {parts}]"

    def _add_train_loss_to_tensorboard(self, epoch_idx, losses, tag="Loss/Train"):
        super()._add_train_loss_to_tensorboard(epoch_idx, losses, tag)
        if self.epoch_loss_parts is not None:
            for name, value in zip(self.model.loss_part_names, self.epoch_loss_parts):
                self.tensorboard.add_scalar(f"{tag}/{name}", value, epoch_idx)

    def _training_state(self) -> dict:
        state = super()._training_state()
        state["scheduler"] = self.scheduler.state_dict() if self.scheduler is not None else None
        return state

    def _restore_training_state(self, state: dict, train_data) -> None:
        super()._restore_training_state(state, train_data)
        if state.get("scheduler") is not None:
            self._ensure_scheduler(len(train_data))
            self.scheduler.load_state_dict(state["scheduler"])
            # Each batch steps the optimizer before the schedule: start from the schedule's current rate.
            for group, learning_rate in zip(self.optimizer.param_groups, self.scheduler.get_last_lr()):
                group["lr"] = learning_rate

    def fit(self, train_data, valid_data=None, *args, **kwargs):
        result = super().fit(train_data, valid_data, *args, **kwargs)
        if valid_data is not None:
            self.warn_if_the_adapter_trails_its_backbone()
        return result

    def warn_if_the_adapter_trails_its_backbone(self) -> None:
        """The adapter is trained and selected on validation, but nothing there compares it with the frozen
        backbone's own scoring; the backbone's checkpoint held that score (the model keeps it from loading). (ml-100k
        at the paper's size: the adapter's best validation stayed below its backbone's, its test NDCG@10 23% lower.)"""
        backbone = self.model.backbone_validation
        if backbone is None or backbone.metric != self.valid_metric:
            return
        trails = (self.best_valid_score < backbone.best_score if self.valid_metric_bigger
                  else self.best_valid_score > backbone.best_score)
        if trails:
            self.logger.warning(
                f"item-scorer adapter: best validation {self.valid_metric} {self.best_valid_score:.4f} (valid_scoring: "
                f"{self.config['valid_scoring']}) is below its backbone's {backbone.best_score:.4f} (valid_scoring: "
                f"{backbone.scoring}). On this data the adapter does not help: test the backbone with its own scoring "
                "(e.g. scoring: beam) instead.")

    def _valid_epoch(self, valid_data, show_progress=False):
        if self._budget_spent:
            # RecBole's early_stopping counts this as one more epoch without improvement and stops once that
            # count exceeds stopping_step; lowering the threshold to the current count ends training now and
            # keeps RecBole's "best eval result in epoch" message right.
            self.stopping_step = self.cur_step
            return -math.inf, {}
        start = time.perf_counter()
        with self.model.decoding(scoring=self.config["valid_scoring"], num_beams=self.config["valid_num_beams"]):
            result = super()._valid_epoch(valid_data, show_progress=show_progress)
        self.epoch_seconds["evaluating"].append(time.perf_counter() - start)
        return result
