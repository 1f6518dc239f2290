"""One GPU against several: test metrics and per-epoch times of two runs of the same model, config and seed.

    python benchmarks/multi_gpu.py --dataset=Beauty --results_dir=benchmarks/results \\
        --single=LLaDARec --multi="LLaDARec (2 GPUs)" --single_log=LOG1 --multi_log=LOG2

The two runs come from ``<dataset>_runs.csv`` (written by quality.py; the multi-GPU run by ``quality.py --nproc=N``,
as ``benchmarks/gpu_quality.sh`` does with ``MULTI_GPU_SEEDS``) and must share their seed. Epoch times are read from
the RecBole logs of the two runs (``epoch N training [time: X s`` / ``evaluating [time: X s``). The one-GPU log may
belong to another run of the same model, data and batch size (``--single_log_label``): one that ran alone on its GPU
when the metric twin did not, say. Writes ``multi_gpu_<dataset>.{md,csv}``: the metrics side by side with their
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


def median_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float | None:
    return statistics.median(numerator) / statistics.median(denominator) if numerator and denominator else None


def find_run(rows: Sequence[dict[str, str]], label: str, seed: str | None) -> dict[str, str]:
    matches = [row for row in rows if row["label"] == label and (seed is None or row["seed"] == seed)]
    if not matches:
        raise SystemExit(f"no run labelled {label!r}" + (f" with seed {seed}" if seed else "") + " in the runs file")
    return matches[-1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--results_dir", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--single", required=True, help="label of the one-GPU run")
    parser.add_argument("--multi", required=True, help="label of the multi-GPU run")
    parser.add_argument("--single_log", type=Path, required=True)
    parser.add_argument("--multi_log", type=Path, required=True)
    parser.add_argument("--single_log_label", default=None,
                        help="label of the one-GPU run that --single_log belongs to [--single]")
    parser.add_argument("--note", default="", help="free text for the notes (e.g. what else ran on the machine)")
    args = parser.parse_args(argv)

    rows = read_runs(runs_path(args.results_dir, args.dataset))
    multi = find_run(rows, args.multi, None)
    single = find_run(rows, args.single, multi["seed"])
    timed_label = args.single_log_label or args.single
    timed_single = find_run(rows, timed_label, multi["seed"])
    runs = [(timed_label, timed_single, epoch_times(args.single_log.read_text())),
            (args.multi, multi, epoch_times(args.multi_log.read_text()))]

    single_seeds = next(summary for summary in summarise(rows) if summary.label == args.single)
    metric_rows = [[METRIC_TITLES[m], single[m], multi[m], f"{float(multi[m]) - float(single[m]):+.4f}",
                    "–" if single_seeds.std.get(m) is None else format_number(single_seeds.std[m])] for m in METRICS]
    timing_rows, csv_rows = [], []
    for label, run, times in runs:
        train_median = statistics.median(times["training"]) if times["training"] else None
        valid_median = statistics.median(times["evaluating"]) if times["evaluating"] else None
        timing_rows.append([label, run["hardware"], len(times["training"]), format_number(train_median),
                            format_number(valid_median), format_number(float(run["train_seconds"])),
                            format_number(float(run["test_seconds"]))])
        csv_rows.append([label, run["seed"], run["hardware"], len(times["training"]), train_median, valid_median,
                         run["train_seconds"], run["test_seconds"], *(run[m] for m in METRICS)])
    speedups = [median_ratio(runs[0][2][phase], runs[1][2][phase]) for phase in ("training", "evaluating")]

    out = args.results_dir / f"multi_gpu_{args.dataset}"
    write_csv(out.with_suffix(".csv"), ["label", "seed", "hardware", "epochs", "train_s_per_epoch_median",
                                        "valid_s_per_epoch_median", "train_seconds", "test_seconds", *METRICS],
              csv_rows)
    notes = [f"- seed {multi['seed']} for both runs; same config (see the `overrides` and `command` columns of "
             f"`{runs_path(args.results_dir, args.dataset).name}`).",
             f"- one-GPU seed std: the sample standard deviation over the {len(single_seeds.seeds)} seeds of "
             f"`{args.single}`, the seed noise the difference is to be read against.",
             f"- median speed-up per epoch, one GPU / several: training {format_number(speedups[0])}x, "
             f"validation {format_number(speedups[1])}x.",
             "- epoch times are RecBole's own log lines; 'train s' and 'test s' are whole-run wall times."]
    if args.note:
        notes.append(f"- {args.note}")
    write_markdown(out.with_suffix(".md"), f"{args.multi} against {args.single} on {args.dataset}", [
        ("Test metrics", markdown_table(["metric", args.single, args.multi, "difference", "one-GPU seed std"],
                                        metric_rows)),
        ("Time", markdown_table(["run", "hardware", "epochs", "train s / epoch (median)",
                                 "valid s / epoch (median)", "train s", "test s"], timing_rows)),
        ("Notes", "\n".join(notes)),
    ], provenance())
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
