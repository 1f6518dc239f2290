"""Run one model, or several side by side, through RecBole's pipeline with the shared protocol.

Every model (RecBole built-ins and the plugin's) sees the same config layers, the same dataset files and the
same leave-one-out split, so the comparison table compares models, not data handling:

    RecBole defaults (incl. RecBole's own model YAML) < properties/overall.yaml < plugin model YAML
    < dataset_configs/<dataset>.yaml < properties/model_dataset/<Model>-<dataset>.yaml < user config files
    < --key=value overrides

The protocol file also carries training defaults for the baselines (batch, learning rate, epochs); a plugin
model's own YAML comes after it, so LLaDARec keeps its paper recipe (batch 1024, lr 3e-3, ...).
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from dataclasses import dataclass
from logging import getLogger
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_logger, init_seed, set_color

from recbole_llada import config_check, resources
from recbole_llada.data.checks import check_interaction_file, load_time_field
from recbole_llada.errors import UserInputError
from recbole_llada.model.names import check_model_name
from recbole_llada.registry import PLUGIN_MODELS
from recbole_llada.training.results import ComparisonRow, write_comparison
from recbole_llada.training.trainer import LLaDARecTrainer
from recbole_llada.training.resume import resumable
from recbole_llada.training.resume import resume as resume_from


class PluginConfig(Config):
    """RecBole's ``Config`` without its implicit ``sys.argv`` parsing.

    RecBole reads ``--key=value`` from ``sys.argv`` behind the caller's back; our CLI has flags of its own
    (``--model=a,b``, ``--tune=...``) and passes overrides explicitly as ``config_dict`` instead.
    """

    def _load_cmd_line(self) -> dict:
        return {}


def parse_overrides(args: Sequence[str]) -> dict[str, Any]:
    """``["--epochs=3", "--topk=[5,10]"]`` -> ``{"epochs": 3, "topk": [5, 10]}`` with RecBole's own value rules."""
    overrides: dict[str, Any] = {}
    for arg in args:
        if not arg.startswith("--") or "=" not in arg:
            raise UserInputError(f"Cannot parse argument {arg!r}: overrides are written --key=value.")
        key, value = arg[2:].split("=", 1)
        overrides[key] = value
    return Config._convert_config_dict(None, overrides)


def config_files_for(model: str, dataset: str, user_files: Sequence[str] = ()) -> list[str]:
    files = [resources.overall_config()]
    if model in PLUGIN_MODELS:
        files.append(resources.model_config(model))
    dataset_yaml = resources.dataset_config(dataset)
    if dataset_yaml.is_file():
        files.append(dataset_yaml)
    model_on_dataset = resources.model_dataset_config(model, dataset)
    if model_on_dataset.is_file():
        files.append(model_on_dataset)
    for user_file in user_files:
        if not Path(user_file).is_file():
            raise UserInputError(f"Config file {user_file!r} does not exist.")
        files.append(Path(user_file))
    return [str(f) for f in files]


def build_config(model: str, dataset: str, config_files: Sequence[str] = (),
                 overrides: Mapping[str, Any] | None = None) -> Config:
    """The run's config, checked before any data is loaded (``config_check``): every mistake in the model name,
    the user's YAML files or the overrides ends in a ``UserInputError``."""
    check_model_name(model)
    overrides = dict(overrides or {})
    sources = {key: config_check.COMMAND_LINE for key in overrides}
    user_values: dict[str, Any] = {}
    for user_file in config_files:
        if not Path(user_file).is_file():
            raise UserInputError(f"Config file {user_file!r} does not exist.")
        values = config_check.load_user_config_file(Path(user_file))
        config_check.check_unknown_keys(values, source=f"config file {user_file}")
        user_values.update(values)
        sources.update({key: f"config file {user_file}" for key in values if key not in overrides})
    config_check.check_unknown_keys(overrides, source=config_check.COMMAND_LINE)
    try:
        config = PluginConfig(
            model=model,
            dataset=dataset,
            config_file_list=config_files_for(model, dataset, config_files),
            config_dict=overrides,
        )
    except (ValueError, TypeError, NotImplementedError, RuntimeError) as error:
        raise UserInputError(f"RecBole rejected the configuration: {error}") from error
    config_check.check_values(model, {key: config[key] for key in sources}, sources)
    if model == "LLaDARec":
        config_check.check_semantic_id_config(config)
        config_check.check_item_scorer(config)
    user_data_path = overrides.get("data_path", user_values.get("data_path"))
    if dataset == "ml-100k" and user_data_path is not None:
        # RecBole always reads ml-100k from its bundled copy; a data_path the user gave must win.
        config["data_path"] = os.path.join(user_data_path, dataset)
    return config


def ensure_dataset_files(config: Config) -> None:
    """Stop with a helpful paragraph, or prepare Amazon 2023 data, when the atomic files are missing; check the
    ``.inter`` file before RecBole reads it (``data.checks``)."""
    dataset = config["dataset"]
    inter_file = Path(config["data_path"]) / f"{dataset}.inter"
    if not inter_file.is_file():
        if not config["amazon2023_category"]:
            known = ", ".join(resources.available_dataset_configs())
            bundled = (" ml-100k ships with RecBole: leave out --data_path to use that copy."
                       if dataset == "ml-100k" else " ml-100k ships with RecBole.")
            raise UserInputError(
                f"Dataset {dataset!r} not found: RecBole expects the atomic files in {Path(config['data_path'])}/ "
                f"(e.g. {inter_file.name}). Configured datasets: {known}.{bundled} Amazon 2023 datasets "
                "(Scientific, Instrument, Game) are prepared automatically from the official files "
                "(python -m recbole_llada.data.amazon2023 --help); for Beauty see the README's Data section. "
                "Point RecBole at another folder with --data_path=DIR (it holds DIR/<dataset>/<dataset>.inter)."
            )
        from recbole_llada.data.amazon2023 import ensure_prepared

        ensure_prepared(dataset, Path(config["data_path"]).parent, download=True,
                        category=config["amazon2023_category"])
    check_interaction_file(config)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass
class RunResult:
    model: str
    dataset: str
    seed: int
    n_parameters: int
    train_seconds: float
    test_seconds: float
    best_valid_score: float
    best_valid_result: dict[str, float]
    test_result: dict[str, float]
    saved_model_file: str | None = None
    epochs_trained: int | None = None
    # Median seconds per epoch of training and of validation (LLaDARec's trainer measures them; None elsewhere).
    train_epoch_seconds: float | None = None
    valid_epoch_seconds: float | None = None
    stopped_by: str | None = None  # "early stopping" | "epoch cap" | "time budget"

    def as_row(self) -> ComparisonRow:
        return ComparisonRow(
            model=self.model,
            seed=self.seed,
            test_metrics={k: float(v) for k, v in self.test_result.items()},
            n_parameters=self.n_parameters,
            train_seconds=self.train_seconds,
            test_seconds=self.test_seconds,
        )


@dataclass
class Experiment:
    """Everything one training run needs, built from a config: the split loaders, the model, its trainer."""

    train_data: Any
    valid_data: Any
    test_data: Any
    model: torch.nn.Module
    trainer: Any


def prepare(config: Config) -> Experiment:
    """Dataset, split, model and trainer for ``config``, seeded as RecBole's ``run_recbole`` seeds them."""
    init_seed(config["seed"], config["reproducibility"])
    load_time_field(config)
    try:
        dataset = create_dataset(config)
    except ValueError as error:
        if "feat is empty" not in str(error):
            raise
        raise UserInputError(f"No interactions of {config['dataset']} are left after RecBole's filters "
                             "(user_inter_num_interval, item_inter_num_interval, val_interval): relax them.") from error
    getLogger().info(dataset)
    if config["model"] == "LLaDARec":
        warn_if_oversized(config, n_items=dataset.item_num - 1)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    for split, data in (("training", train_data), ("validation", valid_data), ("test", test_data)):
        if len(data.dataset) == 0:
            raise UserInputError(
                f"The {split} split of {config['dataset']} is empty after RecBole's filtering and leave-one-out "
                "split: each user needs at least 3 interactions (the last for test, the one before for "
                "validation, the rest for training). Add longer histories or relax the filters "
                "(user_inter_num_interval, item_inter_num_interval)."
            )
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    getLogger().info(model)
    trainer = resumable(get_trainer(config["MODEL_TYPE"], config["model"]))(config, model)
    return Experiment(train_data, valid_data, test_data, model, trainer)


def warn_if_oversized(config: Config, n_items: int) -> None:
    """A dataset without a LLaDARec config of its own gets the paper's size, meant for tens of thousands of items:
    say so when the data has fewer items than one codebook has codes."""
    if n_items >= config["sid_codebook_size"]:
        return
    small = resources.demo_config("LLaDARec", "ml-100k")
    getLogger().warning(
        f"{config['dataset']} has {n_items} items, fewer than the {config['sid_codebook_size']} codes per head "
        f"(sid_codebook_size) of this LLaDARec configuration (hidden_size {config['hidden_size']}, "
        f"{config['n_layers']} layers; the defaults are the paper's size, for tens of thousands of items). It trains, "
        f"but a smaller model fits such data better and faster: lower sid_codebook_size, hidden_size and n_layers, "
        f"e.g. starting from the ml-100k demo's configuration, --config_files={small}"
    )


def training_extent(trainer: Any) -> tuple[int, str]:
    """(epochs trained, what ended training) of a trainer after ``fit``: "time budget" (LLaDARecTrainer's
    ``train_time_budget``), "epoch cap" (all ``epochs`` ran) or "early stopping"."""
    budget_stop_epoch = getattr(trainer, "budget_stop_epoch", None)
    if budget_stop_epoch is not None:
        return budget_stop_epoch, "time budget"
    trained = len(trainer.train_loss_dict)  # RecBole records every epoch's loss here
    return trained, "epoch cap" if trained >= trainer.epochs else "early stopping"


def run(model: str, dataset: str, config_files: Sequence[str] = (),
        overrides: Mapping[str, Any] | None = None, saved: bool = True, resume: str | None = None) -> RunResult:
    """Train ``model`` on ``dataset``, select the best epoch on validation, evaluate it on test.

    ``resume``: a checkpoint of an interrupted run with the same settings, to continue from
    (``recbole_llada.training.resume``).
    A run that fails deletes the checkpoint it wrote; an interrupted one keeps it and says how to resume.
    """
    config = build_config(model, dataset, config_files, overrides)
    if model == "LLaDARec":
        config_check.check_decoding_steps(config)
    ensure_dataset_files(config)
    init_logger(config)
    getLogger().info(config)
    experiment = prepare(config)
    trainer = experiment.trainer
    if resume is not None:
        resume_from(trainer, resume)

    try:
        start = time.perf_counter()
        best_valid_score, best_valid_result = trainer.fit(
            experiment.train_data, experiment.valid_data, saved=saved, show_progress=config["show_progress"]
        )
        train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        test_result = trainer.evaluate(experiment.test_data, load_best_model=saved,
                                       show_progress=config["show_progress"])
        test_seconds = time.perf_counter() - start
    except KeyboardInterrupt:
        if saved and Path(trainer.saved_model_file).is_file():
            getLogger().warning(f"interrupted; continue this run with --resume={trainer.saved_model_file}")
        raise
    except Exception:
        if saved and resume is None:
            Path(trainer.saved_model_file).unlink(missing_ok=True)
        raise

    epochs_trained, stopped_by = training_extent(trainer)
    getLogger().info(set_color("best valid ", "yellow") + f": {dict(best_valid_result)}")
    getLogger().info(set_color("test result", "yellow") + f": {dict(test_result)}")
    getLogger().info(f"trained {epochs_trained} epochs, ended by {stopped_by}")
    return RunResult(
        model=model,
        dataset=dataset,
        seed=config["seed"],
        n_parameters=count_parameters(experiment.model),
        train_seconds=train_seconds,
        test_seconds=test_seconds,
        best_valid_score=float(best_valid_score),
        best_valid_result=dict(best_valid_result),
        test_result=dict(test_result),
        saved_model_file=trainer.saved_model_file if saved else None,
        epochs_trained=epochs_trained,
        **median_epoch_seconds(trainer),
        stopped_by=stopped_by,
    )


def median_epoch_seconds(trainer) -> dict[str, float | None]:
    """RunResult's per-epoch medians from LLaDARecTrainer's epoch timings (None for RecBole's trainers)."""
    timed = trainer.epoch_seconds if isinstance(trainer, LLaDARecTrainer) else {}
    return {f"{field}_epoch_seconds": statistics.median(timed[phase]) if timed.get(phase) else None
            for field, phase in (("train", "training"), ("valid", "evaluating"))}


def compare(models: Sequence[str], dataset: str, config_files: Sequence[str] = (),
            overrides: Mapping[str, Any] | None = None, results_dir: str | os.PathLike = "results",
            saved: bool = True) -> tuple[list[RunResult], Path]:
    """Run each model in turn on the same data and protocol; write and return the comparison table."""
    for model in models:
        check_model_name(model)
    results = []
    for model in models:
        logging.getLogger().info(set_color(f"=== {model} on {dataset} ===", "green"))
        results.append(run(model, dataset, config_files, overrides, saved=saved))
    table_path = write_comparison([r.as_row() for r in results], dataset, Path(results_dir))
    return results, table_path


def _run_rank(local_rank: int, model: str, dataset: str, config_files: Sequence[str],
              overrides: Mapping[str, Any], saved: bool, queue) -> None:
    import recbole_llada  # noqa: F401  (spawned processes start fresh: compat + registration)

    result = run(model, dataset, config_files, {**overrides, "local_rank": local_rank}, saved=saved)
    if local_rank == 0:
        queue.put(result)
    torch.distributed.destroy_process_group()


def run_distributed(model: str, dataset: str, config_files: Sequence[str] = (),
                    overrides: Mapping[str, Any] | None = None, nproc: int = 2, port: int = 29517,
                    saved: bool = True) -> RunResult:
    """``run`` on ``nproc`` GPUs of this machine with RecBole's DistributedDataParallel path (NCCL).

    RecBole shards training batches and evaluation users over the ranks and all-reduces the metrics; rank 0's
    result is returned.
    """
    import torch.multiprocessing as mp

    if torch.cuda.device_count() < nproc:
        raise UserInputError(f"--nproc={nproc} needs {nproc} GPUs, found {torch.cuda.device_count()}.")
    overrides = dict(overrides or {})
    overrides.setdefault("gpu_id", ",".join(str(i) for i in range(nproc)))
    overrides.update({"nproc": nproc, "world_size": nproc, "ip": "localhost", "port": str(port), "offset": 0})
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_run_rank, args=(model, dataset, list(config_files), overrides, saved, queue), nprocs=nproc, join=True)
    return queue.get()
