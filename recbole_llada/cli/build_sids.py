"""Build (or load from cache) a dataset's semantic IDs and print the report.

    python -m recbole_llada.cli.build_sids --dataset=ml-100k [--config_files="a.yaml"] [--key=value ...]

Uses exactly LLaDARec's config layers and split, so the SIDs are the ones training will use (and a later
training run hits the cache). Writes ``item_id<TAB>c1 c2 ... cM`` to ``--output`` (default
``saved/sid/<dataset>.sid.tsv``) for inspection, and with ``--report=FILE.md`` the report with its provenance
(command, commit, hardware, date) for the record.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from recbole_llada.errors import UserInputError, debug_from_environment


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recbole_llada.cli.build_sids",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--config_files", default="", help="extra YAML files, space separated")
    parser.add_argument("--output", default=None, help="where to write the SID table")
    parser.add_argument("--report", default=None, help="also write the report, with provenance, to this .md file")
    parser.add_argument("--debug", action="store_true", default=debug_from_environment(),
                        help="show the traceback of a user error (also: RECBOLE_LLADA_DEBUG=1)")
    args, rest = parser.parse_known_args(argv)
    try:
        import recbole_llada  # noqa: F401
        from recbole.data import create_dataset
        from recbole.utils import init_logger, init_seed

        from recbole_llada.training import quick_start
        from recbole_llada.sid.build import write_sid_table

        overrides = quick_start.parse_overrides(rest)
        config = quick_start.build_config("LLaDARec", args.dataset, args.config_files.split(), overrides)
        quick_start.ensure_dataset_files(config)
        init_seed(config["seed"], config["reproducibility"])
        init_logger(config)
        dataset = create_dataset(config)
        dataset.build()
    except UserInputError as error:
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    output = Path(args.output or Path(config["checkpoint_dir"]) / "sid" / f"{args.dataset}.sid.tsv")
    write_sid_table(output, list(dataset.field2id_token[dataset.iid_field]), dataset.item_sid)
    # The dataset has already logged the report (RecBole's logger prints to the console).
    print(f"SID table written to {output}")
    if args.report:
        from recbole_llada.training.results import provenance, provenance_markdown

        report = Path(args.report)
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(f"# Semantic IDs of {args.dataset}\n\n```\n{dataset.sid_report.format()}\n```\n\n"
                          f"## Provenance\n\n{provenance_markdown(provenance())}\n")
        print(f"report written to {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
