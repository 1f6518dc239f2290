"""Command line: ``python run_recbole_llada.py --model=NAME[,NAME...] --dataset=NAME [--key=value ...]``.

Known flags are ours; every other ``--key=value`` is a RecBole config override, parsed with RecBole's rules.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from recbole_llada.errors import UserInputError


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
    return parser


def split_models(value: str) -> list[str]:
    models = [m.strip() for m in value.split(",") if m.strip()]
    if not models:
        raise UserInputError("--model needs at least one model name.")
    return models


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    try:
        import recbole_llada  # noqa: F401  (compat + plugin registration)
        from recbole_llada import quick_start

        overrides = quick_start.parse_overrides(rest)
        models = split_models(args.models)
        config_files = args.config_files.split()
        if len(models) == 1:
            result = quick_start.run(models[0], args.dataset, config_files, overrides)
            print(f"\n{models[0]} on {args.dataset}: test {result.test_result}")
        else:
            quick_start.compare(models, args.dataset, config_files, overrides, results_dir=args.results_dir)
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
