"""Every catalog scoring mode against the best baseline, across datasets: issue 13's bar in one table.

    python benchmarks/catalog_scoring.py [--datasets=Beauty,Scientific,ml-100k] [--min_seeds=3]
        [--hardware=H200] [--results_dir=DIR]

Reads what quality.py and ablations.py wrote; trains and decodes nothing. Per dataset:
- the baselines (BASELINES, from ``<dataset>_runs.csv``): the best mean on Recall@10 and, separately, on NDCG@10;
  the target is that best +5%;
- every LLaDARec label of ``<dataset>_runs.csv`` (each scored as its config says: beam search unless it sets
  ``scoring``);
- every mode of each decoding study in ``ablation_decoding_<dataset>.csv`` whose rows ran on ``--hardware`` with at
  least ``--min_seeds`` seeds (one study = one checkpoints label and settings, one checkpoint per seed).
A row clears the bar when it has at least ``--min_seeds`` seeds and, on both metrics, its mean reaches the target and
its gain over the best baseline is larger than the seed spread (the larger sample std of the two sides).

Writes ``catalog_scoring.{md,csv,png}``: the table, and NDCG@10 against decode milliseconds per test user, one panel
per dataset, the best baseline and the target drawn across it. ``catalog_scoring_verdict.md``, where it exists,
becomes the table's "Verdict" section.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import ablations, quality
from benchmarks.common import RESULTS_DIR, format_number, save_figure, write_csv, write_markdown
from recbole_llada.training.results import markdown_table, provenance

BASELINES = ("SASRec", "FMLPRec", "GRU4Rec", "BERT4Rec")  # RecBole's default sizes, the shared protocol
DATASETS = ("Beauty", "Scientific", "ml-100k")
BAR_METRICS = ("recall@10", "ndcg@10")
MARGIN = 0.05  # the bar: the best baseline +5%


@dataclass(frozen=True)
class Result:
    """One row of the table: a mean over seeds of one configuration (and decoding mode)."""
    dataset: str
    source: str  # "baseline", "run" (a quality.py label) or the decoding study's checkpoints label
    name: str  # the model label, or the scoring mode
    seeds: int
    mean: Mapping[str, float]
    std: Mapping[str, float | None]
    decode_ms: float | None = None  # per test user, decoding study rows only


@dataclass(frozen=True)
class Bar:
    """The best baseline on each bar metric, and the target (+MARGIN)."""
    best: Mapping[str, Result]
    min_seeds: int  # fewer seeds cannot clear the bar, whatever their mean

    def target(self, metric: str) -> float:
        return (1 + MARGIN) * self.best[metric].mean[metric]

    def versus_target(self, result: Result, metric: str) -> float:
        """Relative difference to the target: +0.02 = 2% above it, -0.10 = 10% short."""
        return result.mean[metric] / self.target(metric) - 1

    def cleared(self, result: Result) -> bool:
        """At or above the target on both metrics, each gain over the best baseline larger than the seed spread, on
        at least ``min_seeds`` seeds."""
        if result.seeds < self.min_seeds:
            return False
        for metric in BAR_METRICS:
            best = self.best[metric]
            spread = max((s for s in (result.std.get(metric), best.std.get(metric)) if s is not None), default=0.0)
            if result.mean[metric] < self.target(metric) or result.mean[metric] - best.mean[metric] <= spread:
                return False
        return True


def run_results(dataset: str, results_dir: Path) -> list[Result]:
    """The baselines and every LLaDARec label of the dataset's runs file, latest run per seed."""
    rows = quality.read_runs(quality.runs_path(results_dir, dataset))
    results = []
    for summary in quality.summarise(rows):
        if summary.source != "ours" or not all(m in summary.mean for m in BAR_METRICS):
            continue
        is_baseline = summary.label in BASELINES
        if is_baseline or any(row["label"] == summary.label and row["model"] == "LLaDARec" for row in rows):
            results.append(Result(dataset, "baseline" if is_baseline else "run", summary.label, len(summary.seeds),
                                  summary.mean, summary.std))
    return results


def study_name(settings: str) -> str:
    return json.loads(settings).get("checkpoints_label") or f"settings {settings}"


def decoding_results(dataset: str, results_dir: Path, min_seeds: int, hardware: str) -> list[Result]:
    """Each mode of every decoding study with ``min_seeds`` seeds on ``hardware``, in the study file's order."""
    study = ablations.load_studies()["decoding"]
    rows = [row for row in ablations.read_rows(ablations.rows_path(results_dir, "decoding", dataset))
            if hardware.lower() in row["hardware"].lower()]
    results = []
    for settings in dict.fromkeys(row["settings"] for row in rows):
        for summary in ablations.summarise(study, rows, settings):
            if len(summary.seeds) >= min_seeds and all(m in summary.mean for m in BAR_METRICS):
                results.append(Result(dataset, study_name(settings), summary.variant.name, len(summary.seeds),
                                      summary.mean, summary.std, summary.mean.get("decode_ms_per_user")))
    return results


def best_baselines(results: Sequence[Result], min_seeds: int) -> Bar:
    baselines = [r for r in results if r.source == "baseline"]
    if not baselines:
        raise SystemExit(f"no baseline runs ({', '.join(BASELINES)}) for {results[0].dataset if results else '?'}")
    return Bar({metric: max(baselines, key=lambda r: r.mean[metric]) for metric in BAR_METRICS}, min_seeds)


def _mean_std(result: Result, metric: str) -> str:
    std = result.std.get(metric)
    return f"{result.mean[metric]:.4f}" + ("" if std is None else f" ± {std:.4f}")


def table(results: Sequence[Result], bars: Mapping[str, Bar]) -> tuple[str, list[str], list[list[object]]]:
    """(markdown, CSV header, CSV rows): LLaDARec rows only, each against its dataset's target."""
    md_rows, csv_rows = [], []
    for r in results:
        if r.source == "baseline":
            continue
        bar = bars[r.dataset]
        gaps = [bar.versus_target(r, m) for m in BAR_METRICS]
        cleared = bar.cleared(r)
        where = f"`{r.dataset}.md`" if r.source == "run" else f"`ablation_decoding_{r.dataset}.md`: {r.source}"
        md_rows.append([r.dataset, where, r.name, r.seeds,
                        *(_mean_std(r, m) for m in BAR_METRICS), *(f"{100 * g:+.0f}%" for g in gaps),
                        format_number(r.decode_ms), "**yes**" if cleared else "no"])
        csv_rows.append([r.dataset, r.source, r.name, r.seeds,
                         *(v for m in BAR_METRICS for v in (r.mean[m], "" if r.std.get(m) is None else r.std[m])),
                         *gaps, "" if r.decode_ms is None else r.decode_ms, cleared])
    md = markdown_table(["dataset", "from", "model / mode", "seeds", "Recall@10", "NDCG@10",
                         "Recall@10 vs target", "NDCG@10 vs target", "decode ms/user", "bar cleared?"], md_rows)
    header = ["dataset", "source", "name", "seeds", "recall@10_mean", "recall@10_std", "ndcg@10_mean", "ndcg@10_std",
              "recall@10_vs_target", "ndcg@10_vs_target", "decode_ms_per_user", "cleared"]
    return md, header, csv_rows


def targets_table(bars: Mapping[str, Bar]) -> str:
    rows = [[dataset, *(f"{bar.best[m].name} {_mean_std(bar.best[m], m)}" for m in BAR_METRICS),
             *(f"{bar.target(m):.4f}" for m in BAR_METRICS)] for dataset, bar in bars.items()]
    return markdown_table(["dataset", "best baseline, Recall@10", "best baseline, NDCG@10", "target Recall@10",
                           "target NDCG@10"], rows)


def plot(results: Sequence[Result], bars: Mapping[str, Bar], path: Path) -> bool:
    """NDCG@10 against decode ms per user for the decoding study rows, one panel per dataset. False without
    matplotlib or timed rows."""
    timed = [r for r in results if r.decode_ms is not None]
    if not timed:
        return False
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no PNG", file=sys.stderr)
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r.dataset for r in timed))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 4.4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        bar = bars[dataset]
        points = [r for r in timed if r.dataset == dataset]
        studies = list(dict.fromkeys(r.source for r in points))
        for marker, source in zip("os^Dv", studies):
            group = [r for r in points if r.source == source]
            ax.errorbar([r.decode_ms for r in group], [r.mean["ndcg@10"] for r in group],
                        yerr=[r.std.get("ndcg@10") or 0.0 for r in group], fmt=marker, capsize=3,
                        label=source if len(studies) > 1 else None)
            for i, r in enumerate(group):  # alternate above / below: ties (scorer_hybrid = beam) stay readable
                ax.annotate(r.name, (r.decode_ms, r.mean["ndcg@10"]), textcoords="offset points",
                            xytext=(5, 4 if i % 2 == 0 else -11), fontsize=8)
        best = bar.best["ndcg@10"]
        ax.axhline(best.mean["ndcg@10"], color="grey", linestyle="--", linewidth=1,
                   label=f"best baseline ({best.name})")
        ax.axhline(bar.target("ndcg@10"), color="black", linestyle=":", linewidth=1, label="target (+5%)")
        ax.set_xscale("log")
        ax.set_xlabel("decode ms per test user (log scale)")
        ax.set_ylabel("test NDCG@10 (mean ± std over seeds)")
        ax.set_title(dataset)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, path)
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated")
    parser.add_argument("--min_seeds", type=int, default=3, help="decoding studies with fewer seeds are left out")
    parser.add_argument("--hardware", default="H200", help="decoding study rows whose hardware contains this")
    parser.add_argument("--results_dir", type=Path, default=RESULTS_DIR)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    datasets = [name for name in args.datasets.split(",") if name]
    results, bars = [], {}
    for dataset in datasets:
        ours = run_results(dataset, args.results_dir)
        bars[dataset] = best_baselines(ours, args.min_seeds)
        results += ours + decoding_results(dataset, args.results_dir, args.min_seeds, args.hardware)
    md, header, csv_rows = table(results, bars)
    stem = args.results_dir / "catalog_scoring"
    write_csv(stem.with_suffix(".csv"), header, csv_rows)
    cleared = sorted({r.dataset for r in results if r.source != "baseline" and bars[r.dataset].cleared(r)})
    sections = [
        ("Targets", targets_table(bars)),
        ("Every LLaDARec row against its target", md),
        ("Summary", f"The bar (the best baseline +{100 * MARGIN:.0f}% on Recall@10 and NDCG@10, each gain larger "
                    f"than the seed spread, over at least {args.min_seeds} seeds) is cleared on: "
                    f"{', '.join(cleared) or 'none'} of {', '.join(datasets)}."),
    ]
    verdict = args.results_dir / "catalog_scoring_verdict.md"
    if verdict.exists():
        sections.append(("Verdict", verdict.read_text(encoding="utf-8").strip()))
    notes = [
        f"- baselines: {', '.join(BASELINES)} at RecBole's default sizes, from `<dataset>_runs.csv`, latest run per "
        "seed; LLaDARec 'quality run' rows: every LLaDARec label there, scored as its config says.",
        f"- decoding study rows: `ablation_decoding_<dataset>.csv`, studies run on `{args.hardware}` with at least "
        f"{args.min_seeds} seeds; every mode decodes the same checkpoint per seed. `hybrid` equals `beam` at @10 "
        "whenever 10 or more beams survive (its top B are the beams, in beam order), so the studies do not run it.",
        "- vs target: mean / (best baseline mean x 1.05) - 1. decode ms/user: the whole test split's evaluation "
        "(decoding, scoring and metrics) per test user, after a warm-up batch.",
    ]
    sections.append(("Notes", "\n".join(notes)))
    write_markdown(stem.with_suffix(".md"), "Catalog scoring against the best baseline (issue 13)", sections,
                   provenance())
    plot(results, bars, stem.with_suffix(".png"))
    print(f"\nwritten to {stem}.{{md,csv,png}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
