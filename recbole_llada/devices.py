"""Device choice and mixed precision, shared by the SID pipeline, the model, the trainer and the benchmarks."""

from __future__ import annotations

import contextlib

import torch


def default_device() -> str:
    """CUDA when present, else CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def bf16_autocast(device: torch.device):
    """bf16 autocast on CUDA (no loss scaling needed, unlike fp16), full precision elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
