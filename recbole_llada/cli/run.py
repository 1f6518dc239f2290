"""Command line: ``python run_recbole_llada.py --model=NAME[,NAME...] --dataset=NAME [--key=value ...]``.

With ``--tune=SPACE`` it runs a Ray Tune hyperparameter search for one model instead (``recbole_llada.tuning.tune``).

Known flags are ours; every other ``--key=value`` is a RecBole config override, parsed with RecBole's rules.
A user mistake (unknown key or model, bad value, malformed data) ends in one paragraph on stderr and exit code 2;
``--debug`` (or the environment variable ``RECBOLE_LLADA_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from recbole_llada.errors import UserInputError, debug_from_environment


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_recbole_llada.py",
        description="Train and evaluate LLaDARec or any RecBole model under the shared protocol. "
        "Any other --key=value overrides a RecBole config key (e.g. --epochs=5 --learning_rate=1e-3).",
    )
    parser.add_argument("--model", "--models", dest="models", default="LLaDARec",
                        help="model name, or several separated by commas to compare them side by side")
    parser.add_argument("--dataset", default="ml-100k", help="dataset name (default: ml-100k, bundled)")
    parser.add_argument("--config_files", default="", help="extra YAML files, space separated (later wins)")
    parser.add_argument("--results_dir", default="results", help="where comparison tables are written")
    parser.add_argument("--nproc", type=int, default=1,
                        help="GPUs of this machine to train on with RecBole's DistributedDataParallel path (NCCL)")
    parser.add_argument("--resume", metavar="CHECKPOINT", default=None,
                        help="continue an interrupted run from its checkpoint (saved/<Model>-<time>.pth), with the "
                        "same model, dataset and config")
    parser.add_argument("--debug", action="store_true", default=debug_from_environment(),
                        help="show the traceback of a user error (also: RECBOLE_LLADA_DEBUG=1)")
    tuning = parser.add_argument_group("hyperparameter search (Ray Tune); the --key=value overrides stay fixed")
    tuning.add_argument("--tune", metavar="SPACE", help="search-space YAML, or the name of a shipped space "
                        "(--tune=LLaDARec reads properties/tune/LLaDARec.yaml)")
    tuning.add_argument("--num_samples", type=int, default=10, help="trials to sample (default: 10)")
    tuning.add_argument("--ray_address", default=None,
                        help="join a running Ray cluster (auto or HOST:PORT); default: start Ray locally")
    tuning.add_argument("--cpus_per_trial", type=float, default=1.0, help="CPUs per trial (default: 1)")
    tuning.add_argument("--gpus_per_trial", type=float, default=None,
                        help="GPUs per trial, fractions share a GPU (default: 1 if the Ray cluster has GPUs, else 0)")
    tuning.add_argument("--max_concurrent", type=int, default=None,
                        help="trials running at once (default: as many as the resources allow)")
    tuning.add_argument("--scheduler", choices=["asha", "fifo"], default="asha",
                        help="asha stops bad trials early on the validation metric; fifo runs every trial to the end")
    tuning.add_argument("--grace_period", type=int, default=1, help="epochs before ASHA may stop a trial (default: 1)")
    tuning.add_argument("--reduction_factor", type=float, default=2.0,
                        help="ASHA keeps the best 1/reduction_factor of the trials at each rung (default: 2)")
    tuning.add_argument("--tune_dir", default=None,
                        help="output folder, also Ray's storage_path (default: results/tune/<model>-<dataset>-<time>); "
                        "must be shared storage on a multi-node cluster")
    return parser


def format_metrics(metrics: dict) -> str:
    return "  ".join(f"{name} {float(value):.4f}" for name, value in metrics.items())


def split_models(value: str) -> list[str]:
    models = [m.strip() for m in value.split(",") if m.strip()]
    if not models:
        raise UserInputError("--model needs at least one model name.")
    return models


def run_search(args: argparse.Namespace, models: list[str], config_files: list[str], overrides: dict) -> int:
    from recbole_llada.tuning import tune

    if len(models) != 1:
        raise UserInputError("--tune searches one model at a time; pass a single --model.")
    options = tune.SearchOptions(
        num_samples=args.num_samples, cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
        max_concurrent=args.max_concurrent, scheduler=args.scheduler, grace_period=args.grace_period,
        reduction_factor=args.reduction_factor, ray_address=args.ray_address,
    )
    summary = tune.search(models[0], args.dataset, args.tune, config_files, overrides, options, args.tune_dir)
    if summary.best is None:
        print(f"error: every trial failed; see {summary.tune_dir}/tune.md", file=sys.stderr)
        return 1
    print(f"\nbest config: {summary.best_config_file}\ntest {summary.test_result}\nreport: {summary.tune_dir}/tune.md")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    try:
        import recbole_llada  # noqa: F401  (compat + plugin registration)
        from recbole_llada.training import quick_start

        overrides = quick_start.parse_overrides(rest)
        models = split_models(args.models)
        config_files = args.config_files.split()
        if args.resume and (args.tune or args.nproc > 1 or len(models) != 1):
            raise UserInputError("--resume continues one run of one model on one process; pass a single --model "
                                 "and leave out --tune and --nproc.")
        if args.tune:
            return run_search(args, models, config_files, overrides)
        if args.nproc > 1:
            if len(models) != 1:
                raise UserInputError("--nproc trains one model at a time; pass a single --model.")
            result = quick_start.run_distributed(models[0], args.dataset, config_files, overrides, args.nproc)
            print(f"\n{models[0]} on {args.dataset} ({args.nproc} GPUs), test: {format_metrics(result.test_result)}")
        elif len(models) == 1:
            result = quick_start.run(models[0], args.dataset, config_files, overrides, resume=args.resume)
            print(f"\n{models[0]} on {args.dataset}, test: {format_metrics(result.test_result)}")
        else:
            quick_start.compare(models, args.dataset, config_files, overrides, results_dir=args.results_dir)
    except UserInputError as error:
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
