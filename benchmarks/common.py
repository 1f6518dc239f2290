"""Helpers shared by the benchmark scripts: synthetic stand-ins for RecBole data, timing, FLOP counts, result files.

The speed benchmark builds models without loading a dataset: RecBole's model constructors read only a config and
a few dataset attributes (``num(field)``, and for LLaDARec ``item_sid`` and the training targets), so a small stand-in
replaces the whole data pipeline while the config comes from the same YAML layers as a real run.
"""

from __future__ import annotations

import csv
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from recbole_llada.devices import default_device
from recbole_llada.training.quick_start import build_config
from recbole_llada.training.results import provenance_markdown
from recbole.config import Config
from recbole.utils import get_model

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
SYNTHETIC_DATASET = "synthetic"


# ----- devices and timing ----------------------------------------------------------------------------

def pick_device(name: str | None = None) -> torch.device:
    """``name`` if given, else CUDA when present, else CPU."""
    if name:
        return torch.device(name)
    return torch.device(default_device())


def split_config_files(text: str) -> list[str]:
    """The YAML files of a ``--config_files`` value: space separated, as RecBole's ``run_recbole`` takes them.
    Commas also separate, so that the commands recorded in older result files (and shell variables that are
    word-split, as in gpu_quality.sh) still run."""
    return [name for name in re.split(r"[\s,]+", text) if name]


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def hardware_slug(device: torch.device) -> str:
    """``nvidia-h200`` for a CUDA device, ``cpu`` otherwise: names the result files per machine."""
    if device.type == "cuda":
        return slugify(torch.cuda.get_device_name(device))
    return "cpu"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    seconds: list[float]  # wall time of each measured repeat
    peak_memory_gib: float | None  # peak CUDA memory allocated during the repeats; None on CPU

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def time_repeated(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> Timing:
    """Run ``fn`` ``warmup`` times unmeasured, then ``repeats`` times, each timed between device syncs.

    Wall time with a sync on both sides (not CUDA events alone) because decoding has host-side work and host
    syncs between kernels: what a user waits for is the wall time.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    for _ in range(warmup):
        fn()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return Timing(seconds=seconds, peak_memory_gib=peak)


def matmul_tflops(device: torch.device, dtype: torch.dtype, size: int, repeats: int = 5) -> float:
    """Measured dense matmul rate (TFLOP/s) of a [size, size] @ [size, size] product: the practical peak."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    timing = time_repeated(lambda: torch.matmul(a, b), device, warmup=2, repeats=repeats)
    return 2 * size**3 / timing.median / 1e12


# ----- analytic FLOPs ----------------------------------------------------------------------------------

def encoder_flops_per_token(d_model: int, n_layers: int, mlp_ratio: int, seq_len: int) -> float:
    """Matmul FLOPs of one token through LLaDARec's Transformer stack (multiply-add = 2 FLOPs).

    Per layer: q, k, v, out projections (4 d^2 weights) and the SwiGLU (3 d * mlp_ratio d weights), 2 FLOPs per
    weight; attention scores and the weighted sum over seq_len keys, 2 * 2 * seq_len * d. Embeddings and norms
    are not matmuls and are left out; the output head is counted by the caller, as it depends on which positions
    and columns a code path computes.
    """
    weights_per_layer = 4 * d_model * d_model + 3 * d_model * mlp_ratio * d_model
    return n_layers * (2 * weights_per_layer + 2 * 2 * seq_len * d_model)


# ----- synthetic RecBole stand-ins ----------------------------------------------------------------------

def random_unique_sids(n_items: int, sid_length: int, codebook_size: int, generator: torch.Generator) -> torch.Tensor:
    """LongTensor[n_items + 1, M]: distinct random SIDs for items 1..n_items; row 0 (padding) is -1 as in the
    SID pipeline."""
    if n_items > codebook_size**sid_length:
        raise ValueError(f"{n_items} items cannot have unique SIDs with {sid_length} digits of {codebook_size} codes")
    keys = torch.empty(0, dtype=torch.long)
    while keys.numel() < n_items:
        # Draw extra and drop repeats; a second round is rarely needed.
        draw = torch.randint(0, codebook_size**sid_length, (2 * n_items,), generator=generator)
        keys = torch.cat([keys, draw]).unique(sorted=False)
    keys = keys[torch.randperm(keys.numel(), generator=generator)[:n_items]]
    place_value = codebook_size ** torch.arange(sid_length)
    codes = (keys[:, None] // place_value) % codebook_size
    return torch.cat([torch.full((1, sid_length), -1, dtype=torch.long), codes])


class SyntheticDataset:
    """The attributes RecBole's sequential model constructors (and LLaDARec's) read from a dataset."""

    def __init__(self, item_sid: torch.Tensor, sid_codebook_size: int, train_targets: torch.Tensor,
                 item_field: str = "item_id"):
        self.item_sid = item_sid
        self.sid_codebook_size = sid_codebook_size
        self.inter_feat = {item_field: train_targets}
        self._n_items = item_sid.shape[0]

    def num(self, field: str) -> int:
        # Only the item count is read by sequential models; users do not exist in this stand-in.
        return self._n_items


def synthetic_dataset(n_items: int, sid_length: int, codebook_size: int, n_train_targets: int,
                      generator: torch.Generator) -> SyntheticDataset:
    item_sid = random_unique_sids(n_items, sid_length, codebook_size, generator)
    targets = torch.randint(1, n_items + 1, (n_train_targets,), generator=generator)
    return SyntheticDataset(item_sid, codebook_size, targets)


def synthetic_batch(model: torch.nn.Module, n_users: int, history_len: int, n_items: int,
                    generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    """A RecBole-style interaction of full-length random histories and random next items.

    Full length because the model computes every position anyway (padding is masked, not skipped), so the cost
    does not depend on the real length distribution.
    """
    histories = torch.randint(1, n_items + 1, (n_users, history_len), generator=generator)
    targets = torch.randint(1, n_items + 1, (n_users,), generator=generator)
    return {model.ITEM_SEQ: histories.to(device),
            model.ITEM_SEQ_LEN: torch.full((n_users,), history_len, dtype=torch.long, device=device),
            model.POS_ITEM_ID: targets.to(device)}


def build_synthetic_model(model_name: str, dataset: SyntheticDataset, overrides: Mapping[str, Any],
                          device: torch.device) -> tuple[torch.nn.Module, Config]:
    """``model_name`` with the shared protocol's config layers plus ``overrides``, on a synthetic dataset; also
    returns the config (the optimiser settings live there)."""
    config = build_config(model_name, SYNTHETIC_DATASET, overrides=overrides)
    return get_model(model_name)(config, dataset).to(device), config


# ----- result files --------------------------------------------------------------------------------------

def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def write_markdown(path: Path, title: str, sections: Sequence[tuple[str, str]], info: Mapping[str, str]) -> None:
    """``# title``, then ``## heading`` + body for each section, then the provenance list."""
    parts = [f"# {title}"]
    for heading, body in sections:
        parts.append(f"## {heading}\n\n{body}" if heading else body)
    parts.append(f"## Provenance\n\n{provenance_markdown(dict(info))}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(parts) + "\n")


def save_figure(fig: Any, path: Path) -> None:
    """Lay out, write (creating the folder) and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)


def format_number(value: float | None, digits: int = 3) -> str:
    """Significant-digit formatting for tables; '–' for a missing value."""
    if value is None:
        return "–"
    return f"{value:,.{digits}g}" if abs(value) < 10**digits else f"{value:,.0f}"
