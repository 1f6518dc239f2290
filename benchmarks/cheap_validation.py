"""Does cheap validation pick the same epochs as beam-search validation? One LLaDARec run that, at every validation,
also scores the validation split with cheaper decodings; then the curves side by side.

    python benchmarks/cheap_validation.py --dataset=ml-100k [--compare=marginal,greedy] [--config_files="a.yaml"]
        [--results_dir=DIR] [--key=value ...]

The run trains and selects its checkpoint as configured (``valid_scoring`` / ``valid_num_beams``, every epoch). At
each validation it also evaluates the validation split under each ``--compare`` decoding (``marginal``: one forward
per user; ``greedy``: beam search with one beam) and logs ``epoch N valid <name>: <score>`` lines. Writes
``valid_curves_<dataset>_cheap.{md,csv,png}`` (``valid_curves.py``'s files), whose table gives the epoch each curve
would select.
"""

from __future__ import annotations

import argparse
import sys
from logging import getLogger
from pathlib import Path
from typing import Any, Mapping, Sequence

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import valid_curves
from benchmarks.common import RESULTS_DIR
from recbole.utils import init_logger
from recbole_llada.training import quick_start

DECODINGS: dict[str, dict[str, Any]] = {"marginal": {"scoring": "marginal"}, "greedy": {"scoring": "beam", "num_beams": 1}}


def add_comparison_curves(trainer: Any, valid_data: Any, compare: Sequence[str]) -> dict[str, dict[int, float]]:
    """Wrap ``trainer._valid_epoch`` so that every validation also scores ``valid_data`` under each decoding in
    ``compare``; returns the curves {name: {epoch: score}} (``selection``: the trainer's own), filled as training
    runs. Needs ``eval_step: 1`` (one validation per epoch, so the n-th validation is epoch n - 1)."""
    if trainer.config["eval_step"] != 1:
        raise ValueError("cheap_validation.py validates every epoch: set eval_step to 1")
    metric = trainer.config["valid_metric"].lower()
    curves: dict[str, dict[int, float]] = {valid_curves.SELECTION: {}, **{name: {} for name in compare}}
    selection = trainer._valid_epoch

    def valid_epoch(data, show_progress=False):
        score, result = selection(data, show_progress=show_progress)
        epoch = len(curves[valid_curves.SELECTION])
        curves[valid_curves.SELECTION][epoch] = score
        for name in compare:
            with trainer.model.decoding(**DECODINGS[name]):
                curves[name][epoch] = trainer.evaluate(valid_data, load_best_model=False)[metric]
            getLogger().info(f"epoch {epoch} valid {name}: {curves[name][epoch]:.6f}")
        return score, result

    trainer._valid_epoch = valid_epoch
    return curves


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--compare", default="marginal,greedy", help=f"comma separated, of {sorted(DECODINGS)}")
    parser.add_argument("--config_files", default="", help="extra YAML files, space separated")
    parser.add_argument("--results_dir", type=Path, default=RESULTS_DIR)
    args, rest = parser.parse_known_args(argv)
    compare = [name for name in args.compare.split(",") if name]
    unknown = sorted(set(compare) - set(DECODINGS))
    if unknown:
        parser.error(f"unknown decodings {unknown}; expected some of {sorted(DECODINGS)}")
    overrides: Mapping[str, Any] = {"eval_step": 1, **quick_start.parse_overrides(rest)}
    config = quick_start.build_config("LLaDARec", args.dataset, args.config_files.split(), overrides)
    quick_start.ensure_dataset_files(config)
    init_logger(config)
    experiment = quick_start.prepare(config)
    curves = add_comparison_curves(experiment.trainer, experiment.valid_data, compare)
    experiment.trainer.fit(experiment.train_data, experiment.valid_data, saved=False,
                           show_progress=config["show_progress"])
    name = f"{args.dataset}_cheap"
    path = valid_curves.write_curves({f"{args.dataset} seed {config['seed']}": curves}, name, args.results_dir)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
