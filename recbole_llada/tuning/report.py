"""What a hyperparameter search leaves behind: the trials table, the best config as YAML, the learning curves.

Plain functions over ``TrialRecord``s, free of Ray, so the reporting is testable without a cluster.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from recbole_llada.training.results import markdown_table, provenance_markdown

TERMINATED = "TERMINATED"  # trained to the last epoch, or stopped by RecBole's own early stopping
EARLY_STOPPED = "EARLY_STOPPED"  # stopped by the scheduler (ASHA) at a rung
ERROR = "ERROR"


@dataclass
class TrialRecord:
    trial_id: str
    params: dict[str, Any]
    status: str
    valid_curve: list[tuple[int, float]] = field(default_factory=list)  # (epoch, valid score) per validation
    error: str = ""

    @property
    def epochs_run(self) -> int:
        return self.valid_curve[-1][0] if self.valid_curve else 0

    def best_valid(self, bigger_is_better: bool) -> float | None:
        scores = [score for _, score in self.valid_curve if math.isfinite(score)]
        if not scores:
            return None
        return max(scores) if bigger_is_better else min(scores)


def rank_trials(trials: Sequence[TrialRecord], bigger_is_better: bool) -> list[TrialRecord]:
    """Best trial first; trials without a finite validation score (errors, NaN) last, in their original order."""
    scored = [t for t in trials if t.best_valid(bigger_is_better) is not None]
    unscored = [t for t in trials if t.best_valid(bigger_is_better) is None]
    scored.sort(key=lambda t: t.best_valid(bigger_is_better), reverse=bigger_is_better)
    return scored + unscored


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def trials_table(trials: Sequence[TrialRecord], valid_metric: str, bigger_is_better: bool,
                 precise: bool = False) -> tuple[list[str], list[list[object]]]:
    """One row per trial, best first: id, status, epochs run, best valid score, every searched parameter, error.

    ``precise`` keeps full floats (for CSV); otherwise numbers are rounded for reading.
    """
    param_names = list(dict.fromkeys(name for trial in trials for name in trial.params))
    header = ["trial", "status", "epochs", f"best valid {valid_metric}", *param_names, "error"]
    body = []
    for trial in rank_trials(trials, bigger_is_better):
        best = trial.best_valid(bigger_is_better)
        best_cell = "" if best is None else (best if precise else f"{best:.4f}")
        params = [trial.params.get(name, "") for name in param_names]
        body.append([trial.trial_id, trial.status, trial.epochs_run, best_cell,
                     *(params if precise else [_format_value(p) for p in params]), trial.error])
    return header, body


def write_trials_csv(trials: Sequence[TrialRecord], valid_metric: str, bigger_is_better: bool, path: Path) -> Path:
    header, body = trials_table(trials, valid_metric, bigger_is_better, precise=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(body)
    return path


def _plain(value: Any) -> Any:
    """YAML-safe copy: tuples become lists, numpy scalars become Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def write_best_config(config: Mapping[str, Any], path: Path, header_lines: Sequence[str]) -> Path:
    """The best trial's full user-level config, loadable with ``--config_files=<path>``."""
    comment = "".join(f"# {line}\n" for line in header_lines)
    # One key per line, nested values inline (as in properties/*.yaml).
    body = "".join(yaml.safe_dump({key: value}, sort_keys=False,
                                  default_flow_style=None if isinstance(value, (dict, list)) else False)
                   for key, value in _plain(config).items())
    path.write_text(comment + body)
    return path


def plot_valid_curves(trials: Sequence[TrialRecord], valid_metric: str, bigger_is_better: bool,
                      path: Path) -> Path:
    """Validation score against epoch, one line per trial; scheduler-stopped trials dashed, the best one bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ranked = rank_trials(trials, bigger_is_better)
    best_id = ranked[0].trial_id if ranked and ranked[0].best_valid(bigger_is_better) is not None else None
    fig, ax = plt.subplots(figsize=(8, 5))
    for trial in trials:
        if not trial.valid_curve:
            continue
        epochs, scores = zip(*trial.valid_curve)
        ax.plot(epochs, scores, marker="o", markersize=3,
                linestyle="--" if trial.status == EARLY_STOPPED else "-",
                linewidth=2.5 if trial.trial_id == best_id else 1.0,
                label=f"{trial.trial_id} ({trial.status.lower()})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"valid {valid_metric}")
    ax.set_title(f"Validation {valid_metric} per trial (dashed: stopped early by the scheduler)")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


@dataclass
class SearchSummary:
    model: str
    dataset: str
    tune_dir: Path
    valid_metric: str
    bigger_is_better: bool
    space_file: str
    space: dict[str, Any]
    trials: list[TrialRecord]
    best: TrialRecord | None
    best_config_file: Path | None
    test_result: dict[str, float] | None
    best_valid_result: dict[str, float] | None


def summary_markdown(summary: SearchSummary, info: Mapping[str, str]) -> str:
    header, body = trials_table(summary.trials, summary.valid_metric, summary.bigger_is_better)
    counts = {status: sum(t.status == status for t in summary.trials) for status in (TERMINATED, EARLY_STOPPED, ERROR)}
    space_lines = "\n".join(f"- `{key}`: `{value}`" for key, value in summary.space.items())
    parts = [
        f"# Hyperparameter search: {summary.model} on {summary.dataset}\n",
        f"Selection on validation {summary.valid_metric} "
        f"({'higher' if summary.bigger_is_better else 'lower'} is better); test metrics computed once, "
        "for the best config only.\n",
        f"Search space (`{summary.space_file}`):\n\n{space_lines}\n",
        f"Trials: {len(summary.trials)} ({', '.join(f'{n} {s}' for s, n in counts.items())})\n",
        markdown_table(header, body) + "\n",
    ]
    if summary.best is not None:
        best_params = ", ".join(f"`{k}={_format_value(v)}`" for k, v in summary.best.params.items())
        parts.append(f"## Best trial: {summary.best.trial_id}\n\n{best_params}\n\n"
                     f"Config: `{summary.best_config_file}`\n")
    if summary.test_result is not None and summary.best_valid_result is not None:
        names = list(summary.test_result)
        rows = [["valid (final run)", *(f"{summary.best_valid_result.get(n, float('nan')):.4f}" for n in names)],
                ["test", *(f"{summary.test_result[n]:.4f}" for n in names)]]
        parts.append("Final run with the best config:\n\n" + markdown_table(["split", *names], rows) + "\n")
    parts.append(provenance_markdown(dict(info)) + "\n")
    return "\n".join(parts)
