"""One GPU against N with RecBole's DistributedDataParallel path: where the multi-GPU training speed-up goes.

Two parts, in one invocation:

- the training step of LLaDARec on synthetic Scientific-sized batches (benchmarks/speed.py's setup), as
  LLaDARecTrainer._train_epoch runs it: the batch copied from the host, calculate_loss under bf16 autocast on
  CUDA, backward, gradient clipping, AdamW (fused on CUDA); with N processes the model is wrapped in
  DistributedDataParallel as RecBole's trainer wraps it (``set_reduce_hook`` + ``sync_grad_loss``, the loss called
  on the bare model). World size 1 (rank 0 alone, the others waiting) and world size N run in the same process
  group, for each per-rank batch and eager / ``--compile``. Loops: ``RecBole`` (RecBole's: a blocking
  ``interaction.to`` and a dummy input copied to the GPU each step, two host syncs), ``trainer`` (LLaDARecTrainer's:
  neither), and with N ranks ``trainer, no all-reduce`` (the same inside ``no_sync()``: the gradient all-reduce's
  share is the difference).
- the data path: one epoch of RecBole's training dataloader for ``--dataset`` without the model (collating every
  batch, then also copying it to the device), with the whole batch in one process and with the per-rank batch
  and DistributedSampler share of rank 0, as RecBole's DDP path splits it.

Writes ``benchmarks/results/ddp_speed_<hardware>[-small][-label].{md,csv}`` (``--out_dir`` elsewhere).

    python benchmarks/ddp_speed.py --nproc=2 --compile --dataset=Scientific --data_path=$DATA/amazon2023
    python benchmarks/ddp_speed.py --small     # CPU, gloo, 2 processes, tiny model, ml-100k: a check of the script
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import socket
import statistics
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from recbole.data.interaction import Interaction
from recbole.trainer.trainer import AbstractTrainer
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils import clip_grad_norm_

from benchmarks.common import (RESULTS_DIR, build_synthetic_model, format_number, hardware_slug, split_config_files,
                               synchronize, synthetic_batch, synthetic_dataset, time_repeated, write_csv,
                               write_markdown)
from benchmarks.speed import SMALL, SpeedSetup, llada_overrides
from recbole_llada.devices import autocast
from recbole_llada.training.results import markdown_table, provenance
from recbole_llada.training.trainer import LLaDARecTrainer, to_device

RECBOLE_LOOP = "RecBole"
TRAINER_LOOP = "trainer"
NO_ALLREDUCE = "trainer, no all-reduce"


@dataclass(frozen=True)
class Plan:
    setup: SpeedSetup
    nproc: int
    per_rank_batches: tuple[int, ...]
    compile_variants: tuple[bool, ...]
    train_steps: int
    warmup: int
    repeats: int
    backend: str  # "nccl" on CUDA, "gloo" on CPU
    use_cuda: bool

    @property
    def single_batches(self) -> tuple[int, ...]:
        """World size 1 runs every per-rank batch and every global batch of N ranks."""
        return tuple(sorted({*self.per_rank_batches, *(b * self.nproc for b in self.per_rank_batches)}))


@dataclass
class StepRow:
    precision: str  # "eager" / "compiled", and the autocast dtype
    world_size: int
    loop: str
    per_rank_batch: int
    step_ms: float  # median over repeats, per optimizer step (rank 0's clock; ranks run in lockstep)
    peak_memory_gib: float | None

    @property
    def global_batch(self) -> int:
        return self.per_rank_batch * self.world_size

    @property
    def samples_per_s(self) -> float:
        return self.global_batch / (self.step_ms / 1000)


@dataclass
class LoaderRow:
    split: str  # "one process" or "rank 0 of N"
    batch: int  # per process
    batches: int
    collate_s: float  # one epoch of building and collating every batch
    with_copy_s: float  # the same, plus copying each batch to the device (synced)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cpu_batches(model: torch.nn.Module, batch_size: int, setup: SpeedSetup, seed: int) -> list[Interaction]:
    """Host-side batches, as the dataloader yields them: the step copies them, as the trainer does."""
    generator = torch.Generator().manual_seed(seed)
    cpu = torch.device("cpu")
    return [Interaction(synthetic_batch(model, batch_size, setup.history_len, setup.n_items, generator, cpu))
            for _ in range(2)]


def _make_step(model, optimizer, config, device, loop: str, ddp: DistributedDataParallel | None):
    """One optimizer step of ``loop`` on a host-side batch; ``ddp`` None: one process, no wrapper."""
    # The trainer methods read only these attributes, so they run on a stand-in rather than a whole trainer.
    trainer = SimpleNamespace(model=model, distributed_model=ddp, device=device, _reduce_hook_input=None)
    set_reduce_hook = (AbstractTrainer.set_reduce_hook if loop == RECBOLE_LOOP
                       else LLaDARecTrainer.set_reduce_hook)

    def step(interaction: Interaction) -> None:
        interaction = interaction.to(device) if loop == RECBOLE_LOOP else to_device(interaction, device)
        optimizer.zero_grad(set_to_none=True)
        sync_loss = 0
        if ddp is not None:
            set_reduce_hook(trainer)
            sync_loss = AbstractTrainer.sync_grad_loss(trainer)
        with autocast(device, config["precision"]):
            loss = model.calculate_loss(interaction)
        (loss + sync_loss).backward()
        clip_grad_norm_(model.parameters(), **config["clip_grad_norm"])
        optimizer.step()

    return step


def _time_step(step, batches: list[Interaction], plan: Plan, device: torch.device,
               no_sync_ddp: DistributedDataParallel | None) -> tuple[float, float | None]:
    cycle = itertools.cycle(batches)

    def block() -> None:
        for _ in range(plan.train_steps):
            step(next(cycle))

    with no_sync_ddp.no_sync() if no_sync_ddp is not None else nullcontext():
        timing = time_repeated(block, device, warmup=plan.warmup, repeats=plan.repeats)
    return timing.median / plan.train_steps * 1000, timing.peak_memory_gib


def _step_worker(rank: int, plan: Plan, port: int, queue) -> None:
    import recbole_llada  # noqa: F401  (spawned processes start fresh: compat + registration)

    dist.init_process_group(plan.backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=plan.nproc)
    device = torch.device("cuda", rank) if plan.use_cuda else torch.device("cpu")
    if plan.use_cuda:
        torch.cuda.set_device(device)
    setup = plan.setup
    rows: list[StepRow] = []
    for compiled in plan.compile_variants:
        variant = ("compiled" if compiled else "eager") + (", bf16 autocast" if plan.use_cuda else ", fp32")
        torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
        dataset = synthetic_dataset(setup.n_items, setup.sid_length, setup.codebook_size, 1000,
                                    torch.Generator().manual_seed(0))
        setup_variant = dataclasses.replace(setup, compile=compiled)
        model, config = build_synthetic_model("LLaDARec", dataset, llada_overrides(setup_variant), device)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=config["learning_rate"],
                                      weight_decay=config["weight_decay"], fused=plan.use_cuda)

        def measure(world_size: int, loop: str, batch: int, ddp) -> None:
            step = _make_step(model, optimizer, config, device, loop, ddp)
            step_ms, peak = _time_step(step, _cpu_batches(model, batch, setup, seed=1 + rank), plan, device,
                                       ddp if loop == NO_ALLREDUCE else None)
            rows.append(StepRow(variant, world_size, loop, batch, step_ms, peak))

        for batch in plan.single_batches:
            if rank == 0:
                for loop in (RECBOLE_LOOP, TRAINER_LOOP):
                    measure(1, loop, batch, None)
            dist.barrier()
        # As RecBole's AbstractTrainer wraps it (its SyncBatchNorm conversion is a no-op: no batch norm here).
        ddp = DistributedDataParallel(model, device_ids=[rank] if plan.use_cuda else None)
        for batch in plan.per_rank_batches:
            for loop in (RECBOLE_LOOP, TRAINER_LOOP, NO_ALLREDUCE):
                measure(plan.nproc, loop, batch, ddp)
        synchronize(device)
        dist.barrier()
    if rank == 0:
        queue.put(rows)
    dist.destroy_process_group()


def measure_steps(plan: Plan) -> list[StepRow]:
    """Every StepRow of ``plan``, from rank 0 of ``plan.nproc`` spawned processes."""
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    mp.spawn(_step_worker, args=(plan, _free_port(), queue), nprocs=plan.nproc, join=True)
    return queue.get()


# ----- the data path ---------------------------------------------------------------------------------------------

def _epoch_seconds(loader, device: torch.device, copy: bool) -> tuple[int, float]:
    start = time.perf_counter()
    batches = 0
    for interaction in loader:
        if copy:
            interaction.to(device)
        batches += 1
    synchronize(device)
    return batches, time.perf_counter() - start


def measure_loader(dataset: str, data_path: str | None, config_files: Sequence[str], batch: int, nproc: int,
                   device: torch.device) -> list[LoaderRow]:
    """One epoch of RecBole's training dataloader for ``dataset``: the global batch in one process, and rank 0's
    share when RecBole's DDP path splits it (a DistributedSampler, batch // nproc per rank). SASRec's config: the
    same sequential dataset and collation as LLaDARec's, without building semantic IDs."""
    from recbole.data import create_dataset, data_preparation

    from recbole_llada.training.quick_start import build_config, ensure_dataset_files

    overrides = {"train_batch_size": batch, "train_neg_sample_args": None, "loss_type": "CE", "gpu_id": "",
                 "show_progress": False}
    if data_path:
        overrides["data_path"] = data_path
    config = build_config("SASRec", dataset, config_files, overrides)
    ensure_dataset_files(config)
    train_data, _, _ = data_preparation(config, create_dataset(config))
    indices = list(range(train_data.sample_size))
    sampler = torch.utils.data.distributed.DistributedSampler(indices, num_replicas=nproc, rank=0, shuffle=True)
    rank_loader = torch.utils.data.DataLoader(indices, batch_size=max(1, batch // nproc), sampler=sampler,
                                              collate_fn=train_data.collate_fn, num_workers=config["worker"])
    rows = []
    for split, loader, per_process in (("one process", train_data, batch),
                                       (f"rank 0 of {nproc}", rank_loader, max(1, batch // nproc))):
        batches, collate_s = _epoch_seconds(loader, device, copy=False)
        _, with_copy_s = _epoch_seconds(loader, device, copy=True)
        rows.append(LoaderRow(split, per_process, batches, collate_s, with_copy_s))
    return rows


# ----- report ------------------------------------------------------------------------------------------------------

def find_step(rows: Sequence[StepRow], precision: str, world_size: int, loop: str, batch: int) -> StepRow | None:
    return next((r for r in rows if (r.precision, r.world_size, r.loop, r.per_rank_batch)
                 == (precision, world_size, loop, batch)), None)


def speedups(rows: Sequence[StepRow], row: StepRow) -> tuple[float | None, float | None]:
    """Samples/s of ``row`` over one process of the same loop at (the same global batch, the same per-rank batch)."""
    same_global = find_step(rows, row.precision, 1, _single_loop(row.loop), row.global_batch)
    same_per_rank = find_step(rows, row.precision, 1, _single_loop(row.loop), row.per_rank_batch)
    return tuple(row.samples_per_s / other.samples_per_s if other else None
                 for other in (same_global, same_per_rank))


def _single_loop(loop: str) -> str:
    return TRAINER_LOOP if loop == NO_ALLREDUCE else loop


def allreduce_share(rows: Sequence[StepRow], row: StepRow) -> float | None:
    """The share of the trainer loop's step not left when the gradient all-reduce is skipped."""
    if row.world_size == 1 or row.loop != TRAINER_LOOP:
        return None
    without = find_step(rows, row.precision, row.world_size, NO_ALLREDUCE, row.per_rank_batch)
    return 1 - without.step_ms / row.step_ms if without else None


STEP_HEADER = ["precision", "world_size", "loop", "per_rank_batch", "global_batch", "step_ms", "samples_per_s",
               "speedup_same_global_batch", "speedup_same_per_rank_batch", "allreduce_share", "epoch_s",
               "peak_memory_gib"]
LOADER_HEADER = ["split", "batch", "batches", "collate_s", "collate_and_copy_s", "ms_per_batch"]


def step_values(rows: Sequence[StepRow], row: StepRow, train_sequences: int) -> list:
    return [row.precision, row.world_size, row.loop, row.per_rank_batch, row.global_batch, row.step_ms,
            row.samples_per_s, *speedups(rows, row), allreduce_share(rows, row), train_sequences / row.samples_per_s,
            row.peak_memory_gib]


def loader_values(row: LoaderRow) -> list:
    return [row.split, row.batch, row.batches, row.collate_s, row.with_copy_s, row.collate_s / row.batches * 1000]


NOTES = """\
What can hold RecBole's DDP training below N x one GPU (read from RecBole 1.2.1 and our trainer; the tables above
measure the parts that can be measured apart):
- Per-rank batch: RecBole divides `train_batch_size` by the world size (AbstractDataLoader: `step //= world_size`),
  so on Scientific 2 GPUs run 254 steps of 512 each where one GPU runs 254 of 1024. A step of 512 costs more than
  half a step of 1024 (kernel launches, the optimizer step and gradient clipping cost the same at any batch):
  compare the world-size-1 rows of the per-rank and the global batch. The speed-up at the same per-rank batch
  separates this from the communication.
- Host syncs per step: RecBole's `interaction.to(device)` copies each field with a blocking copy and
  `set_reduce_hook` copies a dummy `LongTensor([0])` to the GPU every step: each waits for all queued GPU work, so
  the CPU cannot queue step i+1 (nor collate its batch) while step i computes. Fixed in LLaDARecTrainer
  (`to_device`, non-blocking; the dummy input made once): rows `RecBole` against `trainer`. The loss is
  accumulated on the device and read once per epoch (already so).
- `sync_grad_loss`: RecBole adds `sum(p) * 0` for every parameter to the loss each step (so that every parameter
  gets a gradient and the all-reduce never waits on an unused one): about 3 small kernels per parameter forward
  and one per parameter backward, a fixed per-step cost that weighs more at the per-rank batch. Kept: removing it
  needs every parameter used by every loss configuration (or find_unused_parameters, which costs a graph walk).
- Gradient all-reduce: DDP buckets of 25 MB, overlapped with the backward; LLaDARec (d=256) has a few million
  parameters, a few ms of NVLink traffic at most: the `no all-reduce` rows bound it. `broadcast_buffers` (on by
  default) also broadcasts the model's buffers (`item_sid`, ~1 MB at Scientific) from rank 0 at every DDP
  forward, i.e. every `set_reduce_hook`; small, left as RecBole sets it.
- Data loader: RecBole's DDP path gives each rank a DistributedSampler share and a per-rank batch, so each rank
  collates only its half (no rank does the full loader work); it runs in the training process (`worker: 0`), in
  series with the step only where a host sync stops the CPU from running ahead: the loader table gives its
  per-epoch cost in one process and per rank.
- Evaluation (not timed here): RecBole's DDP path evaluates on every rank on its DistributedSampler share of the
  users and all-gathers the metrics (`_map_reduce`), so validation scales (1.9x measured), apart from the
  per-rank decoding batch being half as large.
- With `compile: True`, RecBole's `set_reduce_hook` runs the compiled module's call with its `forward` swapped for
  an identity, a second graph of its own (compiled once, then a guard check per step)."""


def write_report(plan: Plan, step_rows: Sequence[StepRow], loader_rows: Sequence[LoaderRow], out_dir: Path,
                 slug: str, loader_source: str) -> tuple[Path, Path]:
    out = out_dir / f"ddp_speed_{slug}"
    train_sequences = plan.setup.train_sequences
    # One file, two parts: each row fills its part's columns and leaves the other's empty.
    blank_loader, blank_step = [""] * len(LOADER_HEADER), [""] * len(STEP_HEADER)
    csv_rows = [["step", *step_values(step_rows, row, train_sequences), *blank_loader] for row in step_rows]
    csv_rows += [["loader", *blank_step, *loader_values(row)] for row in loader_rows]
    write_csv(out.with_suffix(".csv"), ["part", *STEP_HEADER, *(f"loader_{c}" for c in LOADER_HEADER)], csv_rows)

    def fmt(value):
        return value if isinstance(value, str) else format_number(value)

    step_table = markdown_table(
        ["precision", "ranks", "loop", "batch / rank", "global batch", "ms / step", "samples / s",
         "speed-up, same global batch", "speed-up, same batch / rank", "all-reduce share", "epoch s", "peak GiB"],
        [[fmt(v) for v in step_values(step_rows, row, train_sequences)] for row in step_rows])
    loader_table = markdown_table(["split", "batch / process", "batches", "collate s / epoch",
                                   "collate + copy s / epoch", "ms / batch"],
                                  [[fmt(v) for v in loader_values(row)] for row in loader_rows])
    setup = plan.setup
    description = (f"LLaDARec on synthetic batches: {setup.n_items:,} items, M={setup.sid_length} x "
                   f"K={setup.codebook_size}, history {setup.history_len}, d={setup.d_model}, {setup.n_layers} "
                   f"layers, {setup.n_heads} heads; {plan.nproc} ranks ({plan.backend}); median of {plan.repeats} "
                   f"repeats of {plan.train_steps} steps after {plan.warmup} warm-up. Epoch s: {train_sequences:,} "
                   "training sequences (Scientific) at the row's samples/s over all ranks.")
    write_markdown(out.with_suffix(".md"), f"LLaDARec training, one process against {plan.nproc}", [
        ("", description),
        ("Training step", step_table),
        (f"Data path: RecBole's training dataloader, {loader_source}", loader_table),
        ("Notes", NOTES),
    ], provenance())
    return out.with_suffix(".md"), out.with_suffix(".csv")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nproc", type=int, default=2, help="world size to compare with one process [2]")
    parser.add_argument("--batch_sizes", default=None,
                        help="per-rank batches, comma separated [512,1024; --small 8,16]")
    parser.add_argument("--compile", action="store_true", help="also time LLaDARec with compile: True")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per timed repeat [10; --small 3]")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dataset", default=None, help="dataset of the loader part [Scientific; --small ml-100k]")
    parser.add_argument("--data_path", default=None, help="folder holding <dataset>/<dataset>.inter")
    parser.add_argument("--config_files", default="", help="extra YAML files for the loader part's config")
    parser.add_argument("--loader_batch", type=int, default=None,
                        help="global batch of the loader part [1024; --small 2048]")
    parser.add_argument("--small", action="store_true", help="tiny model on the CPU (gloo), ml-100k loader")
    parser.add_argument("--out_dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--label", default="")
    args = parser.parse_args(argv)

    use_cuda = torch.cuda.is_available() and not args.small
    device = torch.device("cuda", 0) if use_cuda else torch.device("cpu")
    # Named before the loader part: RecBole's Config rewrites CUDA_VISIBLE_DEVICES, after which the device is
    # no longer addressable from this process.
    slug = hardware_slug(device) + ("-small" if args.small else "") + (f"-{args.label}" if args.label else "")
    if use_cuda and torch.cuda.device_count() < args.nproc:
        parser.error(f"--nproc={args.nproc} needs {args.nproc} GPUs, found {torch.cuda.device_count()}")
    batches = tuple(int(b) for b in (args.batch_sizes or ("8,16" if args.small else "512,1024")).split(","))
    loader_batch = args.loader_batch or (2048 if args.small else 1024)
    plan = Plan(setup=SMALL if args.small else SpeedSetup(), nproc=args.nproc, per_rank_batches=batches,
                compile_variants=(False, True) if args.compile else (False,),
                train_steps=args.steps or (3 if args.small else 10), warmup=1, repeats=args.repeats,
                backend="nccl" if use_cuda else "gloo", use_cuda=use_cuda)
    step_rows = measure_steps(plan)

    dataset = args.dataset or ("ml-100k" if args.small else "Scientific")
    loader_rows = measure_loader(dataset, args.data_path, split_config_files(args.config_files), loader_batch,
                                 args.nproc, device)

    md_path, _ = write_report(plan, step_rows, loader_rows, args.out_dir, slug, f"{dataset}, global batch "
                              f"{loader_batch}")
    print(md_path.read_text())
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # N ranks on a shared CPU
    sys.exit(main())
