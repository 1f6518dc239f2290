"""Where the time of LLaDARec goes: torch.profiler over one decoding call and one training step.

The same synthetic inputs and model sizes as speed.py (Scientific: 25,848 items, M = 4, K = 256, histories of 20
items, d = 256, 4 layers): one ``full_sort_predict`` call (2,048 users, 256 per decoding forward, T = 4, B = 50) and
one training step as LLaDARecTrainer runs it (batch 1024: calculate_loss under bf16 autocast on CUDA, backward,
gradient clipping, AdamW fused on CUDA), each profiled once after a warm-up call. Writes
``benchmarks/results/profile_<hardware>.md`` (``-small`` with ``--small``, ``-<label>`` with ``--label``) with, per
task:

- a summary: profiled wall time, device busy time (sum of kernel times), kernel launches, host syncs
  (``cudaStreamSynchronize`` / ``cudaDeviceSynchronize``, device-to-host copies) and tensor-to-Python reads
  (``aten::_local_scalar_dense``: ``.item()``, ``bool(tensor)``; counted on CPU too);
- regions: the model call (``LLaDARec.code_log_probs``: network + per-head log-softmax), the constraint index
  (``SIDIndex.allowed_codes`` / ``lookup``) and the rest of the beam search for decoding; forward + loss,
  backward, clipping and the optimizer for training;
- kernel categories (attention, matmul, softmax / top-k, constraint search, copies / indexing, other);
- the top kernels by self device time (self CPU time on a CPU).

    python benchmarks/speed_profile.py                  # full sizes, on the GPU
    python benchmarks/speed_profile.py --small          # shrunk sizes, a CPU check of the script
    python benchmarks/speed_profile.py --compile --label=compiled
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch.autograd import DeviceType
from torch.nn.utils import clip_grad_norm_
from torch.profiler import ProfilerActivity, record_function

from benchmarks import speed
from benchmarks.common import (RESULTS_DIR, build_synthetic_model, format_number, hardware_slug, pick_device,
                               synchronize, synthetic_batch, synthetic_dataset, write_markdown)
from recbole_llada.decoding.constraints import SIDIndex
from recbole_llada.devices import autocast
from recbole_llada.model.llada_rec import LLaDARec
from recbole_llada.training.results import markdown_table, provenance

MODEL_REGION = "model: LLaDARec.code_log_probs"
CONSTRAINT_REGION = "constraints: SIDIndex"
# Kernel / operator name patterns per category, first match wins (searched in lower case).
CATEGORIES = (
    # torch.compile: inductor's fused kernels and the host-side call of a compiled graph (whose name is a hash).
    ("compiled (inductor / triton)", r"compiledfxgraph|compiled region|triton"),
    ("attention", r"attention|fmha|flash|sdpa"),
    ("matmul", r"gemm|matmul|aten::mm$|aten::addmm|aten::bmm|cutlass|nvjet|xmma|wgmma|aten::linear|einsum"),
    ("constraint search", r"searchsorted|bucketize"),
    ("softmax / top-k / loss", r"softmax|topk|sort|radix|nll_loss|cross_entropy"),
    ("optimizer", r"adam|optimizer|multi_tensor|foreach"),
    ("copies / indexing", r"copy|memcpy|memset|cat|index|gather|scatter|clone|repeat|pad|where|masked_fill|nonzero"),
    ("elementwise / reductions", r"elementwise|reduce_kernel|reduction|norm|aten::(mul|add|sub|div|pow|sqrt|rsqrt|"
                                 r"silu|sum|mean|exp|neg|clamp|bernoulli|dropout|fill|arange|eq|ne|lt|le|gt|ge|any|"
                                 r"all|amax|max|min|bitwise_\w+|logical_\w+|floor_divide|remainder)_?$"),
    ("other", r""),
)
LAUNCH_EVENTS = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx", "cudaGraphLaunch")
SYNC_EVENTS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
TOP_KERNELS = 25


@dataclass
class TaskProfile:
    name: str
    wall_ms: float
    events: list  # torch.profiler key averages (FunctionEventAvg)
    regions: list[str]  # annotation names, outermost first


def _annotated(label: str, function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with record_function(label):
            return function(*args, **kwargs)
    return wrapper


@contextlib.contextmanager
def decoding_regions():
    """Label the model call and the constraint index in the profile, without touching the library code."""
    with mock.patch.object(LLaDARec, "code_log_probs", _annotated(MODEL_REGION, LLaDARec.code_log_probs)), \
            mock.patch.object(SIDIndex, "allowed_codes", _annotated(CONSTRAINT_REGION, SIDIndex.allowed_codes)), \
            mock.patch.object(SIDIndex, "lookup", _annotated(CONSTRAINT_REGION, SIDIndex.lookup)):
        yield


def profile_once(name: str, fn, regions: list[str], device: torch.device) -> TaskProfile:
    """Profile one call of fn (already warmed up); its whole extent is the region `name`."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    synchronize(device)
    with torch.profiler.profile(activities=activities) as profiler:
        start = time.perf_counter()
        with record_function(name):
            fn()
        synchronize(device)
        wall_ms = 1e3 * (time.perf_counter() - start)
    return TaskProfile(name=name, wall_ms=wall_ms, events=list(profiler.key_averages()), regions=[name, *regions])


def profile_llada(setup: speed.SpeedSetup, device: torch.device, dense_mask: bool,
                  seed: int = 2024) -> list[TaskProfile]:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    dataset = synthetic_dataset(setup.n_items, setup.sid_length, setup.codebook_size, setup.train_sequences, generator)
    model, config = build_synthetic_model("LLaDARec", dataset, speed.llada_overrides(setup), device)
    model.dense_attention_mask = dense_mask

    optimizer = torch.optim.AdamW(model.parameters(), lr=config["learning_rate"],
                                  weight_decay=config["weight_decay"], fused=device.type == "cuda")
    batch = synthetic_batch(model, setup.train_batch_size, setup.history_len, setup.n_items, generator, device)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with record_function("train: forward + loss"), autocast(device, config["precision"]):
            loss = model.calculate_loss(batch)
        with record_function("train: backward"):
            loss.backward()
        with record_function("train: clip_grad_norm_"):
            clip_grad_norm_(model.parameters(), **config["clip_grad_norm"])
        with record_function("train: optimizer"):
            optimizer.step()

    model.train()
    train_step()  # warm-up (and compilation)
    train = profile_once("train step", train_step,
                         ["train: forward + loss", "train: backward", "train: clip_grad_norm_", "train: optimizer"],
                         device)
    del optimizer, batch

    model.eval()
    users = synthetic_batch(model, setup.decode_users, setup.history_len, setup.n_items, generator, device)
    settings = dict(gen_steps=setup.reference_gen_steps, num_beams=setup.reference_beams)

    def decode() -> None:
        with torch.no_grad(), model.decoding(**settings):
            model.full_sort_predict(users)

    decode()  # warm-up (and compilation)
    with decoding_regions():
        decoding = profile_once(f"decode: full_sort_predict T={settings['gen_steps']} B={settings['num_beams']}",
                                decode, [MODEL_REGION, CONSTRAINT_REGION], device)
    return [decoding, train]


# ----- summaries -----------------------------------------------------------------------------------------------

def _is_device_event(event) -> bool:
    return event.device_type == DeviceType.CUDA


def _self_us(event, on_device: bool) -> float:
    return event.self_device_time_total if on_device else event.self_cpu_time_total


def kernels(task: TaskProfile, on_device: bool) -> list:
    """Events that do the work: device kernels (and copies) on a GPU, operators by self CPU time on a CPU.

    Annotation ranges (ours and torch's, e.g. the optimizer step's) are left out, as torch's own tables do: on a
    GPU they also show up as device ranges spanning their kernels."""
    chosen = [e for e in task.events if not e.is_user_annotation
              and (_is_device_event(e) if on_device else not _is_device_event(e))]
    return sorted(chosen, key=lambda e: _self_us(e, on_device), reverse=True)


def category(name: str) -> str:
    lowered = name.lower()
    return next(label for label, pattern in CATEGORIES if re.search(pattern, lowered))


def _count(task: TaskProfile, names: tuple[str, ...]) -> int:
    return sum(e.count for e in task.events if e.key in names)


def summary_rows(tasks: list[TaskProfile], on_device: bool) -> list[list[object]]:
    rows = []
    for task in tasks:
        busy_ms = sum(_self_us(e, on_device) for e in kernels(task, on_device)) / 1e3
        device_to_host = sum(e.count for e in task.events if "memcpy dtoh" in e.key.lower())
        rows.append([task.name, format_number(task.wall_ms), format_number(busy_ms),
                     f"{100 * busy_ms / task.wall_ms:.0f}%" if on_device else "–",
                     _count(task, LAUNCH_EVENTS) if on_device else "–",
                     _count(task, SYNC_EVENTS) if on_device else "–",
                     device_to_host if on_device else "–",
                     _count(task, ("aten::_local_scalar_dense",)), _count(task, ("aten::nonzero",))])
    return rows


def region_rows(task: TaskProfile, on_device: bool) -> list[list[object]]:
    """Inclusive time per annotated region (device time of the kernels it launched on a GPU), and the rest."""
    by_name = {e.key: e for e in task.events if not _is_device_event(e)}  # the host-side range, not its GPU copy
    total_event = by_name[task.name]

    def inclusive_ms(event) -> float:
        return (event.device_time_total if on_device else event.cpu_time_total) / 1e3

    total = inclusive_ms(total_event)
    rows, covered = [], 0.0
    for region in task.regions[1:]:
        event = by_name.get(region)
        ms = inclusive_ms(event) if event is not None else 0.0
        covered += ms
        rows.append([region, event.count if event is not None else 0, format_number(ms),
                     f"{100 * ms / total:.1f}%" if total else "–"])
    rest = total - covered
    rows.append(["everything else", "–", format_number(rest), f"{100 * rest / total:.1f}%" if total else "–"])
    rows.append([f"total ({task.name})", 1, format_number(total), "100%"])
    return rows


def category_rows(task: TaskProfile, on_device: bool) -> list[list[object]]:
    totals: dict[str, list[float]] = {label: [0.0, 0] for label, _ in CATEGORIES}
    for event in kernels(task, on_device):
        entry = totals[category(event.key)]
        entry[0] += _self_us(event, on_device) / 1e3
        entry[1] += event.count
    busy = sum(ms for ms, _ in totals.values())
    return [[label, count, format_number(ms), f"{100 * ms / busy:.1f}%" if busy else "–"]
            for label, (ms, count) in totals.items()]


def top_rows(task: TaskProfile, on_device: bool) -> list[list[object]]:
    rows = []
    for event in kernels(task, on_device)[:TOP_KERNELS]:
        self_ms = _self_us(event, on_device) / 1e3
        name = event.key if len(event.key) <= 90 else event.key[:87] + "..."
        rows.append([f"`{name.replace('|', '/')}`", category(event.key), event.count, format_number(self_ms),
                     format_number(1e3 * self_ms / event.count)])
    return rows


def markdown_sections(tasks: list[TaskProfile], setup: speed.SpeedSetup, device: torch.device,
                      dense_mask: bool) -> list[tuple[str, str]]:
    on_device = device.type == "cuda"
    time_kind = "device" if on_device else "CPU"
    sections = [("Summary", markdown_table(
        ["task", "wall ms (profiled)", f"{time_kind} busy ms", "device busy share", "kernel launches",
         "host syncs", "device-to-host copies", "tensor-to-Python reads", "nonzero calls"],
        summary_rows(tasks, on_device)))]
    for task in tasks:
        sections.append((f"{task.name}: regions", markdown_table(
            ["region", "calls", f"{time_kind} ms (inclusive)", "share"], region_rows(task, on_device))))
        sections.append((f"{task.name}: kernel categories", markdown_table(
            ["category", "calls", f"self {time_kind} ms", "share"], category_rows(task, on_device))))
        sections.append((f"{task.name}: top {TOP_KERNELS} by self {time_kind} time", markdown_table(
            ["kernel" if on_device else "operator", "category", "calls", f"self {time_kind} ms", "µs/call"],
            top_rows(task, on_device))))
    notes = "\n".join([
        f"- Setup: {setup.describe().split('; median')[0]}; decoding at T={setup.reference_gen_steps}, "
        f"B={setup.reference_beams}; training batch {setup.train_batch_size}. One profiled call each, after one "
        "warm-up call.",
        f"- Precision: {speed.fast_precision(device)}; compile: {'yes' if setup.compile else 'no'}; attention "
        f"mask: {'dense [B, 1, N, N]' if dense_mask else 'key-padding [B, 1, 1, N]'}.",
        "- Wall time is measured around the profiled call and includes the profiler's overhead; "
        "speed.py has the unprofiled figures. Busy time sums the self time of the kernels (on a CPU: of the "
        "operators); the device busy share is busy / wall.",
        "- Regions are record_function ranges: the model call and the index are labelled by wrapping "
        "LLaDARec.code_log_probs and SIDIndex.allowed_codes / lookup in this script; 'everything else' is the "
        "beam bookkeeping (top-k, gathers), the SID-to-item mapping and the full-sort scores.",
        "- Host syncs: CUDA runtime synchronize calls; tensor-to-Python reads (aten::_local_scalar_dense, from "
        ".item() or bool(tensor)) and nonzero (boolean-mask indexing: its output size lives on the device) each "
        "block the host until the device catches up.",
    ])
    sections.append(("Notes", notes))
    return sections


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="speed.py's shrunk sizes: a quick CPU check")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--out_dir", type=Path, default=RESULTS_DIR, help="where the .md goes")
    parser.add_argument("--decode_users", type=int, default=None, help="users per full_sort_predict call")
    parser.add_argument("--compile", action="store_true", help="LLaDARec with compile: True (torch.compile)")
    parser.add_argument("--dense_mask", action="store_true", help="the dense [B, 1, N, N] attention mask")
    parser.add_argument("--label", default=None, help="suffix of the result file: profile_<hardware>-<label>")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup = speed.SMALL if args.small else speed.SpeedSetup()
    setup = dataclasses.replace(setup, compile=args.compile,
                                decode_users=args.decode_users or setup.decode_users)
    device = pick_device(args.device)
    tasks = profile_llada(setup, device, args.dense_mask)
    slug = hardware_slug(device) + ("-small" if args.small else "") + (f"-{args.label}" if args.label else "")
    md_path = args.out_dir / f"profile_{slug}.md"
    write_markdown(md_path, f"Profile of LLaDARec on {slug}",
                   markdown_sections(tasks, setup, device, args.dense_mask), provenance())
    print(md_path.read_text())
    print(f"written to {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
