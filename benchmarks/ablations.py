"""The paper's analyses (arXiv 2511.06254: Table 4, Figs. 3-6) as one command each, next to the paper's direction.

    python benchmarks/ablations.py --study=STUDY --dataset=DATASET [--seeds=N] [--first_seed=S]
        [--checkpoints=a.pth,b.pth [--checkpoints_label=TEXT]] [--results_dir=DIR] [--config_files="a.yaml b.yaml"]
        [--studies_file=YAML] [--summary_only] [--key=value ...]

STUDY is one of benchmarks/experiments/ablations.yaml, where every study's variants (their config overrides) and the
paper's direction for each row are data:
- trained studies (``tokenizer``, ``losses``, ``attention``, ``alpha``): every variant trains LLaDARec once per seed
  through ``recbole_llada.training.quick_start.run``, the variant's overrides on top of the user's ``--key=value``;
- decode studies (``decoding``, ``order``, ``steps``): one checkpoint per seed, trained here with the user's
  overrides or given by ``--checkpoints``; each variant rebuilds the model from the checkpoint's config, the user's
  overrides and its own, loads the checkpoint's weights and SID table, and evaluates the test split with RecBole's
  evaluator, timed between device syncs (``tradeoff.timed_test_evaluation``). ``--checkpoints_label`` says what the
  given checkpoints are (e.g. the training run's label): rows of the same settings and label form one table, also
  across commands (one per seed), and a seed decoded before from another checkpoint of the same settings is refused
  rather than replaced.

Writes ``<results_dir>/ablation_<study>_<dataset>.csv`` (one row per variant and seed, appended as each finishes;
a rerun with the same settings skips what the file already holds), ``.md`` (mean ± std over seeds, the paper's
direction and whether ours agrees; regenerated after every row) and ``.png`` (drawn at the end). A variant whose key
this code does not know, or whose value the model rejects, gets a row saying so instead of numbers.
"""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import itertools
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import yaml

from benchmarks import quality, tradeoff
from benchmarks.common import (save_figure, REPO_ROOT, RESULTS_DIR, format_number, slugify, split_config_files,
                               write_csv, write_markdown)
from recbole.utils import get_model, get_trainer, init_seed
from recbole_llada.training.quick_start import RunResult, build_config, parse_overrides, run
from recbole_llada.training.results import markdown_table, provenance

MODEL = "LLaDARec"
STUDIES_FILE = REPO_ROOT / "benchmarks" / "experiments" / "ablations.yaml"
KINDS = ("trained", "decode")
METRICS = quality.METRICS
AGREEMENT_METRIC = "ndcg@10"  # the paper's figures plot NDCG@10 / Recall@10; the direction is checked on NDCG@10
LOADING_KEYS = ("data_path", "device")  # overrides that say where to load a checkpoint, not how to decode it
# Overrides that say where a run writes, not what it computes: runs that differ only in them are one experiment (two
# GPUs' queues give each run a checkpoint folder of its own, and must still share the full model between studies).
OUTPUT_KEYS = ("checkpoint_dir", "sid_cache_dir")
ROW_COLUMNS = ("label", "seed", "status", "note", *METRICS, "users", "decode_seconds", "decode_ms_per_user",
               "train_seconds", "variant_overrides", "settings", "checkpoint", "test_result", "commit", "hardware",
               "date", "command")


# ----- the studies ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Variant:
    name: str
    overrides: Mapping[str, Any]
    reference: bool = False  # the paper's own setting
    below: tuple[str, ...] = ()  # the paper has this row under the best of these rows

    @property
    def paper(self) -> str:
        if self.reference:
            return "the paper's setting"
        if len(self.below) == 1:
            return f"below {self.below[0]}"
        if self.below:
            return f"below the best of {', '.join(self.below)}"
        return "–"


@dataclass(frozen=True)
class Study:
    name: str
    source: str
    kind: str  # "trained" | "decode"
    claim: str
    variants: tuple[Variant, ...]
    grid_keys: tuple[str, ...] = ()  # the keys of a grid study, in order


def _variant(spec: Mapping[str, Any]) -> Variant:
    paper = spec.get("paper")
    if paper not in (None, "reference") and not (isinstance(paper, dict) and set(paper) == {"below"}):
        raise ValueError(f"variant {spec['name']!r}: paper must be 'reference' or {{below: [names]}}, got {paper!r}")
    return Variant(name=str(spec["name"]), overrides=dict(spec.get("overrides") or {}),
                   reference=paper == "reference",
                   below=tuple(str(n) for n in paper["below"]) if isinstance(paper, dict) else ())


def _grid_variants(grid: Mapping[str, Sequence[Any]], better_with: str | None) -> tuple[Variant, ...]:
    """Every combination of the grid's values; with ``better_with``, each row below the row with the next larger
    value of that key and the same other values."""
    def name(overrides: Mapping[str, Any]) -> str:
        return " ".join(f"{key}={value}" for key, value in overrides.items())

    if better_with is not None and better_with not in grid:
        raise ValueError(f"paper_better_with: {better_with!r} is not a grid key ({', '.join(grid)})")
    variants = []
    for values in itertools.product(*grid.values()):
        overrides = dict(zip(grid, values))
        below: tuple[str, ...] = ()
        if better_with is not None:
            larger = [v for v in grid[better_with] if v > overrides[better_with]]
            if larger:
                below = (name({**overrides, better_with: min(larger)}),)
        variants.append(Variant(name=name(overrides), overrides=overrides, below=below))
    return tuple(variants)


def load_studies(path: Path = STUDIES_FILE) -> dict[str, Study]:
    with open(path, encoding="utf-8") as f:
        specs = yaml.safe_load(f)
    studies = {}
    for name, spec in specs.items():
        if spec["kind"] not in KINDS:
            raise ValueError(f"study {name!r}: kind must be one of {KINDS}, got {spec['kind']!r}")
        if "grid" in spec:
            variants = _grid_variants(spec["grid"], spec.get("paper_better_with"))
            grid_keys = tuple(spec["grid"])
        else:
            variants, grid_keys = tuple(_variant(v) for v in spec["variants"]), ()
        names = [v.name for v in variants]
        unknown = sorted({n for v in variants for n in v.below} - set(names))
        if len(set(names)) != len(names) or unknown:
            raise ValueError(f"study {name!r}: variant names must be unique and 'below' must name variants "
                             f"(unknown: {unknown})")
        studies[name] = Study(name=name, source=str(spec["source"]), kind=spec["kind"],
                              claim=" ".join(str(spec["claim"]).split()), variants=variants, grid_keys=grid_keys)
    return studies


# ----- the per-seed rows -----------------------------------------------------------------------------------------

def rows_path(results_dir: Path, study: str, dataset: str) -> Path:
    return Path(results_dir) / f"ablation_{study}_{dataset}.csv"


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def append_row(path: Path, record: Mapping[str, object]) -> None:
    """Add one row; the file is rewritten whole so its header always matches ROW_COLUMNS."""
    rows = read_rows(path) + [{key: str(record.get(key, "")) for key in ROW_COLUMNS}]
    write_csv(path, ROW_COLUMNS, [[row.get(key, "") for key in ROW_COLUMNS] for row in rows])


def overrides_text(overrides: Mapping[str, Any]) -> str:
    return json.dumps(dict(overrides), sort_keys=True, default=str)


def settings_text(overrides: Mapping[str, Any], config_files: Sequence[str] = (), checkpoints_label: str = "") -> str:
    """The user's overrides, config files and checkpoints label as the rows record them: rows of equal settings are
    one experiment. Where runs write (OUTPUT_KEYS) is left out."""
    computed = {key: value for key, value in overrides.items() if key not in OUTPUT_KEYS}
    return overrides_text({**computed, **({"config_files": list(config_files)} if config_files else {}),
                           **({"checkpoints_label": checkpoints_label} if checkpoints_label else {})})


def finished(rows: Sequence[Mapping[str, str]], settings: str) -> dict[tuple[str, int], Mapping[str, str]]:
    """The measured (variant, seed) pairs of these settings, latest row of each."""
    return {(row["label"], int(row["seed"])): row for row in quality.latest_per_seed(rows)
            if row["settings"] == settings and row["status"] == "ok"}


def measured_row(variant: Variant, seed: int, settings: str, metrics: Mapping[str, float], checkpoint: str,
                 train_seconds: float | None = None, users: int | None = None,
                 decode_seconds: float | None = None) -> dict[str, object]:
    info = provenance()
    return {
        "label": variant.name, "seed": seed, "status": "ok", "note": "",
        **{metric: metrics.get(metric, "") for metric in METRICS},
        "users": users or "", "decode_seconds": "" if decode_seconds is None else decode_seconds,
        "decode_ms_per_user": "" if decode_seconds is None else 1000 * decode_seconds / users,
        "train_seconds": "" if train_seconds is None else train_seconds,
        "variant_overrides": overrides_text(variant.overrides), "settings": settings, "checkpoint": checkpoint,
        "test_result": json.dumps(dict(metrics), sort_keys=True),
        **{key: info[key] for key in ("commit", "hardware", "date", "command")},
    }


def skipped_row(variant: Variant, seed: int, settings: str, note: str, checkpoint: str = "") -> dict[str, object]:
    info = provenance()
    return {"label": variant.name, "seed": seed, "status": "skipped", "note": note,
            "variant_overrides": overrides_text(variant.overrides), "settings": settings, "checkpoint": checkpoint,
            **{key: info[key] for key in ("commit", "hardware", "date", "command")}}


# ----- running -------------------------------------------------------------------------------------------------

def unknown_keys(variant: Variant, known: set[str]) -> list[str]:
    return sorted(key for key in variant.overrides if key not in known)


def base_config(dataset: str, config_files: Sequence[str], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Every key, with its value, that this code's config layers define for LLaDARec on ``dataset`` (RecBole's,
    ours, the user's): the configuration a variant changes."""
    return dict(build_config(MODEL, dataset, config_files, overrides).final_config_dict)


def known_keys(dataset: str, config_files: Sequence[str], overrides: Mapping[str, Any]) -> set[str]:
    return set(base_config(dataset, config_files, overrides))


def changes(variant_overrides: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """The overrides that change the configuration: a study's reference row (e.g. his_mask_weight: 3.5, the default)
    changes nothing."""
    return {key: value for key, value in variant_overrides.items() if base.get(key) != value}


def same_run_in_another_study(study: Study, variant: Variant, seed: int, settings: str, base: Mapping[str, Any],
                              results_dir: Path, dataset: str) -> tuple[str, Mapping[str, str]] | None:
    """(study name, row) of a finished run of another trained study with the same settings, seed and effective
    configuration: the full model of `losses` is the MH-VQ-VAE row of `tokenizer`, the bidirectional row of
    `attention` and alpha=3.5 of `alpha`, so one run serves all four."""
    wanted = changes(variant.overrides, base)
    for path in sorted(Path(results_dir).glob(f"ablation_*_{dataset}.csv")):
        other = path.stem[len("ablation_"):-len(f"_{dataset}")]
        if other == study.name:
            continue
        for (_, row_seed), row in finished(read_rows(path), settings).items():
            trained_there = row["train_seconds"] and not row["note"]  # not itself a reused row
            if row_seed == seed and trained_there and changes(json.loads(row["variant_overrides"]), base) == wanted:
                return other, row
    return None


def reused_row(variant: Variant, other_study: str, row: Mapping[str, str]) -> dict[str, object]:
    """``row`` of another study's identical run, relabelled as this variant's."""
    return {**{key: row.get(key, "") for key in ROW_COLUMNS}, "label": variant.name,
            "variant_overrides": overrides_text(variant.overrides),
            "note": f"the run of {other_study}/{row['label']}: the same configuration"}


def train(dataset: str, config_files: Sequence[str], overrides: Mapping[str, Any], seed: int,
          label: str) -> tuple[str, RunResult]:
    """One LLaDARec run; returns its checkpoint and the run's result.

    RecBole names a checkpoint by the second its trainer was made, so a short run could overwrite the previous
    one's: each is renamed at once with ``label`` and the seed (as quality.py adds the seed).
    """
    result = run(MODEL, dataset, config_files, {**overrides, "seed": seed})
    saved = Path(result.saved_model_file)
    return str(saved.rename(saved.with_name(f"{saved.stem}-{slugify(label)}-seed{seed}{saved.suffix}"))), result


def chosen(study: Study, only: Collection[str]) -> tuple[Variant, ...]:
    """The study's variants named in ``only``, or all of them when it is empty."""
    return tuple(v for v in study.variants if not only or v.name in only)


def run_trained_study(study: Study, dataset: str, seeds: Sequence[int], overrides: Mapping[str, Any],
                      results_dir: Path, config_files: Sequence[str], only: Collection[str] = ()) -> None:
    path, settings = rows_path(results_dir, study.name, dataset), settings_text(overrides, config_files)
    base = base_config(dataset, config_files, overrides)
    for seed in seeds:  # seed by seed, so that a run cut short leaves whole comparisons
        for variant in chosen(study, only):
            missing = unknown_keys(variant, set(base))
            if (variant.name, seed) in finished(read_rows(path), settings):
                continue
            if missing:
                append_row(path, skipped_row(variant, seed, settings, f"this code has no key {', '.join(missing)}"))
            elif (same := same_run_in_another_study(study, variant, seed, settings, base, results_dir,
                                                    dataset)) is not None:
                append_row(path, reused_row(variant, *same))
            else:
                checkpoint, result = train(dataset, config_files, {**overrides, **variant.overrides}, seed,
                                           f"{study.name}-{variant.name}")
                append_row(path, measured_row(variant, seed, settings, result.test_result, checkpoint,
                                              train_seconds=result.train_seconds))
            write_report(study, dataset, results_dir, plot=False)  # the plot once at the end: it is slow


def with_overrides(loaded: tradeoff.LoadedCheckpoint, overrides: Mapping[str, Any]) -> tradeoff.LoadedCheckpoint:
    """The checkpoint's model rebuilt from its config plus ``overrides``, with the checkpoint's weights (and SIDs)."""
    config = copy.deepcopy(loaded.config)
    for key, value in overrides.items():
        config[key] = value
    model = get_model(config["model"])(config, loaded.train_split).to(loaded.device)
    model.load_state_dict(loaded.model.state_dict())
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    return dataclasses.replace(loaded, config=config, model=model, trainer=trainer)


def decode_variant(loaded: tradeoff.LoadedCheckpoint, overrides: Mapping[str, Any],
                   first_batch: Any) -> tuple[int, float, dict[str, float]] | str:
    """(test users, seconds, metrics) of the checkpoint's model rebuilt with ``overrides``, or why the model refuses
    them (a value it rejects fails at construction or on the first batch)."""
    try:
        rebuilt = with_overrides(loaded, overrides)
        rebuilt.model.eval()
        with torch.no_grad():
            rebuilt.model.full_sort_predict(first_batch)
    except ValueError as error:
        return f"rejected by the model: {error}"
    init_seed(loaded.config["seed"], loaded.config["reproducibility"])  # the random order draws from torch's RNG
    return tradeoff.timed_test_evaluation(rebuilt)


def decode_variants(study: Study, loaded: tradeoff.LoadedCheckpoint, checkpoint: str, settings: str,
                    overrides: Mapping[str, Any], known: set[str], path: Path, dataset: str,
                    results_dir: Path, only: Collection[str] = ()) -> None:
    """Evaluate every variant of a decode study (of ``only``, when named) on one loaded checkpoint that the rows
    file lacks for it."""
    seed = loaded.config["seed"]
    decode_overrides = {k: v for k, v in overrides.items() if k not in LOADING_KEYS}
    first_batch = next(iter(loaded.test_data))[0].to(loaded.device)
    for variant in chosen(study, only):
        done = finished(read_rows(path), settings).get((variant.name, seed))
        if done is not None and done["checkpoint"] == checkpoint:
            continue
        missing = unknown_keys(variant, known)
        outcome = (f"this code has no key {', '.join(missing)}" if missing
                   else decode_variant(loaded, {**decode_overrides, **variant.overrides}, first_batch))
        if isinstance(outcome, str):
            append_row(path, skipped_row(variant, seed, settings, outcome, checkpoint))
        else:
            users, seconds, metrics = outcome
            append_row(path, measured_row(variant, seed, settings, metrics, checkpoint, users=users,
                                          decode_seconds=seconds))
        write_report(study, dataset, results_dir, plot=False)  # the plot once at the end: it is slow


def run_decode_study(study: Study, dataset: str, seeds: Sequence[int], overrides: Mapping[str, Any],
                     results_dir: Path, config_files: Sequence[str], checkpoints: Sequence[Path] = (),
                     only: Collection[str] = (), checkpoints_label: str = "") -> None:
    """Decode every variant on one checkpoint per seed: ``checkpoints`` if given, else one trained here per seed (a
    rerun reuses the checkpoint that the seed's earlier rows name, if the file is still there)."""
    path = rows_path(results_dir, study.name, dataset)
    settings = settings_text(overrides, config_files, checkpoints_label)
    known = known_keys(dataset, config_files, overrides)
    data_path, device = overrides.get("data_path"), overrides.get("device")
    if checkpoints:
        for checkpoint in checkpoints:
            loaded = tradeoff.load_checkpoint(checkpoint, data_path, device)
            if loaded.config["dataset"] != dataset:
                raise ValueError(f"{checkpoint} is a {loaded.config['dataset']} checkpoint, not {dataset}")
            seed = loaded.config["seed"]
            others = sorted({row["checkpoint"] for (_, row_seed), row in finished(read_rows(path), settings).items()
                             if row_seed == seed and row["checkpoint"] != str(checkpoint)})
            if others:
                # Same settings and seed, another model: its rows would silently replace the earlier ones.
                raise ValueError(f"{path.name} already holds seed {seed} of these settings decoded from {others[0]}, "
                                 f"not {checkpoint}: say what these checkpoints are with --checkpoints_label=TEXT "
                                 "(e.g. their training run's label), so that each set keeps a table of its own")
            decode_variants(study, loaded, str(checkpoint), settings, overrides, known, path, dataset, results_dir,
                            only)
        return
    for seed in seeds:
        done = {variant: row for (variant, row_seed), row in finished(read_rows(path), settings).items()
                if row_seed == seed}
        if set(done) >= {v.name for v in chosen(study, only)}:
            continue
        earlier = [row["checkpoint"] for row in done.values() if Path(row["checkpoint"]).is_file()]
        checkpoint = earlier[-1] if earlier else train(dataset, config_files, overrides, seed, study.name)[0]
        loaded = tradeoff.load_checkpoint(Path(checkpoint), data_path, device)
        decode_variants(study, loaded, checkpoint, settings, overrides, known, path, dataset, results_dir, only)


def run_study(study: Study, dataset: str, seeds: Sequence[int], overrides: Mapping[str, Any], results_dir: Path,
              config_files: Sequence[str] = (), checkpoints: Sequence[Path] = (),
              variants: Sequence[str] = (), checkpoints_label: str = "") -> Path:
    """Run what the rows file does not hold yet (of ``variants`` only, when named), and return the report's .md
    path; the report covers every variant of the study."""
    if "seed" in overrides:
        raise ValueError("set seeds with --seeds/--first_seed (or --checkpoints), not --seed")
    unknown = sorted(set(variants) - {v.name for v in study.variants})
    if unknown:
        raise ValueError(f"study {study.name!r} has no variant {', '.join(unknown)}; its variants are "
                         f"{', '.join(v.name for v in study.variants)}")
    if study.kind == "trained":
        if checkpoints or checkpoints_label:
            raise ValueError(f"study {study.name!r} trains its variants; --checkpoints is for decode studies")
        run_trained_study(study, dataset, seeds, overrides, results_dir, config_files, variants)
    else:
        run_decode_study(study, dataset, seeds, overrides, results_dir, config_files, checkpoints, variants,
                         checkpoints_label)
    return write_report(study, dataset, results_dir)


# ----- the report ------------------------------------------------------------------------------------------------

@dataclass
class VariantSummary:
    variant: Variant
    seeds: list[int]  # seeds measured
    mean: dict[str, float]  # METRICS, and the decode time where measured
    std: dict[str, float | None]  # sample standard deviation; None with one seed
    notes: list[str]  # why seeds were skipped
    users: int | None  # test users decoded


def summarise(study: Study, rows: Sequence[Mapping[str, str]], settings: str | None = None) -> list[VariantSummary]:
    """Mean and sample std over seeds per variant, in the study's order, from the rows of ``settings`` (default: the
    latest, the last row's); the latest row of each variant and seed counts."""
    if settings is None:
        settings = rows[-1]["settings"] if rows else ""
    latest = quality.latest_per_seed([row for row in rows if row["settings"] == settings])
    summaries = []
    for variant in study.variants:
        group = [row for row in latest if row["label"] == variant.name]
        measured = [row for row in group if row["status"] == "ok"]
        mean, std = {}, {}
        for column in (*METRICS, "decode_seconds", "decode_ms_per_user"):
            values = [float(row[column]) for row in measured if row.get(column, "") != ""]
            if values:
                mean[column] = statistics.fmean(values)
                std[column] = statistics.stdev(values) if len(values) > 1 else None
        notes = sorted({row["note"] for row in group if row["status"] != "ok"})
        users = {int(row["users"]) for row in measured if row["users"]}
        summaries.append(VariantSummary(variant, sorted(int(row["seed"]) for row in measured), mean, std, notes,
                                        users.pop() if len(users) == 1 else None))
    return summaries


def agreement(summary: VariantSummary, by_name: Mapping[str, VariantSummary]) -> str:
    """'yes' / 'no': whether our mean NDCG@10 is below the best of the rows the paper puts above this one;
    '(within 1 std)' when the gap is no larger than the larger seed std of the two; '–' where nothing to check."""
    others = [by_name[name] for name in summary.variant.below if AGREEMENT_METRIC in by_name[name].mean]
    if not others or AGREEMENT_METRIC not in summary.mean:
        return "–"
    best = max(others, key=lambda s: s.mean[AGREEMENT_METRIC])
    gap = best.mean[AGREEMENT_METRIC] - summary.mean[AGREEMENT_METRIC]
    verdict = "yes" if gap > 0 else "tie" if gap == 0 else "no"
    spread = [s.std[AGREEMENT_METRIC] for s in (summary, best) if s.std[AGREEMENT_METRIC] is not None]
    if spread and abs(gap) <= max(spread):
        verdict += " (within 1 std)"
    return verdict


def _mean_std(summary: VariantSummary, column: str, digits: int = 4) -> str:
    if column not in summary.mean:
        return "–"
    std = summary.std[column]
    if column == "decode_ms_per_user":
        return format_number(summary.mean[column]) + ("" if std is None else f" ± {format_number(std)}")
    return f"{summary.mean[column]:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def summary_table(summaries: Sequence[VariantSummary]) -> tuple[str, list[str]]:
    """(markdown table, one agreement verdict per row with a paper direction)."""
    by_name = {s.variant.name: s for s in summaries}
    rows, verdicts = [], []
    for s in summaries:
        agrees = agreement(s, by_name)
        if s.variant.below:
            verdicts.append(agrees)
        seeds = str(len(s.seeds)) if s.seeds else "–"
        if s.notes:
            seeds += f" (skipped: {'; '.join(s.notes)})"
        rows.append([s.variant.name, f"`{overrides_text(s.variant.overrides)}`", seeds,
                     *(_mean_std(s, m) for m in METRICS), _mean_std(s, "decode_ms_per_user"), s.variant.paper,
                     agrees])
    header = ["variant", "overrides", "seeds", *(quality.METRIC_TITLES[m] for m in METRICS), "decode ms/user",
              "paper", "agrees?"]
    return markdown_table(header, rows), verdicts


def agreement_sentence(study: Study, verdicts: Sequence[str]) -> str:
    checked = [v for v in verdicts if v != "–"]
    if not checked:
        return f"No row with a paper direction has been measured yet (the paper's claim: {study.claim})."
    agree = sum(v.startswith("yes") for v in checked)
    noisy = sum("within" in v for v in checked)
    return (f"{agree} of {len(checked)} rows go the paper's direction on mean NDCG@10"
            + (f" ({noisy} of them by no more than one seed std)" if noisy else "")
            + f"; the paper's claim: {study.claim}.")


def plot_study(study: Study, summaries: Sequence[VariantSummary], path: Path, title: str) -> bool:
    """The steps grid as quality against decode time (tradeoff.py's plot, on the means over seeds); any other decode
    study as NDCG@10 against decode time, one labelled point per variant; a trained study as bars of NDCG@10 and
    Recall@10 with seed std. False (and no file) without matplotlib or measured rows."""
    measured = [s for s in summaries if AGREEMENT_METRIC in s.mean]
    if not measured:
        return False
    if study.grid_keys == ("gen_steps", "num_beams"):
        points = [tradeoff.TradeoffPoint(
            gen_steps=int(s.variant.overrides["gen_steps"]), num_beams=int(s.variant.overrides["num_beams"]),
            users=s.users, seconds=s.mean["decode_seconds"], metrics=s.mean) for s in measured]
        return tradeoff.plot_tradeoff(points, path, title)
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no PNG (draw it later with --summary_only)", file=sys.stderr)
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [s for s in measured if "decode_ms_per_user" in s.mean]
    if study.kind == "decode" and timed:
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        for i, s in enumerate(timed):  # labels alternate above and below: ties (hybrid = beam) stay readable
            ax.errorbar(s.mean["decode_ms_per_user"], s.mean[AGREEMENT_METRIC],
                        yerr=s.std.get(AGREEMENT_METRIC) or 0.0, fmt="o", capsize=3)
            ax.annotate(s.variant.name, (s.mean["decode_ms_per_user"], s.mean[AGREEMENT_METRIC]),
                        textcoords="offset points", xytext=(5, 4 if i % 2 == 0 else -11), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("decode ms per test user (log scale)")
        ax.set_ylabel(f"test {quality.METRIC_TITLES[AGREEMENT_METRIC]} (mean ± std over seeds)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        save_figure(fig, path)
        return True
    fig, ax = plt.subplots(figsize=(max(4.8, 1.1 * len(measured) + 2), 4.2))
    width = 0.38
    for offset, metric in ((-width / 2, "ndcg@10"), (width / 2, "recall@10")):
        ax.bar([i + offset for i in range(len(measured))], [s.mean.get(metric, 0.0) for s in measured], width,
               yerr=[s.std.get(metric) or 0.0 for s in measured], capsize=3, label=quality.METRIC_TITLES[metric])
    ax.set_xticks(range(len(measured)), [s.variant.name for s in measured], rotation=20, ha="right")
    ax.set_ylabel("test metric (mean ± std over seeds)")
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend()
    save_figure(fig, path)
    return True


def earlier_settings_sections(study: Study, rows: Sequence[Mapping[str, str]], latest: str) -> list[tuple[str, str]]:
    """One table per earlier settings of the rows file, newest first: studies rerun on another checkpoint or with
    other overrides keep their earlier results in view."""
    earlier = list(dict.fromkeys(row["settings"] for row in reversed(rows) if row["settings"] != latest))
    sections = []
    for settings in earlier:
        measured = [row for row in rows if row["settings"] == settings and row["status"] == "ok"]
        checkpoints = sorted({row["checkpoint"] for row in measured if row["checkpoint"]})
        dates = sorted({row["date"][:10] for row in measured if row.get("date")})
        table, _ = summary_table(summarise(study, rows, settings))
        where = (f"checkpoints {', '.join(f'`{c}`' for c in checkpoints)}; " if checkpoints else "") + \
            (f"run {', '.join(dates)}" if dates else "")
        sections.append((f"Earlier settings: `{settings}`", f"{where}\n\n{table}" if where else table))
    return sections


def verdict_path(results_dir: Path, study: str, dataset: str) -> Path:
    return Path(results_dir) / f"ablation_{study}_{dataset}_verdict.md"


def write_report(study: Study, dataset: str, results_dir: Path, plot: bool = True) -> Path:
    """Regenerate ``ablation_<study>_<dataset>.md`` (and ``.png`` with ``plot``) from the rows file; a hand-written
    ``ablation_<study>_<dataset>_verdict.md`` beside it becomes the report's "Verdict" section."""
    rows = read_rows(rows_path(results_dir, study.name, dataset))
    summaries = summarise(study, rows)
    table, verdicts = summary_table(summaries)
    md_path = rows_path(results_dir, study.name, dataset).with_suffix(".md")
    title = f"LLaDARec on {dataset}: {study.name} ({study.source})"
    settings = rows[-1]["settings"] if rows else "{}"
    measured_rows = [row for row in rows if row["settings"] == settings and row["status"] == "ok"]
    machines = sorted({(row["commit"], row["hardware"]) for row in measured_rows})
    checkpoints = sorted({row["checkpoint"] for row in measured_rows if row["checkpoint"]})
    notes = [
        f"- {study.kind} study: " + ("every variant trains LLaDARec once per seed with its overrides on top of the "
                                     "settings below." if study.kind == "trained" else
                                     "every variant decodes the same checkpoint per seed, rebuilt from the "
                                     "checkpoint's config, the settings below and its overrides."),
        f"- settings (the user's overrides): `{settings}`; metrics on the test split, mean ± sample std over seeds.",
        "- paper: the direction the paper reports for the row; agrees?: whether our mean NDCG@10 goes that way.",
    ]
    if study.kind == "decode":
        notes.append("- decode ms/user: wall time of RecBole's `trainer.evaluate` over the whole test split "
                     "(decoding, scoring and metrics) after one warm-up batch, between device syncs, per test user.")
    notes += [f"- checkpoints: {', '.join(f'`{c}`' for c in checkpoints)}" if checkpoints else "- no checkpoints",
              f"- per-seed rows: `{rows_path(results_dir, study.name, dataset).name}`"]
    notes += [f"- runs made at commit `{commit}` on `{hardware}`" for commit, hardware in machines]
    sections = [("", table), ("Agreement with the paper", agreement_sentence(study, verdicts)),
                *earlier_settings_sections(study, rows, settings)]
    verdict = verdict_path(results_dir, study.name, dataset)
    if verdict.exists():
        sections.append(("Verdict", verdict.read_text(encoding="utf-8").strip()))
    write_markdown(md_path, title, [*sections, ("Notes", "\n".join(notes))], provenance())
    if plot:
        plot_study(study, summaries, md_path.with_suffix(".png"), f"LLaDARec on {dataset}: {study.name}")
    return md_path


# ----- command line ------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], allow_abbrev=False,
        epilog="Any other --key=value is a RecBole config override for every run (e.g. --data_path=DIR "
               "--epochs=50 --show_progress=False --checkpoint_dir=DIR).")
    parser.add_argument("--study", required=True, help="a study of --studies_file")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--seeds", type=int, default=None, help="seeds per variant (default: 2)")
    parser.add_argument("--first_seed", type=int, default=2024, help="seeds are first_seed, first_seed + 1, ...")
    parser.add_argument("--checkpoints", default="",
                        help="decode studies: comma separated LLaDARec .pth files, one per seed, instead of training")
    parser.add_argument("--checkpoints_label", default="",
                        help="with --checkpoints: what they are (e.g. their training run's label); rows of the same "
                             "settings and label form one table")
    parser.add_argument("--variants", default="", help="comma separated variant names to run (default: all)")
    parser.add_argument("--config_files", default="", help="extra YAML files, space separated (later wins)")
    parser.add_argument("--results_dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--studies_file", type=Path, default=STUDIES_FILE)
    parser.add_argument("--summary_only", action="store_true",
                        help="regenerate the .md and .png from the rows file without running")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    studies = load_studies(args.studies_file)
    if args.study not in studies:
        parser.error(f"unknown study {args.study!r}; the studies are {', '.join(studies)}")
    study = studies[args.study]
    checkpoints = [Path(p) for p in args.checkpoints.split(",") if p]
    if checkpoints and args.seeds is not None:
        parser.error("--checkpoints gives one seed per checkpoint; leave --seeds out")
    if args.checkpoints_label and not checkpoints:
        parser.error("--checkpoints_label names the checkpoints of --checkpoints")
    missing = [str(path) for path in checkpoints if not path.is_file()]
    if missing:
        parser.error(f"--checkpoints: no such file: {', '.join(missing)}")
    if args.summary_only:
        md_path = write_report(study, args.dataset, args.results_dir)
    else:
        seeds = [args.first_seed + i for i in range(2 if args.seeds is None else args.seeds)]
        config_files = split_config_files(args.config_files)
        md_path = run_study(study, args.dataset, seeds, parse_overrides(rest), args.results_dir, config_files,
                            checkpoints, [name for name in args.variants.split(",") if name], args.checkpoints_label)
    print(md_path.read_text())
    print(f"written to {md_path.with_suffix('')}.{{md,csv,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
