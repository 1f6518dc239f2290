"""Training and decoding speed of LLaDARec at the paper's Scientific scale, against SASRec and the official code.

Synthetic inputs of the real sizes (25,848 items with random unique SIDs, M = 4, K = 256; histories of 20 items;
d = 256, 4 layers, 4 heads, MLP ratio 4) go through the real models, built from the same config layers as a real
run but without loading a dataset. Measured on CUDA when present, else on CPU:

- training: samples/s of LLaDARec's step as LLaDARecTrainer runs it (calculate_loss under bf16 autocast on CUDA,
  backward, gradient clipping, AdamW fused on CUDA) and of SASRec's as RecBole's Trainer runs it (fp32, Adam); the
  implied epoch over Scientific's 259,992 training sequences;
- decoding: users/s and peak memory of LLaDARec.full_sort_predict for T in {1, 2, 4} x B in {10, 20, 50}, of the
  official-style loop (benchmarks/reference_decode.py) at T = 4, B = 50 on the same users, and of SASRec's
  full-sort scoring; the implied time for Scientific's 50,985 test users;
- the official code itself, with ``--official_dir`` (a checkout of TengShi-RUC/LLaDA-Rec at bd8bdc1, never copied
  here; benchmarks/official_model.py builds its model on the same SIDs): its decoding entry point at T = 4, B = 50 on
  the same users and its training step on the same batches, in fp32 as its pipeline runs;
- catalog scoring, with ``--scorings``: full_sort_predict under each listed ``scoring`` mode on the same users (one
  forward per user for marginal, scorer and fused, against beam search's T x B);
- FLOPs: analytic matmul FLOPs per decoded user / trained sample, the achieved TFLOP/s, and its share of a measured
  dense matmul rate of the same precision.

Each figure is the median of several repeats after warm-up, timed between device syncs. Writes
``benchmarks/results/speed_<hardware>.{md,csv}`` (``speed_<hardware>-small`` with ``--small``; ``--label=X``
appends ``-X``).

    python benchmarks/speed.py                 # full sizes, on the GPU
    python benchmarks/speed.py --small         # shrunk sizes, a CPU check of the whole script
    python benchmarks/speed.py --compare_dense_mask --compile --label=compiled   # the speed paths of issue 14
    python benchmarks/speed.py --compile_modes=eager,default,reduce-overhead --train_batch_grid=1024,2048
    python benchmarks/speed.py --official_dir=.carry/official   # also the official code, in the same run
    python benchmarks/speed.py --scorings=beam,marginal,rescore,fused --no_reference --no_sasrec \
        --gen_steps_grid=4 --beams_grid=50 --label=scorings       # decode time of the catalog scoring modes
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch.nn.utils import clip_grad_norm_

from benchmarks.common import (RESULTS_DIR, Timing, build_synthetic_model, encoder_flops_per_token, format_number,
                               hardware_slug, matmul_tflops, pick_device, synthetic_batch, synthetic_dataset,
                               time_repeated, write_csv, write_markdown)
from benchmarks.official_launcher import check_official_checkout, import_official_code
from benchmarks.official_model import build_official_model, official_batch, official_predict, official_train_step
from benchmarks.official_side_by_side import OFFICIAL_COMMIT
from benchmarks.quality import OFFICIAL_CODE_MODEL
from benchmarks.reference_decode import reference_full_sort_predict
from recbole_llada.devices import autocast
from recbole_llada.model.llada_rec import COMPILE_MODES, SCORER_MODES, SCORING_MODES
from recbole_llada.training.results import markdown_table, provenance


@dataclass(frozen=True)
class SASRecVariant:
    name: str
    hidden_size: int
    inner_size: int
    n_layers: int
    n_heads: int


@dataclass(frozen=True)
class SpeedSetup:
    n_items: int = 25_848
    sid_length: int = 4
    codebook_size: int = 256
    history_len: int = 20
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    mlp_ratio: int = 4
    train_batch_size: int = 1024
    # Scientific's training targets: 412,947 interactions - 3 x 50,985 (each user's validation and test items are held
    # out, and the first item has no history to predict it from): 254 batches of 1024, as RecBole's loader yields.
    train_sequences: int = 259_992
    test_users: int = 50_985
    decode_users: int = 2048  # users per full_sort_predict call: the protocol's eval_batch_size
    decode_batch_size: int = 256  # users per decoding forward (LLaDARec.yaml)
    gen_steps_grid: tuple[int, ...] = (1, 2, 4)
    beams_grid: tuple[int, ...] = (10, 20, 50)
    reference_gen_steps: int = 4
    reference_beams: int = 50
    sasrec_variants: tuple[SASRecVariant, ...] = (
        SASRecVariant("SASRec", hidden_size=64, inner_size=256, n_layers=2, n_heads=2),  # RecBole's defaults
        SASRecVariant("SASRec d=256", hidden_size=256, inner_size=1024, n_layers=2, n_heads=2),
    )
    sasrec_batch_size: int = 256  # the protocol's train_batch_size for baselines
    train_steps: int = 10  # optimizer steps per timed repeat
    warmup: int = 1
    repeats: int = 3
    matmul_size: int = 8192
    run_reference: bool = True
    run_sasrec: bool = True
    compare_dense_mask: bool = False  # also time LLaDARec with the dense [B, 1, N, N] attention mask
    compile: bool = False  # LLaDARec with `compile: True` (torch.compile, one graph per shape)
    compile_mode: str = "default"  # its `compile_mode` (torch.compile's mode), when compile
    # Training grid: LLaDARec's training step for every compile mode ("eager": compile: False) x batch size, each
    # mode on a fresh model; empty: the model above alone, at train_batch_size. Decoding always uses the model above.
    compile_modes: tuple[str, ...] = ()
    train_batch_grid: tuple[int, ...] = ()
    official_dir: Path | None = None  # a checkout of the official code to time beside ours; None: not timed
    # full_sort_predict with each of these `scoring` modes (issue 13's catalog modes; beam search, hybrid and
    # scorer_hybrid at the reference T and B), on the decoding users; the modes that read the item scorer time a
    # model built with one (untrained: the time does not depend on its weights).
    scorings: tuple[str, ...] = ()

    @property
    def seq_len(self) -> int:
        return (self.history_len + 1) * self.sid_length

    @property
    def vocab_size(self) -> int:
        return self.sid_length * self.codebook_size + 2  # padding + codes + [MASK]

    @property
    def official_vocab_size(self) -> int:
        return self.vocab_size + 1  # the official tokenizer also reserves an EOS token

    def describe(self) -> str:
        return (f"{self.n_items:,} items, random unique SIDs of M={self.sid_length} x K={self.codebook_size}; "
                f"history {self.history_len} items (N={self.seq_len} tokens); LLaDARec d={self.d_model}, "
                f"{self.n_layers} layers, {self.n_heads} heads, MLP ratio {self.mlp_ratio}; "
                f"{self.decode_users} users per full_sort_predict call, {self.decode_batch_size} per decoding "
                f"forward; median of {self.repeats} repeats after {self.warmup} warm-up")


SMALL = SpeedSetup(
    n_items=2000, codebook_size=16, history_len=5, d_model=32, n_layers=2, n_heads=2, mlp_ratio=2,
    train_batch_size=32, decode_users=16, decode_batch_size=8,
    sasrec_variants=(SASRecVariant("SASRec", 16, 32, 1, 1), SASRecVariant("SASRec d=32", 32, 64, 1, 1)),
    sasrec_batch_size=32, train_steps=3, matmul_size=512,
)


@dataclass
class SpeedRow:
    task: str  # "train" or "decode"
    model: str
    setting: str
    precision: str
    n_parameters: int
    batch: int  # samples per optimizer step, or users per full_sort_predict call
    median_s: float  # per optimizer step (train) or per call (decode)
    throughput: float  # samples/s (train) or users/s (decode)
    full_run_s: float  # one epoch (train) or the whole test set (decode)
    peak_memory_gib: float | None = None
    gflop_per_unit: float | None = None  # per trained sample or per decoded user
    tflops: float | None = None
    matmul_peak_share: float | None = None  # tflops / measured matmul rate of the same precision


@dataclass
class SpeedReport:
    setup: SpeedSetup
    device: torch.device
    matmul_rates: dict[str, float]  # precision -> measured dense matmul TFLOP/s
    rows: list[SpeedRow] = field(default_factory=list)

    def find(self, task: str, model: str, setting: str) -> SpeedRow | None:
        return next((r for r in self.rows if (r.task, r.model, r.setting) == (task, model, setting)), None)


OURS = "LLaDARec (ours)"
REFERENCE = "LLaDARec (official loop)"
OFFICIAL = OFFICIAL_CODE_MODEL


def decode_setting(gen_steps: int, num_beams: int) -> str:
    return f"T={gen_steps} B={num_beams}"


def scoring_setting(setup: SpeedSetup, scoring: str) -> str:
    searches = scoring in ("beam", "hybrid", "scorer_hybrid")
    return f"scoring={scoring}" + (f", {decode_setting(setup.reference_gen_steps, setup.reference_beams)}"
                                   if searches else "")


def llada_overrides(setup: SpeedSetup) -> dict:
    return {"hidden_size": setup.d_model, "n_layers": setup.n_layers, "n_heads": setup.n_heads,
            "mlp_ratio": setup.mlp_ratio, "sid_length": setup.sid_length, "sid_codebook_size": setup.codebook_size,
            "MAX_ITEM_LIST_LENGTH": setup.history_len, "train_batch_size": setup.train_batch_size,
            "decode_batch_size": setup.decode_batch_size, "gen_steps": setup.sid_length, "compile": setup.compile,
            "compile_mode": setup.compile_mode}


EAGER = "eager"  # in SpeedSetup.compile_modes: LLaDARec with compile: False


def own_compile_mode(setup: SpeedSetup) -> str:
    """The compile mode of the model that llada_overrides(setup) builds (EAGER: not compiled)."""
    return setup.compile_mode if setup.compile else EAGER


def training_compile_modes(setup: SpeedSetup) -> tuple[str, ...]:
    return setup.compile_modes or (own_compile_mode(setup),)


def training_batch_sizes(setup: SpeedSetup) -> tuple[int, ...]:
    return setup.train_batch_grid or (setup.train_batch_size,)


def with_compile_mode(overrides: dict, mode: str) -> dict:
    return {**overrides, "compile": mode != EAGER, "compile_mode": "default" if mode == EAGER else mode}


def train_setting(setup: SpeedSetup, batch_size: int, mode: str, dense_mask: bool = False) -> str:
    """A training row's label: its batch, its compile mode when a grid of modes was asked for, its mask."""
    compile_label = "" if not setup.compile_modes else (", eager" if mode == EAGER else f", compile {mode}")
    return f"batch {batch_size}{compile_label}{mask_suffix(dense_mask)}"


def mask_variants(setup: SpeedSetup) -> tuple[bool, ...]:
    """Values of LLaDARec.dense_attention_mask to time: the default, plus the dense mask if compared."""
    return (False, True) if setup.compare_dense_mask else (False,)


def mask_suffix(dense_mask: bool) -> str:
    return ", dense mask" if dense_mask else ""


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def fast_precision(device: torch.device) -> str:
    return "bf16 autocast" if device.type == "cuda" else "fp32"


def time_training(step: Callable[[dict], None], batches: list[dict], setup: SpeedSetup,
                  device: torch.device) -> Timing:
    """Timing of blocks of setup.train_steps optimizer steps, cycling over pre-built batches; per block."""
    batch_cycle = itertools.cycle(batches)

    def block() -> None:
        for _ in range(setup.train_steps):
            step(next(batch_cycle))

    return time_repeated(block, device, warmup=setup.warmup, repeats=setup.repeats)


def train_row(report: SpeedReport, model_name: str, setting: str, precision: str, model: torch.nn.Module,
              batch_size: int, timing: Timing, flop_per_sample: float | None) -> SpeedRow:
    setup = report.setup
    step_s = timing.median / setup.train_steps
    samples_per_s = batch_size / step_s
    row = SpeedRow(task="train", model=model_name, setting=setting, precision=precision,
                   n_parameters=count_parameters(model), batch=batch_size, median_s=step_s,
                   throughput=samples_per_s, full_run_s=setup.train_sequences / samples_per_s,
                   peak_memory_gib=timing.peak_memory_gib)
    return with_flops(row, report, flop_per_sample)


def decode_row(report: SpeedReport, model_name: str, setting: str, precision: str, model: torch.nn.Module,
               timing: Timing, flop_per_user: float | None) -> SpeedRow:
    setup = report.setup
    users_per_s = setup.decode_users / timing.median
    row = SpeedRow(task="decode", model=model_name, setting=setting, precision=precision,
                   n_parameters=count_parameters(model), batch=setup.decode_users, median_s=timing.median,
                   throughput=users_per_s, full_run_s=setup.test_users / users_per_s,
                   peak_memory_gib=timing.peak_memory_gib)
    return with_flops(row, report, flop_per_user)


def with_flops(row: SpeedRow, report: SpeedReport, flop_per_unit: float | None) -> SpeedRow:
    if flop_per_unit is None:
        return row
    tflops = flop_per_unit * row.throughput / 1e12
    rate = report.matmul_rates.get("bf16" if row.precision.startswith("bf16") else "fp32")
    return dataclasses.replace(row, gflop_per_unit=flop_per_unit / 1e9, tflops=tflops,
                               matmul_peak_share=tflops / rate if rate else None)


def _encoder_flops_per_sequence(setup: SpeedSetup) -> float:
    return setup.seq_len * encoder_flops_per_token(setup.d_model, setup.n_layers, setup.mlp_ratio, setup.seq_len)


def decode_flops_per_user(setup: SpeedSetup, gen_steps: int, num_beams: int, official: bool,
                          vocab_size: int | None = None) -> float:
    """Matmul FLOPs of decoding one user; ``vocab_size``: the network's, if not ours (the official code's).

    Ours runs the first step on one sequence per user (all beams start as the same empty SID), the last layer's
    queries and the output head only on the M target positions, and the head only on each head's own K codes; the
    official loop forwards all num_beams copies at every step, every position through every layer, and the
    full-vocabulary head at every position.
    """
    if official:
        head = 2 * setup.d_model * setup.seq_len * (vocab_size or setup.vocab_size)
        return gen_steps * num_beams * (_encoder_flops_per_sequence(setup) + head)
    head = 2 * setup.d_model * setup.sid_length * setup.codebook_size
    return (1 + (gen_steps - 1) * num_beams) * (_target_encoder_flops_per_sequence(setup) + head)


def _target_encoder_flops_per_sequence(setup: SpeedSetup) -> float:
    """The encoder when only the M target positions' outputs are needed: the last layer still projects keys and
    values at all N positions, but queries, attention, output projection and SwiGLU only at the M targets."""
    d_model, n_tokens = setup.d_model, setup.seq_len
    earlier_layers = n_tokens * encoder_flops_per_token(d_model, setup.n_layers - 1, setup.mlp_ratio, n_tokens)
    keys_values = n_tokens * 2 * 2 * d_model * d_model
    per_target = 2 * (2 * d_model * d_model + 3 * d_model * setup.mlp_ratio * d_model) + 2 * 2 * n_tokens * d_model
    return earlier_layers + keys_values + setup.sid_length * per_target


def train_flops_per_sample(setup: SpeedSetup, official: bool = False) -> float:
    """Matmul FLOPs of one training sample: two corrupted sequences through the encoder, the full-vocabulary
    head on the M target positions (next-item loss) and on all N positions (history loss); backward = 2 x forward.
    The official code computes the head at all N positions of both sequences (then keeps the M targets'), over
    its own vocabulary."""
    head_positions, vocab_size = ((2 * setup.seq_len, setup.official_vocab_size) if official
                                  else (setup.sid_length + setup.seq_len, setup.vocab_size))
    forward = 2 * _encoder_flops_per_sequence(setup) + 2 * setup.d_model * head_positions * vocab_size
    return 3 * forward


def measure_llada(report: SpeedReport, generator: torch.Generator) -> None:
    setup, device = report.setup, report.device
    dataset = synthetic_dataset(setup.n_items, setup.sid_length, setup.codebook_size, setup.train_sequences, generator)
    model, config = build_synthetic_model("LLaDARec", dataset, llada_overrides(setup), device)
    # Built once on the device and cycled, so the timed step is the device step alone, as for every mode and size:
    # the trainer's per-batch host-to-device copy is not timed (tokenising the SIDs is: calculate_loss does it).
    batches_by_size = {batch_size: [synthetic_batch(model, batch_size, setup.history_len, setup.n_items, generator,
                                                    device) for _ in range(4)]
                       for batch_size in training_batch_sizes(setup)}
    for mode in training_compile_modes(setup):
        measure_llada_training(report, dataset, mode, batches_by_size)

    batches = batches_by_size.get(setup.train_batch_size) or [
        synthetic_batch(model, setup.train_batch_size, setup.history_len, setup.n_items, generator, device)
        for _ in range(4)]
    if setup.compile:
        torch._dynamo.reset()  # the training models' graphs are no longer needed
    model.eval()
    users = synthetic_batch(model, setup.decode_users, setup.history_len, setup.n_items, generator, device)
    grid = [(steps, beams) for steps in setup.gen_steps_grid for beams in setup.beams_grid]
    # The official loop and the official code are timed at this setting: ours too, for the ratios.
    compared = setup.run_reference or setup.official_dir is not None
    if compared and (setup.reference_gen_steps, setup.reference_beams) not in grid:
        grid.append((setup.reference_gen_steps, setup.reference_beams))
    dense_mask_setting = (setup.reference_gen_steps, setup.reference_beams)
    for gen_steps, num_beams in grid:
        for dense_mask in mask_variants(setup) if (gen_steps, num_beams) == dense_mask_setting else (False,):
            model.dense_attention_mask = dense_mask
            with torch.no_grad(), model.decoding(gen_steps=gen_steps, num_beams=num_beams):
                timing = time_repeated(lambda: model.full_sort_predict(users), device, setup.warmup, setup.repeats)
            report.rows.append(decode_row(report, OURS, decode_setting(gen_steps, num_beams) + mask_suffix(dense_mask),
                                          fast_precision(device), model, timing,
                                          decode_flops_per_user(setup, gen_steps, num_beams, False)))
    model.dense_attention_mask = False
    measure_scorings(report, dataset, model, users)

    if setup.run_reference:
        gen_steps, num_beams = setup.reference_gen_steps, setup.reference_beams
        timing = time_repeated(
            lambda: reference_full_sort_predict(model, users, num_beams, gen_steps, setup.decode_batch_size),
            device, setup.warmup, setup.repeats)
        report.rows.append(decode_row(report, REFERENCE, decode_setting(gen_steps, num_beams), "fp32", model,
                                      timing, decode_flops_per_user(setup, gen_steps, num_beams, True)))

    if setup.official_dir is not None:
        def as_official(interaction: dict) -> dict:
            return official_batch(interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN],
                                  interaction[model.POS_ITEM_ID])

        measure_official(report, config, model.item_sid, [as_official(batch) for batch in batches],
                         as_official(users)["input_ids"])


def measure_scorings(report: SpeedReport, dataset, model: torch.nn.Module, users: dict) -> None:
    """One row per ``setup.scorings`` mode: full_sort_predict on the decoding users, as the test calls it."""
    setup, device = report.setup, report.device
    with_scorer = None
    for scoring in setup.scorings:
        scoring_model = model
        if scoring in SCORER_MODES:
            if with_scorer is None:
                with_scorer, _ = build_synthetic_model("LLaDARec", dataset, {**llada_overrides(setup),
                                                                             "item_scorer": "sid"}, device)
                with_scorer.eval()
            scoring_model = with_scorer
        with torch.no_grad(), scoring_model.decoding(scoring=scoring, gen_steps=setup.reference_gen_steps,
                                                     num_beams=setup.reference_beams):
            timing = time_repeated(lambda: scoring_model.full_sort_predict(users), device, setup.warmup,
                                   setup.repeats)
        report.rows.append(decode_row(report, OURS, scoring_setting(setup, scoring), fast_precision(device),
                                      scoring_model, timing, None))


def measure_llada_training(report: SpeedReport, dataset, mode: str,
                           batches_by_size: Mapping[int, list[dict]]) -> None:
    """Rows of LLaDARec's training step, as LLaDARecTrainer._train_epoch runs it (the LR schedule's per-step update
    is negligible), with compile mode ``mode`` on a fresh model, at every batch size of ``batches_by_size``."""
    setup, device = report.setup, report.device
    if mode != EAGER:
        torch._dynamo.reset()  # this mode compiles its own graphs, not another mode's cached ones
    model, config = build_synthetic_model("LLaDARec", dataset, with_compile_mode(llada_overrides(setup), mode),
                                          device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["learning_rate"],
                                  weight_decay=config["weight_decay"], fused=device.type == "cuda")

    def step(batch: dict) -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, config["precision"]):
            loss = model.calculate_loss(batch)
        loss.backward()
        clip_grad_norm_(model.parameters(), **config["clip_grad_norm"])
        optimizer.step()

    model.train()
    for batch_size, batches in batches_by_size.items():
        for dense_mask in mask_variants(setup) if batch_size == setup.train_batch_size else (False,):
            model.dense_attention_mask = dense_mask
            timing = time_training(step, batches, setup, device)
            report.rows.append(train_row(report, OURS, train_setting(setup, batch_size, mode, dense_mask),
                                         fast_precision(device), model, batch_size, timing,
                                         train_flops_per_sample(setup)))


def measure_official(report: SpeedReport, our_config: Mapping[str, Any], item_sid: torch.Tensor,
                     train_batches: list[dict], decode_input_ids: torch.Tensor) -> None:
    """The official code on our SIDs, training batches and users (already in its format), at the official loop's
    T and B, with its model built from our config (benchmarks/official_model.py)."""
    setup, device = report.setup, report.device
    gen_steps, num_beams = setup.reference_gen_steps, setup.reference_beams
    official = build_official_model(setup.official_dir, our_config, item_sid, gen_steps, num_beams, device)

    timing = time_training(official_train_step(official, setup.train_sequences), train_batches, setup, device)
    report.rows.append(train_row(report, OFFICIAL, f"batch {setup.train_batch_size}", "fp32", official.model,
                                 setup.train_batch_size, timing, train_flops_per_sample(setup, official=True)))

    timing = time_repeated(lambda: official_predict(official, decode_input_ids), device, setup.warmup,
                           setup.repeats)
    report.rows.append(decode_row(report, OFFICIAL, decode_setting(gen_steps, num_beams), "fp32", official.model,
                                  timing, decode_flops_per_user(setup, gen_steps, num_beams, True,
                                                                setup.official_vocab_size)))


def measure_sasrec(report: SpeedReport, variant: SASRecVariant, generator: torch.Generator) -> None:
    setup, device = report.setup, report.device
    dataset = synthetic_dataset(setup.n_items, setup.sid_length, setup.codebook_size, 1, generator)
    overrides = {"hidden_size": variant.hidden_size, "inner_size": variant.inner_size,
                 "n_layers": variant.n_layers, "n_heads": variant.n_heads,
                 "MAX_ITEM_LIST_LENGTH": setup.history_len}
    model, config = build_synthetic_model("SASRec", dataset, overrides, device)
    setting = f"d={variant.hidden_size}, layers={variant.n_layers}"

    # RecBole's Trainer: Adam, fp32, no gradient clipping by default.
    optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"])
    batches = [synthetic_batch(model, setup.sasrec_batch_size, setup.history_len, setup.n_items, generator, device)
               for _ in range(4)]

    def step(batch: dict) -> None:
        optimizer.zero_grad(set_to_none=True)
        model.calculate_loss(batch).backward()
        optimizer.step()

    model.train()
    timing = time_training(step, batches, setup, device)
    report.rows.append(train_row(report, variant.name, setting, "fp32", model, setup.sasrec_batch_size, timing,
                                 None))
    del optimizer, batches

    model.eval()
    users = synthetic_batch(model, setup.decode_users, setup.history_len, setup.n_items, generator, device)
    with torch.no_grad():
        timing = time_repeated(lambda: model.full_sort_predict(users), device, setup.warmup, setup.repeats)
    report.rows.append(decode_row(report, variant.name, setting, "fp32", model, timing, None))


def measure_matmul_rates(setup: SpeedSetup, device: torch.device) -> dict[str, float]:
    rates = {"fp32": matmul_tflops(device, torch.float32, setup.matmul_size)}
    if device.type == "cuda":
        rates["bf16"] = matmul_tflops(device, torch.bfloat16, setup.matmul_size)
    return rates


def run_speed(setup: SpeedSetup, device: torch.device, seed: int = 2024) -> SpeedReport:
    if setup.official_dir is not None:
        import_official_code(setup.official_dir)  # a wrong checkout fails here, before any timing
    torch.manual_seed(seed)
    if setup.compile or set(setup.compile_modes) - {EAGER}:
        # The decode grid alone has two shapes per (T, B) setting; past the limit, dynamo would silently fall back
        # to eager and the table would mix compiled and eager rows.
        torch._dynamo.config.recompile_limit = 64
    generator = torch.Generator().manual_seed(seed)
    report = SpeedReport(setup=setup, device=device, matmul_rates=measure_matmul_rates(setup, device))
    measure_llada(report, generator)
    if setup.run_sasrec:
        for variant in setup.sasrec_variants:
            measure_sasrec(report, variant, generator)
    return report


# ----- result files ------------------------------------------------------------------------------------------

CSV_HEADER = [f.name for f in dataclasses.fields(SpeedRow)]


def speedup(report: SpeedReport, baseline: str = REFERENCE, task: str = "decode") -> float | None:
    """Our throughput over ``baseline``'s, at the official loop's T and B (decode) or our training batch (train)."""
    setup = report.setup
    setting = (decode_setting(setup.reference_gen_steps, setup.reference_beams) if task == "decode"
               else train_setting(setup, setup.train_batch_size, own_compile_mode(setup)))
    ours, other = report.find(task, OURS, setting), report.find(task, baseline, setting)
    if ours is None or other is None:
        return None
    return ours.throughput / other.throughput


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.1f}%"


def _gib(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def markdown_sections(report: SpeedReport) -> list[tuple[str, str]]:
    setup = report.setup
    train_rows = [r for r in report.rows if r.task == "train"]
    decode_rows = [r for r in report.rows if r.task == "decode"]
    train_table = markdown_table(
        ["model", "setting", "precision", "params", "batch", "ms/step", "samples/s",
         f"epoch of {setup.train_sequences:,} (s)", "peak GiB", "GFLOP/sample", "TFLOP/s", "of matmul peak"],
        [[r.model, r.setting, r.precision, f"{r.n_parameters:,}", r.batch, format_number(1e3 * r.median_s),
          format_number(r.throughput), format_number(r.full_run_s), _gib(r.peak_memory_gib),
          format_number(r.gflop_per_unit), format_number(r.tflops), _pct(r.matmul_peak_share)]
         for r in train_rows])
    decode_table = markdown_table(
        ["model", "setting", "precision", "users/call", "s/call", "users/s", f"{setup.test_users:,} users (s)",
         "peak GiB", "GFLOP/user", "TFLOP/s", "of matmul peak"],
        [[r.model, r.setting, r.precision, r.batch, format_number(r.median_s), format_number(r.throughput),
          format_number(r.full_run_s), _gib(r.peak_memory_gib), format_number(r.gflop_per_unit),
          format_number(r.tflops), _pct(r.matmul_peak_share)]
         for r in decode_rows])
    ratio = speedup(report)
    setting = decode_setting(setup.reference_gen_steps, setup.reference_beams)
    summary = (f"**Speed-up of our decoding over the official-style loop at {setting}, same users, same run: "
               f"{ratio:.2f}x**" if ratio is not None else "The official-style loop was not measured.")
    decode_ratio, train_ratio = speedup(report, OFFICIAL), speedup(report, OFFICIAL, "train")
    if decode_ratio is not None:
        own_setting = train_setting(setup, setup.train_batch_size, own_compile_mode(setup))
        training = "" if train_ratio is None else f"training {train_ratio:.2f}x at {own_setting}, same batches; "
        summary += (f"\n\n**Over the official code itself: decoding {decode_ratio:.2f}x at {setting}, same users; "
                    f"{training}same run.**")
    rates = ", ".join(f"{precision} {format_number(rate)} TFLOP/s" for precision, rate in report.matmul_rates.items())
    notes = "\n".join([
        f"- Setup: {setup.describe()}.",
        f"- Measured dense matmul rate ({setup.matmul_size}^3): {rates}; 'of matmul peak' divides the achieved "
        "TFLOP/s by the rate of the row's precision. fp32 matmuls may use TF32: "
        f"{torch.backends.cuda.matmul.allow_tf32}.",
        "- FLOPs are analytic matmul FLOPs (per token and layer 2 x weights + 4 N d for attention, plus the output "
        "head where it is computed; backward = 2 x forward). Ours decodes 1 + (T-1) B sequences per user (the "
        "first step has a single beam) with the last layer's queries on the M target positions and the head on "
        "their own codes only; the official "
        "loop decodes T B sequences with the full-vocabulary head at all N positions. SASRec rows have no FLOP "
        "count.",
        "- The official loop (benchmarks/reference_decode.py) runs in fp32, forwards all B beams at every step, "
        "ranks with softmax over the full vocabulary and restricts codes per position; its timing includes the "
        "same SID-to-item mapping and full-sort scores as ours.",
        "- Training of LLaDARec: calculate_loss (both corruptions in one forward) + backward + gradient clipping + "
        "AdamW (fused on CUDA), as LLaDARecTrainer; SASRec: CE loss + backward + Adam in fp32, as RecBole's Trainer.",
        f"- LLaDARec compiled (`compile: True`, torch.compile with dynamic=False; compilation falls in the "
        f"warm-up): {f'yes, mode {setup.compile_mode}' if setup.compile else 'no'}"
        + (" (decoding; training rows name their compile mode, eager = compile: False)" if setup.compile_modes else "")
        + ". Training batches are built once on the device and cycled: the timed step excludes the trainer's "
        "host-to-device copy of each batch but includes tokenising it (calculate_loss). Attention mask: "
        "key-padding [B, 1, 1, N] (bidirectional attention), rows marked 'dense mask' use the dense [B, 1, N, N] "
        "mask instead.",
        *official_notes(setup),
        *([f"- Rows `scoring=...`: full_sort_predict with that `scoring` (the searching modes at "
           f"{decode_setting(setup.reference_gen_steps, setup.reference_beams)}); no FLOP count. The modes that "
           "read the item scorer ran on a model with an untrained one (their time does not depend on its weights)."]
          if setup.scorings else []),
    ])
    return [("", summary), ("Training", train_table), ("Decoding (full-sort recommendation)", decode_table),
            ("Notes", notes)]


def official_notes(setup: SpeedSetup) -> list[str]:
    if setup.official_dir is None:
        return []
    return [
        f"- '{OFFICIAL}' rows: the official code, TengShi-RUC/LLaDA-Rec {OFFICIAL_COMMIT}, imported from "
        f"{setup.official_dir} (run-time patches of benchmarks/official_launcher.py, no file edited). Its LLaDARec "
        "class (genrec/models/LLaDARec/model.py), built with its LLaDARecTokenizer (MultiHeadVQVAE, loading the "
        "same random SIDs as ours) and a genrec AbstractDataset of the same items, from its config files with our "
        f"settings mapped as official_side_by_side.py does, `gen_steps`={setup.reference_gen_steps}, "
        f"`num_beams`={setup.reference_beams}; random weights of its constructor, fp32, accelerate without mixed "
        "precision.",
        "- Official decoding: `LLaDARec.generate` (its `beam_search`) on the same users, in batches of its "
        f"`test_batch_size` = {setup.decode_batch_size} users asking for max(topk) SIDs each, under no_grad, as its "
        "Trainer.evaluate calls it; its evaluator's comparison of the SIDs with the targets is not timed (ours "
        "includes the mapping to items and full-sort scores). Official training: the body of its Trainer.fit batch "
        "loop on the same batches (left-padded, as its tokenizer writes them): zero_grad, forward (both masked "
        "losses), accelerator.backward, clip_grad_norm_, AdamW step, cosine schedule step, and its three per-step "
        "`.item()` reads of the losses. Its vocabulary has one token more than ours (EOS), counted in its FLOPs; "
        "its training computes the full-vocabulary head at all N positions of both corrupted sequences.",
    ]


def write_speed(report: SpeedReport, out_dir: Path, slug: str) -> tuple[Path, Path]:
    md_path, csv_path = out_dir / f"speed_{slug}.md", out_dir / f"speed_{slug}.csv"
    write_csv(csv_path, CSV_HEADER, [[getattr(r, name) for name in CSV_HEADER] for r in report.rows])
    write_markdown(md_path, f"Speed of LLaDARec on {slug}", markdown_sections(report), provenance())
    return md_path, csv_path


def int_list(text: str) -> tuple[int, ...]:
    return tuple(int(value) for value in text.split(","))


def scoring_list(text: str) -> tuple[str, ...]:
    modes = tuple(mode for mode in text.split(",") if mode)
    unknown = [mode for mode in modes if mode not in SCORING_MODES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown scoring modes {unknown}; known: {', '.join(SCORING_MODES)}")
    return modes


def mode_list(text: str) -> tuple[str, ...]:
    modes = tuple(text.split(","))
    unknown = [mode for mode in modes if mode not in (EAGER, *COMPILE_MODES)]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown compile modes {unknown}; expected some of {EAGER}, "
                                         f"{', '.join(COMPILE_MODES)}")
    return modes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="shrunk sizes: a quick CPU check of the script")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--out_dir", type=Path, default=RESULTS_DIR, help="where the .md and .csv go")
    parser.add_argument("--decode_users", type=int, default=None, help="users per full_sort_predict call")
    parser.add_argument("--decode_batch_size", type=int, default=None, help="users per decoding forward")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement")
    parser.add_argument("--train_steps", type=int, default=None, help="optimizer steps per timed repeat")
    parser.add_argument("--no_reference", action="store_true", help="skip the official-style decode loop")
    parser.add_argument("--no_sasrec", action="store_true", help="skip the SASRec reference point")
    parser.add_argument("--compare_dense_mask", action="store_true",
                        help="also time LLaDARec's training and its decoding at the official loop's T and B with the "
                             "dense attention mask")
    parser.add_argument("--compile", action="store_true", help="LLaDARec with compile: True (torch.compile)")
    parser.add_argument("--compile_mode", choices=COMPILE_MODES, default="default",
                        help="its compile_mode (torch.compile's mode), with --compile")
    parser.add_argument("--compile_modes", type=mode_list, default=None,
                        help=f"training rows for each of these modes, each on a fresh model, e.g. {EAGER},default,"
                             f"reduce-overhead ({EAGER}: not compiled; else one of {', '.join(COMPILE_MODES)})")
    parser.add_argument("--train_batch_grid", type=int_list, default=None,
                        help="training rows for each of these batch sizes, e.g. 1024,2048 (default: 1024)")
    parser.add_argument("--label", default=None, help="suffix of the result files: speed_<hardware>-<label>")
    parser.add_argument("--gen_steps_grid", type=int_list, default=None, help="decoding T values, e.g. 4 or 1,2,4")
    parser.add_argument("--beams_grid", type=int_list, default=None, help="decoding B values, e.g. 50 or 10,20,50")
    parser.add_argument("--scorings", type=scoring_list, default=None,
                        help="also time full_sort_predict with these scoring modes, e.g. beam,marginal,fused")
    parser.add_argument("--official_dir", type=Path, default=None,
                        help=f"a checkout of the official code (TengShi-RUC/LLaDA-Rec {OFFICIAL_COMMIT}) to time "
                             "beside ours in the same run")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.official_dir is not None:
        try:
            args.official_dir = check_official_checkout(args.official_dir)
        except ValueError as error:
            parser.error(str(error))  # before building or timing anything
    setup = SMALL if args.small else SpeedSetup()
    changes = {"decode_users": args.decode_users, "decode_batch_size": args.decode_batch_size,
               "repeats": args.repeats, "train_steps": args.train_steps, "gen_steps_grid": args.gen_steps_grid,
               "beams_grid": args.beams_grid, "compile_modes": args.compile_modes,
               "train_batch_grid": args.train_batch_grid, "scorings": args.scorings}
    setup = dataclasses.replace(setup, **{k: v for k, v in changes.items() if v is not None},
                                run_reference=not args.no_reference, run_sasrec=not args.no_sasrec,
                                compare_dense_mask=args.compare_dense_mask, compile=args.compile,
                                compile_mode=args.compile_mode,
                                official_dir=args.official_dir)
    device = pick_device(args.device)
    report = run_speed(setup, device)
    slug = hardware_slug(device) + ("-small" if args.small else "") + (f"-{args.label}" if args.label else "")
    md_path, _ = write_speed(report, args.out_dir, slug)
    print(md_path.read_text())
    print(f"written to {md_path.with_suffix('')}.{{md,csv}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
