"""One GPU against several: test metrics and per-epoch times of two runs of the same model, config and seed.

    python benchmarks/multi_gpu.py --dataset=Beauty --results_dir=benchmarks/results \\
        --single=LLaDARec --multi="LLaDARec (2 GPUs)" [--single_log=LOG1 --multi_log=LOG2]

The two runs come from ``<dataset>_runs.csv`` (written by quality.py; the multi-GPU run by a run of ``nproc: 2`` in
an experiment file, or ``quality.py --nproc=N``) and must share their seed. Median epoch times come from the
rows (quality.py records LLaDARec's), or from the runs' RecBole logs given as ``--single_log`` / ``--multi_log``
(``epoch N training [time: X s`` / ``evaluating [time: X s``). The one-GPU times may belong to another run of the
same model, data and batch size (``--single_log_label``): one that ran alone on its GPU when the metric twin did
not, say. An experiment file with a ``multi_gpu: {single: LABEL, multi: LABEL}`` entry has
``quality.py --experiment`` write this comparison after its runs. Writes ``multi_gpu_<dataset>.{md,csv}``: the metrics side by side with their
difference and the one-GPU seed spread, and the median epoch times with the speed-up they imply.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import format_number, write_csv, write_markdown
from benchmarks.quality import METRIC_TITLES, METRICS, read_runs, runs_path, summarise
from recbole_llada.training.results import markdown_table, provenance

_EPOCH_TIME = re.compile(r"epoch (\d+) (training|evaluating) \[time: ([0-9.]+)s")


def epoch_times(log_text: str) -> dict[str, list[float]]:
    """Seconds per epoch of training and of validation, in epoch order, from a RecBole log."""
    times: dict[str, list[float]] = {"training": [], "evaluating": []}
    for _, phase, seconds in _EPOCH_TIME.findall(log_text):
        if float(seconds) > 0:  # 0.00 s: the epoch LLaDARecTrainer skips once train_time_budget is spent
            times[phase].append(float(seconds))
    return times


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator and denominator else None


def find_run(rows: Sequence[dict[str, str]], label: str, seed: str | None) -> dict[str, str]:
    matches = [row for row in rows if row["label"] == label and (seed is None or row["seed"] == seed)]
    if not matches:
        raise LookupError(f"no run labelled {label!r}" + (f" with seed {seed}" if seed else "") + " in the runs file")
    return matches[-1]


def epoch_medians(run: dict[str, str], log: Path | None) -> tuple[int | None, float | None, float | None]:
    """(epochs trained, median s per training epoch, median s per validation) of a run: from its RecBole ``log``
    when given, else from its row (quality.py records LLaDARec's medians)."""
    if log is not None:
        times = epoch_times(log.read_text())
        return (len(times["training"]),
                *(statistics.median(times[phase]) if times[phase] else None for phase in ("training", "evaluating")))
    if not run.get("train_s_per_epoch"):
        raise LookupError(f"the run {run['label']!r} (seed {run['seed']}) has no epoch times in its row: give its "
                          "RecBole log with --single_log / --multi_log")
    return (int(run["epochs"]) if run.get("epochs") else None, float(run["train_s_per_epoch"]),
            float(run["valid_s_per_epoch"]) if run.get("valid_s_per_epoch") else None)


def compare(dataset: str, results_dir: Path, single_label: str, multi_label: str, single_log: Path | None = None,
            multi_log: Path | None = None, single_log_label: str | None = None, note: str = "") -> Path:
    """Write ``multi_gpu_<dataset>.{md,csv}`` for the latest ``multi_label`` run and the ``single_label`` run of its
    seed; epoch times from the given logs, else from the runs' rows. LookupError if a run or its times are missing."""
    rows = read_runs(runs_path(results_dir, dataset))
    multi = find_run(rows, multi_label, None)
    single = find_run(rows, single_label, multi["seed"])
    timed_label = single_log_label or single_label
    timed_single = find_run(rows, timed_label, multi["seed"])
    runs = [(timed_label, timed_single, epoch_medians(timed_single, single_log)),
            (multi_label, multi, epoch_medians(multi, multi_log))]

    single_seeds = next(summary for summary in summarise(rows) if summary.label == single_label)
    metric_rows = [[METRIC_TITLES[m], single[m], multi[m], f"{float(multi[m]) - float(single[m]):+.4f}",
                    "–" if single_seeds.std.get(m) is None else format_number(single_seeds.std[m])] for m in METRICS]
    timing_rows, csv_rows = [], []
    for label, run, (epochs, train_median, valid_median) in runs:
        timing_rows.append([label, run["hardware"], epochs, format_number(train_median),
                            format_number(valid_median), format_number(float(run["train_seconds"])),
                            format_number(float(run["test_seconds"]))])
        csv_rows.append([label, run["seed"], run["hardware"], epochs, train_median, valid_median,
                         run["train_seconds"], run["test_seconds"], *(run[m] for m in METRICS)])
    speedups = [ratio(runs[0][2][i], runs[1][2][i]) for i in (1, 2)]

    out = results_dir / f"multi_gpu_{dataset}"
    write_csv(out.with_suffix(".csv"), ["label", "seed", "hardware", "epochs", "train_s_per_epoch_median",
                                        "valid_s_per_epoch_median", "train_seconds", "test_seconds", *METRICS],
              csv_rows)
    notes = [f"- seed {multi['seed']} for both runs; same config (see the `overrides` and `command` columns of "
             f"`{runs_path(results_dir, dataset).name}`).",
             f"- one-GPU seed std: the sample standard deviation over the {len(single_seeds.seeds)} seeds of "
             f"`{single_label}`, the seed noise the difference is to be read against.",
             f"- median speed-up per epoch, one GPU / several: training {format_number(speedups[0])}x, "
             f"validation {format_number(speedups[1])}x.",
             "- epoch times: medians over the run's epochs (from its RecBole log lines, or as quality.py recorded "
             "them); 'train s' and 'test s' are whole-run wall times."]
    if note:
        notes.append(f"- {note}")
    write_markdown(out.with_suffix(".md"), f"{multi_label} against {single_label} on {dataset}", [
        ("Test metrics", markdown_table(["metric", single_label, multi_label, "difference", "one-GPU seed std"],
                                        metric_rows)),
        ("Time", markdown_table(["run", "hardware", "epochs", "train s / epoch (median)",
                                 "valid s / epoch (median)", "train s", "test s"], timing_rows)),
        ("Notes", "\n".join(notes)),
    ], provenance())
    return out.with_suffix(".md")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--results_dir", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--single", required=True, help="label of the one-GPU run")
    parser.add_argument("--multi", required=True, help="label of the multi-GPU run")
    parser.add_argument("--single_log", type=Path, default=None, help="its RecBole log [the epoch times its row records]")
    parser.add_argument("--multi_log", type=Path, default=None, help="its RecBole log [the epoch times its row records]")
    parser.add_argument("--single_log_label", default=None,
                        help="label of the one-GPU run that --single_log belongs to [--single]")
    parser.add_argument("--note", default="", help="free text for the notes (e.g. what else ran on the machine)")
    args = parser.parse_args(argv)
    try:
        md_path = compare(args.dataset, args.results_dir, args.single, args.multi, args.single_log, args.multi_log,
                          args.single_log_label, args.note)
    except LookupError as error:
        parser.error(str(error))
    print(md_path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
