"""Hyperparameter search for any model with Ray Tune: select on validation, test the best config once.

    python run_recbole_llada.py --model=SASRec --dataset=ml-100k --tune=SASRec --num_samples=8 --epochs=20

Each trial is one RecBole training run that reports its validation score after every validation epoch, so the
ASHA scheduler stops bad trials early. After the search the best config is written as a YAML file and trained
once more (a plain ``quick_start.run``) to get its test metrics; test data never influences the selection.

Ray is imported lazily, inside functions: importing ``recbole_llada`` must work on machines without Ray.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from recbole_llada import config_check, resources
from recbole_llada.errors import UserInputError
from recbole_llada.training import quick_start
from recbole_llada.training.results import provenance
from recbole_llada.tuning.report import (
    EARLY_STOPPED,
    ERROR,
    TERMINATED,
    SearchSummary,
    TrialRecord,
    plot_valid_curves,
    rank_trials,
    summary_markdown,
    write_best_config,
    write_trials_csv,
)

# sampler name in the YAML -> number of arguments; each maps to the ray.tune function of the same name
SAMPLERS: dict[str, int | None] = {
    "choice": None,  # any number of candidates
    "grid_search": None,  # every candidate, each num_samples times
    "uniform": 2,  # [low, high]
    "quniform": 3,  # [low, high, q]
    "loguniform": 2,  # [low, high], low > 0
    "qloguniform": 3,  # [low, high, q]
    "randint": 2,  # [low, high), integers
    "qrandint": 3,  # [low, high] in steps of q, integers
}
# Keys whose values are file-system locations: Ray runs trials in their own working directories, so these are
# made absolute on the driver before they reach a trial.
PATH_KEY_SUFFIXES = ("_dir", "_path", "_file")
# The trial's hardware comes from Ray's assignment, never from the config that was tuned.
DEVICE_KEYS = ("gpu_id", "use_gpu", "device")
VALID_SCORE = "valid_score"
EPOCH = "epoch"
LAST_VALIDATION = "last_validation"


@dataclass(frozen=True)
class SearchDimension:
    key: str
    sampler: str
    args: tuple[Any, ...]

    def describe(self) -> str:
        return f"{self.sampler} {list(self.args)}"


def resolve_space_file(space: str | os.PathLike) -> Path:
    """A YAML path, or a bare name such as ``LLaDARec`` for ``properties/tune/LLaDARec.yaml``."""
    path = Path(space)
    if path.is_file():
        return path
    shipped = resources.properties_dir() / "tune" / f"{space}.yaml"
    if shipped.is_file():
        return shipped
    known = ", ".join(sorted(p.stem for p in (resources.properties_dir() / "tune").glob("*.yaml")))
    raise UserInputError(f"Search space {str(space)!r} is neither a YAML file nor a shipped space ({known}).")


def _check_dimension(key: str, spec: Any) -> SearchDimension:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise UserInputError(
            f"Search space entry {key!r} must be one sampler with its arguments, e.g. "
            f"'{key}: {{loguniform: [1e-4, 1e-2]}}' or '{key}: {{choice: [2, 4]}}'; got {spec!r}. "
            "Fix a value with --key=value or a config file instead."
        )
    (sampler, args), = spec.items()
    if sampler not in SAMPLERS:
        raise UserInputError(f"Unknown sampler {sampler!r} for {key!r}; known: {', '.join(SAMPLERS)}.")
    if not isinstance(args, list) or not args:
        raise UserInputError(f"{key}: {sampler} takes a non-empty list, got {args!r}.")
    arity = SAMPLERS[sampler]
    if arity is not None:
        if len(args) != arity or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
            raise UserInputError(f"{key}: {sampler} takes {arity} numbers, got {args!r}.")
        if not args[0] < args[1]:
            raise UserInputError(f"{key}: {sampler} needs low < high, got {args!r}.")
        if sampler.endswith("loguniform") and args[0] <= 0:
            raise UserInputError(f"{key}: {sampler} needs low > 0, got {args!r}.")
    return SearchDimension(key, sampler, tuple(args))


def load_space(space: str | os.PathLike) -> dict[str, SearchDimension]:
    """Parse and check a search-space YAML (``key: {sampler: [args]}`` per line)."""
    raw = resources.load_yaml(resolve_space_file(space))
    if not raw:
        raise UserInputError(f"Search space {str(space)!r} is empty.")
    return {key: _check_dimension(key, spec) for key, spec in raw.items()}


def to_ray_space(space: Mapping[str, SearchDimension]) -> dict[str, Any]:
    from ray import tune

    ray_space = {}
    for key, dim in space.items():
        sampler = getattr(tune, dim.sampler)
        ray_space[key] = sampler(list(dim.args)) if SAMPLERS[dim.sampler] is None else sampler(*dim.args)
    return ray_space


def _is_path_key(key: str, value: Any) -> bool:
    return key.endswith(PATH_KEY_SUFFIXES) and isinstance(value, str) and bool(value) and "://" not in value


def absolute_paths(values: Mapping[str, Any]) -> dict[str, Any]:
    """Copy of ``values`` with every relative path-like entry (``*_dir``, ``*_path``, ``*_file``) made absolute."""
    return {key: os.path.abspath(os.path.expanduser(value)) if _is_path_key(key, value) else value
            for key, value in values.items()}


def resolved_path_overrides(config) -> dict[str, str]:
    """The final config's path-like keys, absolute, as user-level overrides a trial can pass back to RecBole."""
    overrides = {key: value for key, value in config.final_config_dict.items() if _is_path_key(key, value)}
    # RecBole appends the dataset name to data_path; a trial must receive the folder the user meant.
    overrides["data_path"] = os.path.dirname(os.path.normpath(config["data_path"]))
    return absolute_paths(overrides)


@dataclass(frozen=True)
class TrialSetup:
    """Everything a trial needs besides its sampled parameters; shipped to the workers once."""

    model: str
    dataset: str
    config_files: tuple[str, ...]
    overrides: dict[str, Any]
    cpus_per_trial: float
    gpus_per_trial: float


def device_overrides(gpus_per_trial: float) -> dict[str, Any]:
    """Hand Ray's GPU assignment to RecBole, which would otherwise set CUDA_VISIBLE_DEVICES to its own gpu_id."""
    if gpus_per_trial <= 0:
        return {"use_gpu": False, "gpu_id": ""}
    import ray

    return {"use_gpu": True, "gpu_id": ",".join(str(i) for i in ray.get_gpu_ids())}


def _limit_threads(cpus_per_trial: float) -> None:
    import torch

    torch.set_num_threads(max(1, int(cpus_per_trial)))


def _is_last_validation(trainer, epoch_idx: int) -> bool:
    """True when RecBole will not validate again: its own early stopping fired, or no validation epoch is left."""
    return trainer.cur_step > trainer.stopping_step or epoch_idx + trainer.eval_step >= trainer.epochs


def train_trial(params: dict[str, Any], setup: TrialSetup) -> None:
    """One Ray Tune trial: a RecBole training run that reports the validation score after each validation."""
    from ray import tune
    from recbole.utils import init_logger

    _limit_threads(setup.cpus_per_trial)
    trial_dir = Path(tune.get_context().get_trial_dir())
    overrides = {**setup.overrides, **params, "checkpoint_dir": str(trial_dir / "saved"),
                 **device_overrides(setup.gpus_per_trial)}
    config = quick_start.build_config(setup.model, setup.dataset, setup.config_files, overrides)
    # A reused Ray actor keeps the previous trial's log handlers; RecBole's init_logger adds none if any exist.
    logging.getLogger().handlers.clear()
    init_logger(config)
    experiment = quick_start.prepare(config)
    trainer = experiment.trainer

    def report_validation(epoch_idx: int, valid_score: float) -> None:
        tune.report({EPOCH: epoch_idx + 1, VALID_SCORE: float(valid_score),
                     LAST_VALIDATION: _is_last_validation(trainer, epoch_idx)})

    # Weights are not saved: the best config is retrained once after the search.
    trainer.fit(experiment.train_data, experiment.valid_data, verbose=True, saved=False, show_progress=False,
                callback_fn=report_validation)


def final_run(setup: TrialSetup, best_config_file: str, out_dir: str) -> quick_start.RunResult:
    """Retrain the best config from its YAML alone (as a user would) and evaluate it on test, once."""
    _limit_threads(setup.cpus_per_trial)
    overrides = {"checkpoint_dir": str(Path(out_dir) / "saved"), **device_overrides(setup.gpus_per_trial)}
    previous_cwd = os.getcwd()
    os.makedirs(out_dir, exist_ok=True)
    os.chdir(out_dir)  # RecBole writes log/ and log_tensorboard/ into the working directory
    try:
        logging.getLogger().handlers.clear()
        return quick_start.run(setup.model, setup.dataset, [best_config_file], overrides)
    finally:
        os.chdir(previous_cwd)


@dataclass
class SearchOptions:
    num_samples: int = 10
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None  # None: 1 if the Ray cluster has a GPU, else 0
    max_concurrent: int | None = None
    scheduler: str = "asha"  # asha | fifo
    grace_period: int = 1  # epochs every trial gets before ASHA may stop it
    reduction_factor: float = 2.0
    ray_address: str | None = None  # None: start a local Ray; "auto" or "HOST:PORT": join a running cluster
    reuse_actors: bool = True  # keep worker processes (and their torch/RecBole imports) between trials

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise UserInputError(f"--num_samples must be at least 1, got {self.num_samples}.")
        if self.scheduler not in ("asha", "fifo"):
            raise UserInputError(f"--scheduler must be asha or fifo, got {self.scheduler!r}.")
        if self.cpus_per_trial <= 0 or (self.gpus_per_trial is not None and self.gpus_per_trial < 0):
            raise UserInputError("--cpus_per_trial must be > 0 and --gpus_per_trial >= 0.")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise UserInputError(f"--max_concurrent must be at least 1, got {self.max_concurrent}.")
        if self.grace_period < 1 or self.reduction_factor <= 1:
            raise UserInputError("--grace_period must be >= 1 and --reduction_factor > 1.")


def default_tune_dir(model: str, dataset: str) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path("results") / "tune" / f"{model}-{dataset}-{stamp}"


def _start_ray(address: str | None) -> bool:
    """Start (or join) Ray unless this process already did; return whether we must shut it down."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address)
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False)
    return True


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def _error_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:200].replace("|", "/")


def _trial_record(result) -> TrialRecord:
    trial_id = Path(result.path).name.removeprefix("trial_")
    frame = result.metrics_dataframe
    curve: list[tuple[int, float]] = []
    finished = False
    if frame is not None and VALID_SCORE in frame.columns:
        curve = [(int(e), float(s)) for e, s in zip(frame[EPOCH], frame[VALID_SCORE])]
        finished = bool(frame[LAST_VALIDATION].iloc[-1])
    if result.error is not None:
        status = ERROR
    else:
        status = TERMINATED if finished else EARLY_STOPPED
    return TrialRecord(trial_id=trial_id, params=dict(result.config), status=status, valid_curve=curve,
                       error=_error_line(result.error) if result.error is not None else "")


def _scheduler(options: SearchOptions, max_epochs: int):
    if options.scheduler == "fifo":
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr=EPOCH, max_t=max_epochs, grace_period=options.grace_period,
                         reduction_factor=options.reduction_factor)


def search(model: str, dataset: str, space: str | os.PathLike, config_files: Sequence[str] = (),
           overrides: Mapping[str, Any] | None = None, options: SearchOptions | None = None,
           tune_dir: str | os.PathLike | None = None) -> SearchSummary:
    """Search ``space`` for ``model`` on ``dataset``; write the report to ``tune_dir`` and return its summary.

    ``overrides`` are fixed for every trial; a key fixed there is removed from the search space.
    """
    options = options or SearchOptions()
    overrides = dict(overrides or {})
    space_file = resolve_space_file(space)
    dimensions = load_space(space_file)
    config_check.check_unknown_keys(dimensions, source=f"search space {space_file}")
    fixed = [key for key in dimensions if key in overrides]
    dimensions = {key: dim for key, dim in dimensions.items() if key not in overrides}
    if not dimensions:
        raise UserInputError(f"Every key of {space_file} is fixed by an override ({', '.join(fixed)}): "
                             "nothing left to search.")
    if fixed:
        logging.getLogger(__name__).warning("Fixed by overrides, not searched: %s", ", ".join(fixed))
    tune_dir = Path(tune_dir or default_tune_dir(model, dataset)).resolve()
    tune_dir.mkdir(parents=True, exist_ok=True)
    user_files = [str(Path(f).resolve()) for f in config_files]

    # Ray before any RecBole Config: Config sets CUDA_VISIBLE_DEVICES in this process, which would hide GPUs
    # from a Ray started afterwards.
    started_ray = _start_ray(options.ray_address)
    try:
        return _search(model, dataset, space_file, dimensions, user_files, overrides, options, tune_dir)
    finally:
        if started_ray:
            import ray

            ray.shutdown()


def _search(model: str, dataset: str, space_file: Path, dimensions: Mapping[str, SearchDimension],
            user_files: Sequence[str], overrides: Mapping[str, Any], options: SearchOptions,
            tune_dir: Path) -> SearchSummary:
    import ray

    base_config = quick_start.build_config(model, dataset, user_files, overrides)
    quick_start.ensure_dataset_files(base_config)
    gpus = options.gpus_per_trial
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    setup = TrialSetup(model=model, dataset=dataset, config_files=tuple(user_files),
                       overrides={**overrides, **resolved_path_overrides(base_config)},
                       cpus_per_trial=options.cpus_per_trial, gpus_per_trial=gpus)
    _prepare_shared_data(setup)

    trials = _run_trials(setup, dimensions, options, base_config, tune_dir)
    bigger = bool(base_config["valid_metric_bigger"])
    ranked = rank_trials(trials, bigger)
    best = ranked[0] if ranked and ranked[0].best_valid(bigger) is not None else None
    summary = SearchSummary(
        model=model, dataset=dataset, tune_dir=tune_dir, valid_metric=base_config["valid_metric"],
        bigger_is_better=bigger, space_file=str(space_file), space={k: d.describe() for k, d in dimensions.items()},
        trials=trials, best=best, best_config_file=None, test_result=None, best_valid_result=None,
    )
    if best is None:
        _write_report(summary, tune_dir)
        return summary
    summary.best_config_file = _write_best_config(summary, user_files, overrides, tune_dir)
    _write_report(summary, tune_dir)  # before the final run too, so a failing final run loses nothing
    result = _final_run_on_ray(setup, summary.best_config_file, tune_dir / "final_run")
    summary.test_result = {k: float(v) for k, v in result.test_result.items()}
    summary.best_valid_result = {k: float(v) for k, v in result.best_valid_result.items()}
    _write_report(summary, tune_dir)
    return summary


def _prepare_shared_data(setup: TrialSetup) -> None:
    """Build the dataset once on the driver so trials find every cache (e.g. LLaDARec's semantic IDs) warm."""
    from recbole.data import create_dataset
    from recbole.utils import init_seed

    config = quick_start.build_config(setup.model, setup.dataset, setup.config_files, setup.overrides)
    init_seed(config["seed"], config["reproducibility"])
    create_dataset(config)


def _run_trials(setup: TrialSetup, dimensions: Mapping[str, SearchDimension], options: SearchOptions,
                base_config, tune_dir: Path) -> list[TrialRecord]:
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    trainable = tune.with_resources(tune.with_parameters(train_trial, setup=setup),
                                    {"cpu": setup.cpus_per_trial, "gpu": setup.gpus_per_trial})
    tuner = tune.Tuner(
        trainable,
        param_space=to_ray_space(dimensions),
        tune_config=tune.TuneConfig(
            metric=VALID_SCORE,
            mode="max" if base_config["valid_metric_bigger"] else "min",
            scheduler=_scheduler(options, int(base_config["epochs"])),
            search_alg=BasicVariantGenerator(max_concurrent=options.max_concurrent or 0,
                                             random_state=int(base_config["seed"])),
            num_samples=options.num_samples,
            reuse_actors=options.reuse_actors,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name="ray", storage_path=str(tune_dir), failure_config=tune.FailureConfig(max_failures=0),
            # RecBole's log/ and log_tensorboard/ live in each trial's working directory: keep them with the results
            sync_config=tune.SyncConfig(sync_artifacts=True),
        ),
    )
    return [_trial_record(result) for result in tuner.fit()]


def best_config_dict(user_files: Sequence[str], overrides: Mapping[str, Any],
                     params: Mapping[str, Any]) -> dict[str, Any]:
    """User config files, then fixed overrides, then the best parameters: everything the search fixed by hand."""
    merged: dict[str, Any] = {}
    for path in user_files:
        merged.update(resources.load_yaml(path))
    merged.update(overrides)
    merged.update(params)
    return {key: value for key, value in absolute_paths(merged).items() if key not in DEVICE_KEYS}


def _write_best_config(summary: SearchSummary, user_files: Sequence[str], overrides: Mapping[str, Any],
                       tune_dir: Path) -> Path:
    best = summary.best
    path = tune_dir / "best_config.yaml"
    score = best.best_valid(summary.bigger_is_better)
    return write_best_config(
        best_config_dict(user_files, overrides, best.params), path,
        [f"Best of {len(summary.trials)} trials for {summary.model} on {summary.dataset} "
         f"(trial {best.trial_id}, valid {summary.valid_metric} = {score:.4f}).",
         "Re-run: python run_recbole_llada.py "
         f"--model={summary.model} --dataset={summary.dataset} --config_files={path}"],
    )


def _final_run_on_ray(setup: TrialSetup, best_config_file: Path, out_dir: Path) -> quick_start.RunResult:
    """The test evaluation runs where a trial would (same resources), so a CPU-only head node is fine."""
    import ray

    remote = ray.remote(num_cpus=setup.cpus_per_trial, num_gpus=setup.gpus_per_trial)(final_run)
    return ray.get(remote.remote(setup, str(best_config_file), str(out_dir)))


def _write_report(summary: SearchSummary, tune_dir: Path) -> None:
    write_trials_csv(summary.trials, summary.valid_metric, summary.bigger_is_better, tune_dir / "trials.csv")
    plot_valid_curves(summary.trials, summary.valid_metric, summary.bigger_is_better, tune_dir / "valid_curves.png")
    if summary.test_result is not None:
        names = list(summary.test_result)
        with open(tune_dir / "best_test.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["split", *names])
            for split, values in (("valid", summary.best_valid_result), ("test", summary.test_result)):
                writer.writerow([split, *(values.get(name, math.nan) for name in names)])
    (tune_dir / "tune.md").write_text(summary_markdown(summary, provenance()))
