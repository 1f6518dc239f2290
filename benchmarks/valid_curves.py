"""Validation curves from RecBole training logs: one line per run, to choose a schedule from what validation saw.

    python benchmarks/valid_curves.py --name=Beauty_schedules LABEL=path/to/run.log [LABEL=other.log ...]

Reads RecBole's ``epoch N evaluating [..., valid_score: X]`` lines (and any ``epoch N valid <scoring>: ...`` lines
that ``LLaDARecTrainer`` writes when ``valid_extra_scorings`` is set) of the last training in each log (a run on
collaborative SIDs first logs the SASRec trained for them), writes
``<results_dir>/valid_curves_<name>.{md,csv,png}``: per run, the epoch of the best score and the best score of each
curve, and the curves themselves (the PNG needs matplotlib).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS_DIR, save_figure, write_csv, write_markdown
from recbole_llada.training.results import markdown_table, provenance

SELECTION = "selection"  # the curve RecBole selects on (valid_metric under valid_scoring)
_VALID_SCORE = re.compile(r"epoch (\d+) evaluating \[.*valid_score: ([0-9.]+)\]")
_EXTRA = re.compile(r"epoch (\d+) valid (\S+): ([0-9.]+)")
_FIRST_EPOCH = re.compile(r"epoch 0 training \[")


def read_curves(log: str) -> dict[str, dict[int, float]]:
    """{curve name: {epoch: score}} of the last training in one log's text; SELECTION is RecBole's valid_score.
    Only the last training counts: a log with collaborative SIDs first holds the SASRec trained for them."""
    starts = [match.start() for match in _FIRST_EPOCH.finditer(log)]
    log = log[starts[-1]:] if starts else log
    curves: dict[str, dict[int, float]] = {}
    for epoch, score in _VALID_SCORE.findall(log):
        curves.setdefault(SELECTION, {})[int(epoch)] = float(score)
    for epoch, name, score in _EXTRA.findall(log):
        curves.setdefault(name, {})[int(epoch)] = float(score)
    return curves


def best(curve: dict[int, float]) -> tuple[int, float]:
    """(epoch, score) of the first maximum, as RecBole's early stopping keeps the first best."""
    epoch = max(curve, key=lambda e: (curve[e], -e))
    return epoch, curve[epoch]


def plot(runs: dict[str, dict[str, dict[int, float]]], path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for label, curves in runs.items():
        for name, curve in curves.items():
            epochs = sorted(curve)
            axis.plot(epochs, [curve[e] for e in epochs], marker=".",
                      label=label if name == SELECTION else f"{label}: {name}")
    axis.set_xlabel("epoch")
    axis.set_ylabel("validation score")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    save_figure(figure, path)
    return True


def write_curves(runs: dict[str, dict[str, dict[int, float]]], name: str, results_dir: Path) -> Path:
    """valid_curves_<name>.{md,csv,png} of {run label: {curve: {epoch: score}}}; returns the .md path."""
    summary, csv_rows = [], []
    for label, curves in runs.items():
        for curve_name, curve in curves.items():
            epoch, score = best(curve)
            summary.append([label, curve_name, len(curve), max(curve), epoch, f"{score:.4f}"])
            csv_rows += [[label, curve_name, e, s] for e, s in sorted(curve.items())]
    base = results_dir / f"valid_curves_{name}"
    results_dir.mkdir(parents=True, exist_ok=True)
    write_csv(base.with_suffix(".csv"), ["run", "curve", "epoch", "score"], csv_rows)
    has_png = plot(runs, base.with_suffix(".png"), name.replace("_", " "))
    table = markdown_table(["run", "curve", "validations", "last epoch", "best epoch", "best score"], summary)
    body = table + (f"\n\n![validation curves]({base.with_suffix('.png').name})" if has_png else "")
    write_markdown(base.with_suffix(".md"), f"Validation curves: {name}", [("", body)], provenance())
    return base.with_suffix(".md")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="names the output files: valid_curves_<name>.*")
    parser.add_argument("--results_dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("runs", nargs="+", help="LABEL=LOG_FILE")
    args = parser.parse_args(argv)
    runs: dict[str, dict[str, dict[int, float]]] = {}
    for spec in args.runs:
        label, _, log = spec.partition("=")
        if not log:
            parser.error(f"expected LABEL=LOG_FILE, got {spec!r}")
        curves = read_curves(Path(log).read_text(encoding="utf-8", errors="replace"))
        if not curves:
            parser.error(f"{log} has no validation lines")
        runs[label] = curves
    print(f"wrote {write_curves(runs, args.name, args.results_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
