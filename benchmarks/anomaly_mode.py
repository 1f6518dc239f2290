"""What autograd anomaly detection costs a training step: RecBole's SINE module switches it on for every run.

    python benchmarks/anomaly_mode.py [--scale=small|scientific] [--device=cuda] [--steps=20]

RecBole 1.2.1 imports all sequential models whenever one is looked up, and ``sine.py`` calls
``torch.autograd.set_detect_anomaly(True)`` at import time; ``recbole_llada.compat`` switches it off again. This
measures one training step (forward, backward, optimiser step) of SASRec (RecBole's defaults, CE over all items) and
LLaDARec with the mode on and off, on synthetic data, after warm-up steps. ``small`` fits a 2-core CPU;
``scientific`` is the paper's Scientific scale (25,848 items, LLaDARec batch 1024, SASRec batch 256).
Writes ``anomaly_mode_<hardware>.{md,csv}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks.common import (RESULTS_DIR, build_synthetic_model, format_number, hardware_slug, pick_device,
                               synchronize, synthetic_batch, synthetic_dataset, write_csv, write_markdown)
from recbole_llada.training.results import markdown_table, provenance

SCALES = {  # n_items, history, {model: (batch, overrides)}
    "small": (2000, 20, {"SASRec": (256, {}),
                         "LLaDARec": (256, dict(hidden_size=64, n_layers=2, n_heads=2, sid_codebook_size=64))}),
    "scientific": (25848, 20, {"SASRec": (256, {}), "LLaDARec": (1024, {})}),
}


def step_seconds(model: torch.nn.Module, batch: dict, device: torch.device, steps: int, anomaly: bool) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    with torch.autograd.set_detect_anomaly(anomaly):
        for warmup_or_timed in (2, steps):
            synchronize(device)
            start = time.perf_counter()
            for _ in range(warmup_or_timed):
                optimizer.zero_grad(set_to_none=True)
                model.calculate_loss(batch).backward()
                optimizer.step()
            synchronize(device)
    return (time.perf_counter() - start) / steps


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument("--device", default=None)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out_dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    generator = torch.Generator().manual_seed(0)
    n_items, history, models = SCALES[args.scale]
    rows = []
    for name, (batch_size, overrides) in models.items():
        codebook_size = overrides.get("sid_codebook_size", 256)
        dataset = synthetic_dataset(n_items, 4, codebook_size, batch_size, generator)
        model, _ = build_synthetic_model(name, dataset, {"MAX_ITEM_LIST_LENGTH": history, **overrides}, device)
        model.train()
        batch = synthetic_batch(model, batch_size, history, n_items, generator, device)
        off = step_seconds(model, batch, device, args.steps, anomaly=False)
        on = step_seconds(model, batch, device, args.steps, anomaly=True)
        rows.append([name, batch_size, off, on, on / off])
        print(f"{name}: {off * 1e3:.1f} ms per step, {on * 1e3:.1f} ms with anomaly detection ({on / off:.2f}x)")

    out = args.out_dir / f"anomaly_mode_{hardware_slug(device)}"
    write_csv(out.with_suffix(".csv"), ["model", "batch", "step_s_anomaly_off", "step_s_anomaly_on", "slowdown"],
              rows)
    table = markdown_table(["model", "batch", "ms / step, anomaly off", "ms / step, anomaly on", "slow-down"],
                           [[m, b, format_number(off * 1e3), format_number(on * 1e3), f"{ratio:.2f}x"]
                            for m, b, off, on, ratio in rows])
    write_markdown(out.with_suffix(".md"), "Training step with and without autograd anomaly detection", [
        ("", table),
        ("Notes", f"- scale `{args.scale}`: {n_items:,} items, history {history}; synthetic data; mean of "
                  f"{args.steps} steps after 2 warm-up steps, forward + backward + AdamW step.\n"
                  "- Every RecBole run had anomaly detection on until `recbole_llada.compat` undid SINE's "
                  "import-time switch (see compat.py, workaround 5)."),
    ], provenance())
    print(f"written to {out}.{{md,csv}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
