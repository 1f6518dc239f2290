"""Quality against decoding time of a trained LLaDARec: test NDCG@10 / Recall@10 for T in 1..M and B in {10, 20, 50}.

    python benchmarks/tradeoff.py --checkpoint=saved/LLaDARec-<time>.pth [--data_path=../shared/data/amazon2023]
        [--gen_steps=1,2,3,4] [--beams=10,20,50] [--device=cuda]
    python benchmarks/tradeoff.py --replot=benchmarks/results/tradeoff_Scientific.csv

The checkpoint is the ``.pth`` that ``quick_start.run`` / the trainer saved (``saved_model_file``); it carries the
config and the SID table. The data split is rebuilt from the checkpoint's config (``--data_path`` replaces the folder
holding ``<dataset>/``), and the model keeps the checkpoint's SIDs: the SID pipeline is not re-run. Each setting is
evaluated on the whole test split with RecBole's evaluator (``trainer.evaluate(test_data, load_best_model=False)``),
timed wall-clock between device syncs after one warm-up batch. Writes ``tradeoff_<dataset>.{md,csv,png}`` (the PNG needs
matplotlib; without it, ``--replot`` draws it later from the CSV on another machine).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import yaml

from benchmarks.common import save_figure, RESULTS_DIR, format_number, pick_device, synchronize, write_csv, write_markdown
from recbole.config import Config
from recbole.data import data_preparation
from recbole.data.dataset import SequentialDataset
from recbole.utils import get_model, get_trainer, init_seed
from recbole_llada import resources
from recbole_llada.training.results import markdown_table, provenance

DEFAULT_BEAMS = (10, 20, 50)
PLOT_METRIC = "ndcg@10"


@dataclass
class TradeoffPoint:
    gen_steps: int
    num_beams: int
    users: int
    seconds: float  # wall time of evaluating the whole test split
    metrics: dict[str, float]  # RecBole's test result, e.g. {"ndcg@10": ...}

    @property
    def users_per_second(self) -> float:
        return self.users / self.seconds


@dataclass
class LoadedCheckpoint:
    config: Config
    model: torch.nn.Module
    trainer: object
    test_data: object
    device: torch.device
    train_split: SequentialDataset  # what the model is constructed from (SIDs, training targets)


def load_checkpoint(path: Path, data_path: str | None = None, device: str | None = None) -> LoadedCheckpoint:
    """Model, trainer and test split of a RecBole checkpoint, without recbole.quick_start (it imports ray)."""
    # RecBole checkpoints pickle their Config, which weights_only loading refuses; the file is our own output.
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    config = checkpoint["config"]
    config.compatibility_settings()  # unpickling skips Config.__init__, which sets the numpy aliases RecBole uses
    if config["model"] != "LLaDARec":
        raise ValueError(f"{path} holds a {config['model']} checkpoint; the trade-off needs LLaDARec")
    # A checkpoint saved before a model key existed (e.g. scoring) gets that key's default from the model YAML.
    for key, value in yaml.safe_load(resources.model_config("LLaDARec").read_text()).items():
        if key not in config:
            config[key] = value
    if data_path is not None:
        config["data_path"] = os.path.join(data_path, config["dataset"])
    target = pick_device(device)
    config["device"] = target
    init_seed(config["seed"], config["reproducibility"])
    # RecBole's own sequential dataset gives the same interactions and split as LLaDARecDataset, which only adds
    # SIDs; the model gets the checkpoint's SID table instead of a re-run of the SID pipeline (which could need the
    # training machine's text encoder or embeddings, and must give the SIDs the model was trained with anyway).
    train_data, _, test_data = data_preparation(config, SequentialDataset(config))
    train_split = train_data._dataset
    train_split.item_sid = checkpoint["state_dict"]["item_sid"]
    train_split.sid_codebook_size = config["sid_codebook_size"]  # the checkpoint's own config built its SIDs
    model = get_model(config["model"])(config, train_split).to(target)
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    return LoadedCheckpoint(config=config, model=model, trainer=trainer, test_data=test_data, device=target,
                            train_split=train_split)


def evaluate_point(loaded: LoadedCheckpoint, gen_steps: int, num_beams: int) -> TradeoffPoint:
    with loaded.model.decoding(gen_steps=gen_steps, num_beams=num_beams):
        users, seconds, metrics = timed_test_evaluation(loaded)
    return TradeoffPoint(gen_steps=gen_steps, num_beams=num_beams, users=users, seconds=seconds, metrics=metrics)


def timed_test_evaluation(loaded: LoadedCheckpoint) -> tuple[int, float, dict[str, float]]:
    """(test users, wall seconds, RecBole's test metrics) of the model as it is set up now: one warm-up batch,
    then ``trainer.evaluate`` over the whole test split between device syncs."""
    model = loaded.model
    model.eval()
    with torch.no_grad():  # warm-up: kernels for these shapes, the SID index on the device
        model.full_sort_predict(next(iter(loaded.test_data))[0].to(loaded.device))
    synchronize(loaded.device)
    start = time.perf_counter()
    result = loaded.trainer.evaluate(loaded.test_data, load_best_model=False, show_progress=False)
    synchronize(loaded.device)
    seconds = time.perf_counter() - start
    users = loaded.test_data.sample_size  # sequential full sort: one test interaction per user
    return users, seconds, {k: float(v) for k, v in result.items()}


def evaluate_tradeoff(loaded: LoadedCheckpoint, gen_steps: Sequence[int] | None = None,
                      beams: Sequence[int] = DEFAULT_BEAMS) -> list[TradeoffPoint]:
    """Every (T, B) of the grid; T defaults to 1..M."""
    steps = list(gen_steps) if gen_steps else list(range(1, loaded.model.sid_length + 1))
    return [evaluate_point(loaded, t, b) for t in steps for b in beams]


# ----- files ------------------------------------------------------------------------------------------------

def metric_names(points: Sequence[TradeoffPoint]) -> list[str]:
    return list(dict.fromkeys(name for p in points for name in p.metrics))


def write_points_csv(points: Sequence[TradeoffPoint], path: Path) -> None:
    names = metric_names(points)
    write_csv(path, ["gen_steps", "num_beams", "users", "seconds", "users_per_second", *names],
              [[p.gen_steps, p.num_beams, p.users, p.seconds, p.users_per_second,
                *(p.metrics.get(n, "") for n in names)] for p in points])


def read_points_csv(path: Path) -> list[TradeoffPoint]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    fixed = {"gen_steps", "num_beams", "users", "seconds", "users_per_second"}
    return [TradeoffPoint(gen_steps=int(r["gen_steps"]), num_beams=int(r["num_beams"]), users=int(r["users"]),
                          seconds=float(r["seconds"]),
                          metrics={k: float(v) for k, v in r.items() if k not in fixed and v != ""})
            for r in rows]


def plot_tradeoff(points: Sequence[TradeoffPoint], path: Path, title: str) -> bool:
    """NDCG@10 against decode seconds, one line per T, points labelled with B; False if matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no PNG (draw it later with --replot=<the csv>)", file=sys.stderr)
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for gen_steps in sorted({p.gen_steps for p in points}):
        line = sorted((p for p in points if p.gen_steps == gen_steps), key=lambda p: p.seconds)
        ax.plot([p.seconds for p in line], [p.metrics[PLOT_METRIC] for p in line], marker="o", label=f"T={gen_steps}")
        for p in line:
            ax.annotate(f"B={p.num_beams}", (p.seconds, p.metrics[PLOT_METRIC]), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(f"decode + evaluation time for {points[0].users:,} test users (s, log scale)")
    ax.set_ylabel("NDCG@10")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    save_figure(fig, path)
    return True


def write_tradeoff(points: Sequence[TradeoffPoint], name: str, out_dir: Path, checkpoint: str,
                   device: str) -> list[Path]:
    csv_path, md_path, png_path = (Path(out_dir) / f"tradeoff_{name}.{ext}" for ext in ("csv", "md", "png"))
    write_points_csv(points, csv_path)
    rows = [[p.gen_steps, p.num_beams, f"{p.metrics.get('ndcg@10', float('nan')):.4f}",
             f"{p.metrics.get('recall@10', float('nan')):.4f}", format_number(p.seconds),
             format_number(p.users_per_second)]
            for p in points]
    table = markdown_table(["T (gen_steps)", "B (beams)", "NDCG@10", "Recall@10", "test eval s", "users/s"], rows)
    notes = "\n".join([
        f"- checkpoint: `{checkpoint}`, evaluated on `{device}`; all metrics of every setting are in "
        f"`{csv_path.name}`.",
        "- test eval s: wall time of RecBole's `trainer.evaluate` over the whole test split (decoding, scoring and "
        "metrics), after one warm-up batch per setting.",
        "- T steps commit M // T positions each, the remainder spread over the first steps.",
    ])
    write_markdown(md_path, f"LLaDARec on {name}: quality vs decoding time", [("", table), ("Notes", notes)],
                   provenance())
    written = [md_path, csv_path]
    if plot_tradeoff(points, png_path, f"LLaDARec on {name}"):
        written.append(png_path)
    return written


def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="LLaDARec .pth saved by quick_start.run / the trainer")
    source.add_argument("--replot", type=Path, help="draw the PNG from an existing tradeoff CSV and stop")
    parser.add_argument("--data_path", default=None,
                        help="folder holding <dataset>/ (default: the checkpoint's config)")
    parser.add_argument("--gen_steps", type=_int_list, default=None, help="comma separated T (default: 1..M)")
    parser.add_argument("--beams", type=_int_list, default=list(DEFAULT_BEAMS), help="comma separated B")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--name", default=None, help="file name part (default: the checkpoint's dataset)")
    parser.add_argument("--out_dir", type=Path, default=RESULTS_DIR)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.replot is not None:
        points = read_points_csv(args.replot)
        name = args.name or args.replot.stem.removeprefix("tradeoff_")
        png_path = args.replot.with_suffix(".png")
        return 0 if plot_tradeoff(points, png_path, f"LLaDARec on {name}") else 1
    loaded = load_checkpoint(args.checkpoint, args.data_path, args.device)
    points = evaluate_tradeoff(loaded, args.gen_steps, args.beams)
    name = args.name or loaded.config["dataset"]
    written = write_tradeoff(points, name, args.out_dir, str(args.checkpoint), str(loaded.device))
    print(written[0].read_text())
    print("written: " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
