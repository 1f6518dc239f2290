"""Result tables (markdown + CSV) stamped with the command, commit, hardware and date that produced them."""

from __future__ import annotations

import csv
import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch


@dataclass
class ComparisonRow:
    model: str
    seed: int
    test_metrics: dict[str, float]
    n_parameters: int
    train_seconds: float
    test_seconds: float


# What the benchmarks write and record: changed files there say nothing about the code that produced a result.
RESULT_PATHS = ("benchmarks/results", "benchmarks/history")


def git_commit(checkout: Path = Path(__file__).resolve().parent) -> str:
    """The commit of the checkout holding ``checkout`` (this package's), ``+dirty`` when tracked files outside
    RESULT_PATHS differ from it (regenerating one result table must not mark the next as made by modified code);
    ``RECBOLE_LLADA_COMMIT`` names it where the code runs from a copy without .git."""
    if os.environ.get("RECBOLE_LLADA_COMMIT"):
        return os.environ["RECBOLE_LLADA_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=checkout,
                             check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    code = [":(top)", *(f":(top,exclude){path}" for path in RESULT_PATHS)]
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *code], capture_output=True,
                           text=True, cwd=checkout).stdout.strip()
    return out.stdout.strip() + ("+dirty" if dirty else "")


def hardware() -> str:
    if torch.cuda.is_available():
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        return f"{torch.cuda.device_count()}x {', '.join(names)}"
    return f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def provenance() -> dict[str, str]:
    return {
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "commit": git_commit(),
        "hardware": hardware(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "torch": torch.__version__,
    }


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def provenance_markdown(info: dict[str, str]) -> str:
    return "\n".join(f"- {key}: `{value}`" for key, value in info.items())


def comparison_table(rows: Sequence[ComparisonRow]) -> tuple[list[str], list[list[object]]]:
    metric_names = list(dict.fromkeys(name for row in rows for name in row.test_metrics))
    header = ["model", *metric_names, "params", "train s", "test s", "seed"]
    body = [
        [row.model, *(f"{row.test_metrics.get(m, float('nan')):.4f}" for m in metric_names),
         f"{row.n_parameters:,}", f"{row.train_seconds:.1f}", f"{row.test_seconds:.1f}", row.seed]
        for row in rows
    ]
    return header, body


def write_comparison(rows: Sequence[ComparisonRow], dataset: str, results_dir: Path) -> Path:
    """Write ``<results_dir>/<dataset>-<UTC time>/comparison.{md,csv}``, print it, and return the .md path."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    out_dir = Path(results_dir) / f"{dataset}-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    header, body = comparison_table(rows)
    info = provenance()
    table = markdown_table(header, body)
    md = f"# Test metrics on {dataset}\n\n{table}\n\n{provenance_markdown(info)}\n"
    (out_dir / "comparison.md").write_text(md)
    with open(out_dir / "comparison.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(body)
    print(f"\n{table}\n\nwritten to {out_dir}/comparison.{{md,csv}}")
    return out_dir / "comparison.md"
