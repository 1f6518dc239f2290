"""Device choice and mixed precision, shared by the SID pipeline, the model, the trainer and the benchmarks."""

from __future__ import annotations

import contextlib

import torch


def default_device() -> str:
    """CUDA when present, else CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


PRECISIONS = ("bf16", "fp32")


def autocast(device: torch.device, precision: str):
    """LLaDARec's ``precision`` on ``device``: bf16 autocast on CUDA (no loss scaling needed, unlike fp16); float32
    with ``fp32`` (as the official code runs) and on CPU."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if device.type == "cuda" and precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
