"""Recommendation quality: models x seeds through quick_start.run, mean ± std next to the published figures.

    python benchmarks/quality.py --experiment=benchmarks/experiments/beauty.yaml [--gpus=0,1] [--key=value ...]
    python benchmarks/quality.py --dataset=Beauty --data_path=../shared/data/amazon2014 \\
        --models=GRU4Rec,SASRec,BERT4Rec,FMLPRec,LLaDARec --seeds=3 [--key=value ...]

An experiment file names everything one results table reports: the dataset, its data path, the seeds, and the
labelled runs (label, model, config files, overrides, and optionally their own seeds or ``nproc``). ``--only=LABEL``
runs some of them; ``--gpus=0,1`` deals them round-robin over the GPUs, one process per GPU (the multi-GPU runs
first, alone). Without an experiment file, the options below name the runs.

Each model runs once per seed (first_seed, first_seed + 1, ...) through ``recbole_llada.training.quick_start.run``: the same
data handling and protocol as the command line. Every other ``--key=value`` is a RecBole config override for all
runs (e.g. ``--epochs=50`` to fit a wall-clock budget); overrides are recorded with each run.

Files, in ``--results_dir`` (default benchmarks/results):
- ``<dataset>_runs.csv``: one row per finished run (label, model, seed, test metrics, epochs trained and what ended
  training, times, checkpoint, overrides, commit, hardware, date, command), appended as soon as the run ends, so
  separate invocations (LLaDARec in one GPU call, the baselines in another) accumulate in one file;
- ``<dataset>.{md,csv}``: the summary, regenerated from all rows of the runs file after every run: ours as
  mean ± std over seeds (the latest row wins when a label and seed ran twice), then the published figures, each
  labelled with its source. ``--summary_only`` regenerates it without running anything. A hand-written
  ``<dataset>_verdict.md`` beside it becomes the summary's "Verdict" section.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import statistics
import subprocess
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml
from filelock import FileLock

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS_DIR, format_number, split_config_files, write_csv, write_markdown
from recbole_llada.model.names import check_model_name
from recbole_llada.training.quick_start import RunResult, parse_overrides, run, run_distributed
from recbole_llada.training.results import markdown_table, provenance

METRICS = ("recall@1", "recall@5", "recall@10", "ndcg@5", "ndcg@10")
METRIC_TITLES = {"recall@1": "Recall@1", "recall@5": "Recall@5", "recall@10": "Recall@10", "ndcg@5": "NDCG@5",
                 "ndcg@10": "NDCG@10"}
DEFAULT_MODELS = ("GRU4Rec", "SASRec", "BERT4Rec", "FMLPRec", "LLaDARec")
RUN_COLUMNS = ("label", "model", "dataset", "seed", *METRICS, "best_valid_score", "epochs", "stopped_by",
               "n_parameters", "train_seconds", "test_seconds", "train_s_per_epoch", "valid_s_per_epoch",
               "saved_model_file", "overrides", "config_files", "test_result", "commit", "hardware", "date", "command")


@dataclass(frozen=True)
class PublishedResult:
    model: str
    source: str
    metrics: Mapping[str, float]  # keys from METRICS; a metric the paper does not report is absent


_TIGER = "TIGER (Rajput et al., NeurIPS 2023), Table 1"
_LLADA = "LLaDA-Rec (arXiv 2511.06254), Table 3"

# Figures on the exact splits in ../shared (see its README): Beauty is TIGER's split, Scientific the official
# LLaDA-Rec split. TIGER and LLaDA-Rec used item text for their semantic IDs.
PUBLISHED: dict[str, tuple[PublishedResult, ...]] = {
    "Beauty": (
        PublishedResult("SASRec", _TIGER, {"recall@5": .0387, "ndcg@5": .0249, "recall@10": .0605, "ndcg@10": .0318}),
        PublishedResult("BERT4Rec", _TIGER, {"recall@5": .0203, "ndcg@5": .0124, "recall@10": .0347,
                                             "ndcg@10": .0170}),
        PublishedResult("GRU4Rec", _TIGER, {"recall@5": .0164, "ndcg@5": .0099, "recall@10": .0283,
                                            "ndcg@10": .0137}),
        PublishedResult("TIGER", _TIGER, {"recall@5": .0454, "ndcg@5": .0321, "recall@10": .0648, "ndcg@10": .0384}),
    ),
    "Scientific": (
        PublishedResult("LLaDA-Rec", _LLADA, {"recall@1": .0098, "recall@5": .0310, "recall@10": .0474,
                                              "ndcg@5": .0203, "ndcg@10": .0256}),
        PublishedResult("SASRec", _LLADA, {"recall@1": .0063, "recall@5": .0240, "recall@10": .0379,
                                           "ndcg@5": .0152, "ndcg@10": .0197}),
        PublishedResult("TIGER", _LLADA, {"recall@1": .0084, "recall@5": .0282, "recall@10": .0446,
                                          "ndcg@5": .0183, "ndcg@10": .0236}),
    ),
}


# ----- the raw per-run file ------------------------------------------------------------------------------------

def runs_path(results_dir: Path, dataset: str) -> Path:
    return Path(results_dir) / f"{dataset}_runs.csv"


def keep_checkpoint_per_seed(saved_model_file: str | None, seed: int) -> str:
    """Add the seed to RecBole's checkpoint name (model + time to the second), so that runs finishing within the
    same second cannot overwrite each other's checkpoint; returns the new path ('' if nothing was saved)."""
    if not saved_model_file or not Path(saved_model_file).is_file():
        return ""
    path = Path(saved_model_file)
    return str(path.rename(path.with_name(f"{path.stem}-seed{seed}{path.suffix}")))


def run_record(result: RunResult, label: str, overrides: Mapping[str, Any],
               config_files: Sequence[str] = ()) -> dict[str, object]:
    info = provenance()
    metrics = {k: float(v) for k, v in result.test_result.items()}
    return {
        "label": label, "model": result.model, "dataset": result.dataset, "seed": result.seed,
        **{metric: metrics.get(metric, "") for metric in METRICS},
        "best_valid_score": result.best_valid_score, "epochs": result.epochs_trained or "",
        "stopped_by": result.stopped_by or "", "n_parameters": result.n_parameters,
        "train_seconds": result.train_seconds, "test_seconds": result.test_seconds,
        "train_s_per_epoch": "" if result.train_epoch_seconds is None else result.train_epoch_seconds,
        "valid_s_per_epoch": "" if result.valid_epoch_seconds is None else result.valid_epoch_seconds,
        "saved_model_file": result.saved_model_file or "",
        "overrides": json.dumps(dict(overrides), sort_keys=True, default=str), "config_files": " ".join(config_files),
        "test_result": json.dumps(metrics, sort_keys=True),
        **{key: info[key] for key in ("commit", "hardware", "date", "command")},
    }


def read_runs(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def append_run(path: Path, record: Mapping[str, object]) -> None:
    """Add one run; the file is rewritten whole so its header always matches RUN_COLUMNS."""
    rows = read_runs(path) + [{key: str(record[key]) for key in RUN_COLUMNS}]
    write_csv(path, RUN_COLUMNS, [[row.get(key, "") for key in RUN_COLUMNS] for row in rows])


# ----- the summary ---------------------------------------------------------------------------------------------

@dataclass
class OursSummary:
    label: str
    seeds: list[int]
    mean: dict[str, float]
    std: dict[str, float | None]  # sample standard deviation; None with one seed
    train_seconds: float
    test_seconds: float
    settings: list[str]  # the distinct settings (overrides and config files) of its runs
    extents: list[str]  # per seed, "<epochs> (<what ended training>)", "–" where not recorded
    source: str = "ours"  # the table's source column: "ours", or the other code that made the runs


# Runs made with other code on our data (benchmarks/official_side_by_side.py), by their model column: the table
# names that code as their source instead of "ours".
OFFICIAL_CODE_MODEL = "LLaDA-Rec official code"
OTHER_CODE_SOURCES = {OFFICIAL_CODE_MODEL: "official code (TengShi-RUC/LLaDA-Rec bd8bdc1)"}


def latest_per_seed(rows: Sequence[Mapping[str, str]]) -> list[Mapping[str, str]]:
    """One row per (label, seed): the last one in file order, i.e. the latest run."""
    latest: dict[tuple[str, str], Mapping[str, str]] = {}
    for row in rows:
        latest[(row["label"], row["seed"])] = row
    return list(latest.values())


def _command_config_files(command: str) -> list[str]:
    """The YAML files named by ``--config_files`` in a recorded command line (rows written before the
    config_files column)."""
    words = shlex.split(command)
    values = [word.split("=", 1)[1] for word in words if word.startswith("--config_files=")]
    values += [after for word, after in zip(words, words[1:]) if word == "--config_files"]
    return [name for value in values for name in split_config_files(value)]


def _shared_settings(row: Mapping[str, str]) -> str:
    """A run's recorded overrides and YAML files, without its placement (checkpoint folder, GPU), so the seeds of
    one setting read as one."""
    overrides = json.loads(row["overrides"] or "{}")
    for placement in ("checkpoint_dir", "gpu_id"):
        overrides.pop(placement, None)
    config_files = split_config_files(row.get("config_files") or "") or _command_config_files(row.get("command") or "")
    if config_files:
        overrides["config_files"] = ",".join(config_files)
    return json.dumps(overrides, sort_keys=True)


def summarise(rows: Sequence[Mapping[str, str]]) -> list[OursSummary]:
    """Mean and sample std per label over its seeds, labels in order of first appearance."""
    by_label: dict[str, list[Mapping[str, str]]] = {}
    for row in latest_per_seed(rows):
        by_label.setdefault(row["label"], []).append(row)
    summaries = []
    for label, group in by_label.items():
        mean, std = {}, {}
        for metric in METRICS:
            values = [float(r[metric]) for r in group if r.get(metric, "") != ""]
            if values:
                mean[metric] = statistics.fmean(values)
                std[metric] = statistics.stdev(values) if len(values) > 1 else None
        summaries.append(OursSummary(
            label=label, seeds=sorted(int(r["seed"]) for r in group), mean=mean, std=std,
            train_seconds=statistics.fmean(float(r["train_seconds"]) for r in group),
            test_seconds=statistics.fmean(float(r["test_seconds"]) for r in group),
            settings=sorted({_shared_settings(r) for r in group}),
            extents=[f"{r['epochs']} ({r['stopped_by']})" if r.get("epochs") else "–"
                     for r in sorted(group, key=lambda r: int(r["seed"]))],
            source=OTHER_CODE_SOURCES.get(group[0]["model"], "ours"),
        ))
    return summaries


def _mean_std(summary: OursSummary, metric: str) -> str:
    if metric not in summary.mean:
        return "–"
    std = summary.std[metric]
    return f"{summary.mean[metric]:.4f}" + ("" if std is None else f" ± {std:.4f}")


def summary_tables(dataset: str, summaries: Sequence[OursSummary]) -> tuple[str, list[str], list[list[object]]]:
    """(markdown table, CSV header, CSV rows) of ours followed by the published figures."""
    published = PUBLISHED.get(dataset, ())
    titles = [METRIC_TITLES[m] for m in METRICS]
    md_rows: list[list[object]] = []
    csv_rows: list[list[object]] = []
    for s in summaries:
        md_rows.append([s.source, s.label, f"{len(s.seeds)}", *(_mean_std(s, m) for m in METRICS),
                        format_number(s.train_seconds), format_number(s.test_seconds)])
        csv_rows.append([s.source, s.label, len(s.seeds), " ".join(map(str, s.seeds)),
                         *(v for m in METRICS for v in (s.mean.get(m, ""), "" if s.std.get(m) is None
                                                        else s.std[m])),
                         s.train_seconds, s.test_seconds])
    for p in published:
        md_rows.append([f"published: {p.source}", p.model, "–",
                        *(f"{p.metrics[m]:.4f}" if m in p.metrics else "–" for m in METRICS), "–", "–"])
        csv_rows.append([f"published: {p.source}", p.model, "", "",
                         *(v for m in METRICS for v in (p.metrics.get(m, ""), "")), "", ""])
    md = markdown_table(["source", "model", "seeds", *titles, "train s", "test s"], md_rows)
    header = ["source", "model", "n_seeds", "seeds", *(f"{m}_{stat}" for m in METRICS for stat in ("mean", "std")),
              "train_seconds_mean", "test_seconds_mean"]
    return md, header, csv_rows


def verdict_path(results_dir: Path, dataset: str) -> Path:
    return Path(results_dir) / f"{dataset}_verdict.md"


def write_summary(dataset: str, results_dir: Path) -> tuple[Path, Path]:
    """Regenerate ``<dataset>.{md,csv}`` from ``<dataset>_runs.csv``; ``<dataset>_verdict.md``, where it exists,
    becomes the "Verdict" section: the hand-written reading of the table (what it shows, what was tried)."""
    rows = read_runs(runs_path(results_dir, dataset))
    summaries = summarise(rows)
    md_table, header, csv_rows = summary_tables(dataset, summaries)
    md_path, csv_path = Path(results_dir) / f"{dataset}.md", Path(results_dir) / f"{dataset}.csv"
    write_csv(csv_path, header, csv_rows)
    run_lines = [f"- {s.source}, {s.label}: seeds {', '.join(map(str, s.seeds))}; "
                 + (f"epochs {', '.join(s.extents)}; " if set(s.extents) != {"–"} else "") + "settings "
                 + "; ".join(f"`{o}`" for o in s.settings) for s in summaries]
    machines = sorted({(r["commit"], r["hardware"]) for r in rows})
    run_lines += [f"- runs made at commit `{commit}` on `{hardware}`" for commit, hardware in machines]
    notes = "\n".join([
        "- **ours**: this repository's code under the shared protocol (properties/overall.yaml: chronological "
        "leave-one-out, full ranking over all items, MAX_ITEM_LIST_LENGTH history items, 20 unless overridden), "
        "mean ± sample std over seeds; "
        "train s and test s are mean wall-clock seconds per run.",
        "- **published**: copied from the paper named in the source column; other code, and for TIGER and "
        "LLaDA-Rec semantic IDs from item text. '–' = not reported.",
        f"- raw runs: `{runs_path(results_dir, dataset).name}` (one row per model and seed).",
        *run_lines,
    ])
    verdict = verdict_path(results_dir, dataset)
    sections = [("", md_table)]
    if verdict.exists():
        sections.append(("Verdict", verdict.read_text(encoding="utf-8").strip()))
    write_markdown(md_path, f"Test metrics on {dataset}: ours vs published", [*sections, ("Notes", notes)],
                   provenance())
    return md_path, csv_path


# ----- running ------------------------------------------------------------------------------------------------

def results_lock(results_dir: Path, dataset: str) -> FileLock:
    """Held while the runs file and its summary are written: the runs of an experiment on several GPUs (one
    process per GPU) append to the same file."""
    Path(results_dir).mkdir(parents=True, exist_ok=True)
    return FileLock(f"{runs_path(results_dir, dataset)}.lock")


def run_quality(models: Sequence[str], dataset: str, seeds: Sequence[int], overrides: Mapping[str, Any],
                results_dir: Path, config_files: Sequence[str] = (), label: str | None = None,
                nproc: int = 1) -> tuple[Path, Path]:
    """Run every model for every seed, recording each run as it finishes; returns the summary paths.

    ``nproc`` > 1 trains each run on that many GPUs (RecBole's DistributedDataParallel path); its rows are
    labelled ``<model> (<nproc> GPUs)`` unless ``label`` is given.
    """
    if label is not None and len(models) != 1:
        raise ValueError("--label names the runs of a single model; run one model per invocation")
    if "seed" in overrides:
        raise ValueError("set seeds with --seeds/--first_seed, not --seed")
    for model in models:
        check_model_name(model)
    with results_lock(results_dir, dataset):
        summary = write_summary(dataset, results_dir)
    for model in models:
        for seed in seeds:
            seeded = {"show_progress": False, **overrides, "seed": seed}  # progress bars only clutter the logs
            if nproc > 1:
                result = run_distributed(model, dataset, config_files, seeded, nproc=nproc)
            else:
                result = run(model, dataset, config_files, seeded)
            result.saved_model_file = keep_checkpoint_per_seed(result.saved_model_file, seed)
            default_label = model if nproc == 1 else f"{model} ({nproc} GPUs)"
            record = run_record(result, label or default_label, overrides, config_files)
            with results_lock(results_dir, dataset):
                append_run(runs_path(results_dir, dataset), record)
                summary = write_summary(dataset, results_dir)
    return summary


# ----- experiment files ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LabelledRun:
    """One row of a results table: a model under its config files and overrides, run once per seed."""
    label: str
    model: str
    config_files: tuple[str, ...] = ()
    overrides: Mapping[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] = ()  # empty: the experiment's seeds
    nproc: int = 1  # GPUs per run (RecBole's DistributedDataParallel path)


@dataclass(frozen=True)
class Experiment:
    """What one results table reports (benchmarks/experiments/<dataset>.yaml)."""
    dataset: str
    seeds: tuple[int, ...]
    overrides: Mapping[str, Any]  # for every run; the file's data_path is one of them
    runs: tuple[LabelledRun, ...]
    multi_gpu: tuple[str, str] | None = None  # (one-GPU label, multi-GPU label): multi_gpu.py's comparison


def load_experiment(path: Path) -> Experiment:
    spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    runs = []
    for entry in spec["runs"]:
        unknown = set(entry) - {f.name for f in fields(LabelledRun)}
        if unknown:
            raise ValueError(f"{path}: run {entry.get('label')!r} has unknown keys {sorted(unknown)}")
        runs.append(LabelledRun(**{**entry, "config_files": tuple(entry.get("config_files") or ()),
                                   "overrides": entry.get("overrides") or {},
                                   "seeds": tuple(entry.get("seeds") or ())}))
    labels = [r.label for r in runs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"{path}: every run needs its own label")
    data_path = {"data_path": spec["data_path"]} if spec.get("data_path") else {}
    multi_gpu = None
    if spec.get("multi_gpu"):
        multi_gpu = (spec["multi_gpu"]["single"], spec["multi_gpu"]["multi"])
        if not set(multi_gpu) <= set(labels):
            raise ValueError(f"{path}: multi_gpu names {sorted(set(multi_gpu) - set(labels))}, not runs of the file")
    return Experiment(dataset=spec["dataset"], seeds=tuple(spec["seeds"]),
                      overrides={**data_path, **(spec.get("overrides") or {})}, runs=tuple(runs), multi_gpu=multi_gpu)


def selected_runs(experiment: Experiment, only: Sequence[str] = ()) -> list[LabelledRun]:
    """The experiment's runs in file order, or those labelled in ``only``."""
    missing = set(only) - {r.label for r in experiment.runs}
    if missing:
        raise ValueError(f"no run labelled {sorted(missing)} in the experiment")
    return [r for r in experiment.runs if not only or r.label in only]


CHECKPOINT_OF = "checkpoint of "


def checkpoint_references(overrides: Mapping[str, Any]) -> dict[str, str]:
    """Override keys whose value names another run's checkpoint ("checkpoint of LABEL") -> that label."""
    return {key: value[len(CHECKPOINT_OF):] for key, value in overrides.items()
            if isinstance(value, str) and value.startswith(CHECKPOINT_OF)}


def resolve_checkpoints(overrides: Mapping[str, Any], dataset: str, results_dir: Path, seed: int) -> dict[str, Any]:
    """``overrides`` with each "checkpoint of LABEL" replaced by the checkpoint of LABEL's latest run of ``seed``
    (e.g. an item-scorer adapter trained on a backbone run of the same experiment)."""
    runs = {(row["label"], row["seed"]): row for row in latest_per_seed(read_runs(runs_path(results_dir, dataset)))}
    resolved = dict(overrides)
    for key, label in checkpoint_references(overrides).items():
        row = runs.get((label, str(seed)))
        if row is None or not row["saved_model_file"] or not Path(row["saved_model_file"]).is_file():
            raise LookupError(f"{key} needs the checkpoint of {label!r} for seed {seed}: run that label first")
        resolved[key] = row["saved_model_file"]
    return resolved


def run_experiment(experiment: Experiment, overrides: Mapping[str, Any], results_dir: Path,
                   only: Sequence[str] = ()) -> tuple[Path, Path]:
    """Every labelled run (or those in ``only``) for each of its seeds, one after another. Overrides from the
    command line win over the run's, which win over the experiment's; a "checkpoint of LABEL" value is that run's
    checkpoint of the same seed."""
    summary = None
    for labelled in selected_runs(experiment, only):
        merged = {**experiment.overrides, **labelled.overrides, **overrides}
        seeds = labelled.seeds or experiment.seeds
        if checkpoint_references(merged):  # one seed at a time: each takes the checkpoint of its own seed
            for seed in seeds:
                summary = run_quality([labelled.model], experiment.dataset, [seed],
                                      resolve_checkpoints(merged, experiment.dataset, results_dir, seed), results_dir,
                                      labelled.config_files, labelled.label, labelled.nproc)
        else:
            summary = run_quality([labelled.model], experiment.dataset, seeds, merged, results_dir,
                                  labelled.config_files, labelled.label, labelled.nproc)
    return summary if summary is not None else write_summary(experiment.dataset, results_dir)


def gpu_assignment(runs: Sequence[LabelledRun],
                   gpus: Sequence[str]) -> tuple[list[tuple[str, str]], dict[str, list[str]]]:
    """Where each run goes: the multi-GPU runs first, one after another, each on the first ``nproc`` GPUs (as
    (GPU ids, label)); then the one-GPU runs dealt round-robin, one process per GPU working through its list."""
    multi = [(",".join(gpus[:r.nproc]), r.label) for r in runs if r.nproc > 1]
    if any(r.nproc > len(gpus) for r in runs):
        raise ValueError(f"a run asks for more GPUs than --gpus={','.join(gpus)}")
    single = [r.label for r in runs if r.nproc == 1]
    return multi, {gpu: single[i::len(gpus)] for i, gpu in enumerate(gpus) if single[i::len(gpus)]}


def run_experiment_on_gpus(experiment_file: Path, experiment: Experiment, gpus: Sequence[str],
                           override_args: Sequence[str], results_dir: Path, only: Sequence[str] = ()) -> None:
    """Each run in a process of this script with RecBole's ``gpu_id`` set (RecBole then sets
    CUDA_VISIBLE_DEVICES), checkpoints in a folder per GPU so that runs ending in the same second keep theirs."""
    checkpoint_root = parse_overrides(override_args).get("checkpoint_dir", "saved")

    def command(gpu_ids: str, labels: Sequence[str]) -> list[str]:
        return [sys.executable, str(Path(__file__).resolve()), f"--experiment={experiment_file}",
                f"--results_dir={results_dir}", *(f"--only={label}" for label in labels), *override_args,
                f"--gpu_id={gpu_ids}", f"--checkpoint_dir={checkpoint_root}/gpu{gpu_ids.replace(',', '-')}"]

    runs = selected_runs(experiment, only)
    # Runs trained on another run's checkpoint wait until every other run is done, then go to the first GPU.
    dependent = [r.label for r in runs if checkpoint_references({**experiment.overrides, **r.overrides})]
    multi, per_gpu = gpu_assignment([r for r in runs if r.label not in dependent], gpus)
    for gpu_ids, label in multi:
        subprocess.run(command(gpu_ids, [label]), check=True)
    processes = [subprocess.Popen(command(gpu, labels)) for gpu, labels in per_gpu.items()]
    failed = [gpu for gpu, process in zip(per_gpu, processes) if process.wait() != 0]
    if failed:
        raise RuntimeError(f"the runs on GPU {', '.join(failed)} failed; see their output above")
    if dependent:
        subprocess.run(command(gpus[0], dependent), check=True)


def write_multi_gpu_comparison(experiment: Experiment, results_dir: Path) -> None:
    """multi_gpu.py's comparison of the experiment's one-GPU and multi-GPU runs, once both have run."""
    from benchmarks import multi_gpu  # it reads this module's runs files: imported here, not at the top

    single, multi = experiment.multi_gpu
    try:
        print(f"written {multi_gpu.compare(experiment.dataset, results_dir, single, multi)}")
    except LookupError as error:
        print(f"no multi-GPU comparison yet: {error}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], allow_abbrev=False,
        epilog="Any other --key=value is a RecBole config override for every run (e.g. --data_path=DIR --epochs=50).")
    parser.add_argument("--experiment", type=Path, default=None,
                        help="an experiment file (benchmarks/experiments/<dataset>.yaml): dataset, seeds and the "
                             "labelled runs of one results table; replaces the options below up to --config_files")
    parser.add_argument("--only", action="append", default=[],
                        help="with --experiment: run only the run of this label (repeat for several)")
    parser.add_argument("--gpus", default="",
                        help="with --experiment: GPU ids, comma separated; the runs are dealt round-robin, one "
                             "process per GPU (default: one process, RecBole's device)")
    parser.add_argument("--dataset", help="required without --experiment")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma separated model names")
    parser.add_argument("--seeds", type=int, default=3, help="runs per model (default: 3)")
    parser.add_argument("--first_seed", type=int, default=2024, help="seeds are first_seed, first_seed + 1, ...")
    parser.add_argument("--label", default=None,
                        help="name of these runs in the tables (default: the model name); one model only")
    parser.add_argument("--nproc", type=int, default=1, help="GPUs per run (RecBole's multi-GPU path; default 1)")
    parser.add_argument("--config_files", default="", help="extra YAML files, space separated (later wins)")
    parser.add_argument("--results_dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--summary_only", action="store_true",
                        help="regenerate <dataset>.{md,csv} from <dataset>_runs.csv without running")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    experiment = load_experiment(args.experiment) if args.experiment else None
    dataset = experiment.dataset if experiment else args.dataset
    if dataset is None:
        parser.error("--dataset or --experiment is required")
    if args.summary_only:
        md_path, _ = write_summary(dataset, args.results_dir)
    elif experiment and args.gpus:
        run_experiment_on_gpus(args.experiment, experiment, args.gpus.split(","), rest, args.results_dir, args.only)
        md_path, _ = write_summary(dataset, args.results_dir)
    elif experiment:
        md_path, _ = run_experiment(experiment, parse_overrides(rest), args.results_dir, args.only)
    else:
        overrides = parse_overrides(rest)
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        config_files = split_config_files(args.config_files)
        seeds = [args.first_seed + i for i in range(args.seeds)]
        md_path, _ = run_quality(models, dataset, seeds, overrides, args.results_dir, config_files, args.label,
                                 args.nproc)
    if experiment and experiment.multi_gpu:
        write_multi_gpu_comparison(experiment, args.results_dir)
    print(md_path.read_text())
    print(f"written to {md_path.with_suffix('')}.{{md,csv}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
