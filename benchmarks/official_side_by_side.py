"""The official LLaDA-Rec code on our split and our semantic IDs: a row "official code, same data and SIDs".

    python benchmarks/official_side_by_side.py --official_dir=/path/to/LLaDA-Rec --dataset=Beauty \\
        --data_path=../shared/data/amazon2014 --sid_table=saved/sid/Beauty.sid.tsv --epochs=30 --seed=2024 \\
        [--checkpoint=saved/LLaDARec-....pth instead of --sid_table] [--work_dir=DIR] [--results_dir=DIR] \\
        [--key=value ...]

``--official_dir`` is a local checkout of TengShi-RUC/LLaDA-Rec at commit bd8bdc1 (public on GitHub; never copied
into this repository). Its own dependencies must be installed (see benchmarks/README.md).

1. Data. RecBole's split of the dataset, built from the same config layers as our LLaDARec run (chronological
   leave-one-out: each user's last item is the test target, the one before the validation target, the rest is
   training), is written in the official input format: ``<work_dir>/cache/AmazonReviews2023/<dataset>/raw/``
   ``<dataset>.{train,valid,test}.csv`` (``user_id,parent_asin,rating,timestamp,history``, history = the
   space-separated earlier items) and an empty ``meta_<dataset>.jsonl`` (only the official tokenizer reads item
   text, and it is not run). The official loader's own leave-one-out then recovers exactly our sequences.
   Our semantic IDs (``--sid_table``, written by ``python -m recbole_llada.cli.build_sids``, or the ``item_sid`` buffer
   of a trained LLaDARec ``--checkpoint``) go to its ``sem_ids`` JSON, ``{item: [c1, ..., cM]}``. Users and items
   are written as ``user_<token>`` / ``item_<token>`` (our RecBole tokens): the prefix keeps the official csv
   reader from turning numeric ids into numbers, which would split an item into two ids.
2. Training and test. The official main.py pipeline runs through official_launcher.py (run-time patches, no file
   of the checkout edited) with our LLaDARec config mapped onto its keys (``official_arguments``): the same
   model size, loss weight, temperature, optimiser, schedule, batch, epochs, decoding steps and beams, and the
   same model selection (validation metric, beams and patience). Settings the official code cannot express
   (another attention, decoding order, next-item loss weight, unconstrained decoding) are refused. It runs on
   whatever device is present (the official code picks CUDA when available).
3. The row. Its test metrics (the official evaluator: Recall and NDCG at our ``topk``; no MRR) are appended to
   ``<results_dir>/<dataset>_runs.csv`` in benchmarks/quality.py's format, labelled "official code, same data
   and SIDs", and the dataset's summary table is regenerated.

Any other ``--key=value`` is a RecBole override of our config, as for quality.py (e.g. ``--hidden_size=32``), so
both sides are configured from the same YAML.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS_DIR, split_config_files
from benchmarks.official_launcher import check_official_checkout
from benchmarks.quality import METRICS, OFFICIAL_CODE_MODEL, append_run, runs_path, write_summary

LABEL = "official code, same data and SIDs"
OFFICIAL_COMMIT = "bd8bdc1"
USER_PREFIX = "user_"
ITEM_PREFIX = "item_"
SEM_IDS_NAME = "recbole_llada.sem_ids"
LAUNCHER = Path(__file__).resolve().with_name("official_launcher.py")


# ----- our split as per-user sequences ----------------------------------------------------------------------

@dataclass(frozen=True)
class SplitRows:
    """One split of RecBole's sequential dataset, rows in stored order: user, target item, the right-padded list
    of earlier items (the last MAX_ITEM_LIST_LENGTH at most) and its length; all internal ids."""

    users: np.ndarray  # [n]
    targets: np.ndarray  # [n]
    histories: np.ndarray  # [n, L]
    lengths: np.ndarray  # [n]


def user_sequences(train: SplitRows, valid: SplitRows, test: SplitRows) -> dict[int, list[int]]:
    """Every user's whole item sequence (internal ids, in order), rebuilt from RecBole's three splits.

    RecBole's sequential data holds one row per interaction after the user's first (its target, with the earlier
    items as history), and leave-one-out puts each user's last row in test and the one before in valid. The first
    item of a sequence is the history of its first row; every row's history is checked against the sequence
    rebuilt so far, so a split that is not chronological per user cannot pass silently. Each user must have
    exactly one validation and one test target: the official format has no other shape.
    """
    sequences: dict[int, list[int]] = {}
    max_len = train.histories.shape[1]
    for name, rows in (("train", train), ("valid", valid), ("test", test)):
        seen_here: set[int] = set()
        for user, target, history, length in zip(rows.users.tolist(), rows.targets.tolist(),
                                                  rows.histories.tolist(), rows.lengths.tolist()):
            if name != "train":
                if user in seen_here:
                    raise ValueError(f"user {user} has more than one {name} target")
                seen_here.add(user)
            sequence = sequences.setdefault(user, list(history[:length]))
            expected = sequence[-max_len:]
            if history[:length] != expected:
                raise ValueError(f"user {user}: the {name} row's history {history[:length]} is not the end of "
                                 f"the sequence so far {expected}; the split is not chronological per user")
            sequence.append(target)
        if name != "train" and seen_here != set(sequences):
            missing = len(set(sequences) - seen_here)
            raise ValueError(f"{missing} users have no {name} target (fewer than 3 interactions); the official "
                             "format needs one validation and one test target per user")
    return sequences


# ----- the official input files -----------------------------------------------------------------------------

OFFICIAL_CSV_COLUMNS = ("user_id", "parent_asin", "rating", "timestamp", "history")


def official_csv_rows(sequences: Mapping[str, Sequence[str]]) -> dict[str, list[tuple[str, str, float, int, str]]]:
    """Rows of ``<name>.{train,valid,test}.csv`` for sequences of user and item names.

    train: every training target that has a history (a user's first item appears as history only, as in the
    official files, whose loader drops rows without history); valid: the second to last item; test: the last.
    Timestamps are each item's position in the sequence: only their order is meaningful, as in our Beauty data.
    """
    rows: dict[str, list[tuple[str, str, float, int, str]]] = {"train": [], "valid": [], "test": []}
    for user, items in sequences.items():
        for position, item in enumerate(items):
            if position == 0:
                continue
            split = "test" if position == len(items) - 1 else "valid" if position == len(items) - 2 else "train"
            rows[split].append((user, item, 5.0, position, " ".join(items[:position])))
    return rows


def official_name(prefix: str, token: str) -> str:
    if not token or any(c.isspace() for c in token):
        raise ValueError(f"id {token!r} is empty or contains whitespace: the official history column is "
                         "space separated")
    return prefix + token


def write_official_inputs(work_dir: Path, category: str, sequences: Mapping[int, Sequence[int]],
                          user_tokens: Sequence[str], item_tokens: Sequence[str],
                          item_codes: Mapping[str, Sequence[int]], max_item_seq_len: int) -> Path:
    """Write the official dataset files and sem_ids JSON for ``sequences`` (internal ids, named by the token
    lists); ``item_codes`` maps our item tokens to SIDs and must cover every item of the sequences. Only those
    items go to the JSON: the official model looks every JSON item up in its own id mapping. Any earlier copy of
    this category's data is removed first, since the official loader reuses its processed/ folder whenever it
    exists. Returns the sem_ids JSON path."""
    dataset_dir = work_dir / "cache" / "AmazonReviews2023" / category
    if dataset_dir.exists():
        shutil.rmtree(dataset_dir)
    raw_dir = dataset_dir / "raw"
    raw_dir.mkdir(parents=True)

    named = {official_name(USER_PREFIX, user_tokens[user]): [official_name(ITEM_PREFIX, item_tokens[item])
                                                              for item in items]
             for user, items in sequences.items()}
    for split, rows in official_csv_rows(named).items():
        with open(raw_dir / f"{category}.{split}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(OFFICIAL_CSV_COLUMNS)
            writer.writerows(rows)
    (raw_dir / f"meta_{category}.jsonl").write_text("", encoding="utf-8")

    used_items = sorted({item for items in sequences.values() for item in items})
    missing = [item_tokens[item] for item in used_items if item_tokens[item] not in item_codes]
    if missing:
        raise ValueError(f"{len(missing)} items of the data have no semantic ID, e.g. {missing[:5]}")
    sem_ids = {official_name(ITEM_PREFIX, item_tokens[item]): [int(c) for c in item_codes[item_tokens[item]]]
               for item in used_items}
    sem_ids_path = sem_ids_file(work_dir, category, max_item_seq_len)
    sem_ids_path.parent.mkdir(parents=True, exist_ok=True)
    sem_ids_path.write_text(json.dumps(sem_ids), encoding="utf-8")
    return sem_ids_path


def sem_ids_file(work_dir: Path, category: str, max_item_seq_len: int) -> Path:
    """Where the official MultiHeadVQVAE tokenizer looks for ``--sem_ids_path=SEM_IDS_NAME`` (its folder name
    carries the history length)."""
    return (work_dir / "output" / f"AmazonReviews2023_{category}"
            / f"TokenModel_Seq-{max_item_seq_len}_MultiHeadVQVAE" / "sem_ids" / SEM_IDS_NAME)


# ----- semantic IDs ------------------------------------------------------------------------------------------

def read_sid_table(path: Path) -> dict[str, list[int]]:
    """``item_id<TAB>c1 c2 ... cM`` per line (recbole_llada.cli.build_sids's output) -> {item token: codes}."""
    codes: dict[str, list[int]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            item, code_text = line.split("\t")
            codes[item] = [int(c) for c in code_text.split()]
    return codes


def checkpoint_sids(path: Path, item_tokens: Sequence[str]) -> dict[str, list[int]]:
    """The ``item_sid`` buffer of a LLaDARec checkpoint, rows named by our item tokens (row 0 = padding). The
    checkpoint's internal ids are those of the dataset rebuilt here from the same data and config."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    item_sid = state["item_sid"]
    if item_sid.shape[0] != len(item_tokens):
        raise ValueError(f"checkpoint has SIDs for {item_sid.shape[0]} item ids, the dataset has "
                         f"{len(item_tokens)}: not the same data or config")
    return {token: row for token, row in zip(item_tokens[1:], item_sid[1:].tolist())}


def sid_shape(item_codes: Mapping[str, Sequence[int]], codebook_size: int) -> int:
    """M (codes per item); checks every SID has M codes in 0..K-1 and no two items share one."""
    lengths = {len(codes) for codes in item_codes.values()}
    if len(lengths) != 1:
        raise ValueError(f"SIDs of different lengths: {sorted(lengths)}")
    if any(not 0 <= c < codebook_size for codes in item_codes.values() for c in codes):
        raise ValueError(f"SID codes outside 0..{codebook_size - 1} (sid_codebook_size)")
    if len({tuple(codes) for codes in item_codes.values()}) != len(item_codes):
        # The official evaluator scores code tuples, ours items: they agree only for unique SIDs.
        raise ValueError("two items share a SID")
    return lengths.pop()


# ----- our config mapped onto the official keys --------------------------------------------------------------

# Settings the official code has no key for: it always behaves as these values.
OFFICIAL_FIXED = {"attention": "bidirectional", "gen_order": "adaptive", "item_mask_weight": 1.0,
                  "constrained_decoding": True}


def official_arguments(config: Mapping[str, Any], category: str, sid_length: int, epochs: int, seed: int,
                       work_dir: Path) -> dict[str, Any]:
    """Our LLaDARec config as the official main.py's ``--key=value`` arguments."""
    for key, value in OFFICIAL_FIXED.items():
        if config[key] != value:
            raise ValueError(f"the official code cannot run {key}={config[key]!r} (it always uses {value!r})")
    valid_metric, valid_k = config["valid_metric"].lower().split("@")
    if valid_metric not in ("ndcg", "recall"):
        raise ValueError(f"the official evaluator has ndcg and recall, not {config['valid_metric']}")
    # The official beam search returns exactly its beams, and its evaluator wants max(topk) of them.
    if config["valid_num_beams"] < int(valid_k) or config["num_beams"] < max(config["topk"]):
        raise ValueError(f"the official code needs valid_num_beams >= {valid_k} (valid_metric) and num_beams >= "
                         f"{max(config['topk'])} (topk), got {config['valid_num_beams']} and {config['num_beams']}")
    decode_users = config["decode_batch_size"]
    return {
        "model": "LLaDARec", "dataset": "AmazonReviews2023", "category": category,
        "tokenizer_name": "MultiHeadVQVAE", "sem_ids_path": SEM_IDS_NAME,
        "vq_n_codebooks": sid_length, "vq_codebook_size": config["sid_codebook_size"],
        "cache_dir": f"{work_dir}/cache/", "base_result_dir": f"{work_dir}/output/",
        "tensorboard_log_dir": f"{work_dir}/tensorboard/", "run_time": f"seed{seed}",
        "rand_seed": seed, "epochs": epochs, "eval_interval": 1, "patience": config["stopping_step"],
        "max_item_seq_len": config["MAX_ITEM_LIST_LENGTH"],
        "d_model": config["hidden_size"], "n_layers": config["n_layers"], "n_heads": config["n_heads"],
        "n_kv_heads": config["n_heads"], "mlp_ratio": config["mlp_ratio"], "dropout_rate": config["dropout_prob"],
        "his_mask_w": config["his_mask_weight"], "temperature": config["temperature"],
        "lr": config["learning_rate"], "weight_decay": config["weight_decay"],
        "warmup_ratio": config["warmup_ratio"], "max_grad_norm": config["clip_grad_norm"]["max_norm"],
        "train_batch_size": config["train_batch_size"],
        "eval_batch_size": decode_users, "test_batch_size": decode_users,
        "gen_steps": config["gen_steps"], "num_beams": config["num_beams"],
        "val_num_beams": config["valid_num_beams"], "val_metric": f"{valid_metric}@{valid_k}",
        "val_topk": f"[{valid_k}]", "topk": "[" + ",".join(str(k) for k in config["topk"]) + "]",
    }


def official_command_line(arguments: Mapping[str, Any]) -> list[str]:
    """``--key=value`` strings for the official parser, which splits each on its only '='."""
    return [f"--{key}={value}" for key, value in arguments.items()]


# ----- the run -----------------------------------------------------------------------------------------------

def load_split(dataset: str, config_files: Sequence[str], overrides: Mapping[str, Any]):
    """Our LLaDARec config and RecBole's split of the dataset under it (RecBole's SequentialDataset: the same
    interactions, order and split as LLaDARec's dataset, without building semantic IDs)."""
    import recbole_llada  # noqa: F401  (registers the plugin, applies the compatibility patches)
    from recbole.data.dataset import SequentialDataset
    from recbole.utils import init_seed

    from recbole_llada.training import quick_start

    config = quick_start.build_config("LLaDARec", dataset, config_files, overrides)
    quick_start.ensure_dataset_files(config)
    init_seed(config["seed"], config["reproducibility"])
    data = SequentialDataset(config)
    splits = [
        SplitRows(users=split.inter_feat[data.uid_field].numpy(), targets=split.inter_feat[data.iid_field].numpy(),
                  histories=split.inter_feat[data.item_id_list_field].numpy(),
                  lengths=split.inter_feat[data.item_list_length_field].numpy())
        for split in data.build()
    ]
    return config, data, splits


def run_official(official_dir: Path, arguments: Mapping[str, Any], work_dir: Path) -> dict[str, Any]:
    """Run the official pipeline in a child process, its output teed to ``<work_dir>/official.log``."""
    summary_path = work_dir / f"summary-{arguments['run_time']}.json"
    summary_path.unlink(missing_ok=True)
    command = [sys.executable, str(LAUNCHER), str(official_dir), str(summary_path),
               *official_command_line(arguments)]
    log_path = work_dir / "official.log"
    print(f"running the official code, log in {log_path}:\n  {' '.join(command)}", flush=True)
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in process.stdout:
            log.write(line)
            sys.stdout.write(line)
        if process.wait() != 0:
            raise RuntimeError(f"the official code failed (exit {process.returncode}); see {log_path}")
    return json.loads(summary_path.read_text())


def run_record(summary: Mapping[str, Any], dataset: str, seed: int, arguments: Mapping[str, Any],
               epochs: int) -> dict[str, object]:
    """A row of ``<dataset>_runs.csv`` (quality.RUN_COLUMNS) for one official run."""
    from recbole_llada.training.results import provenance

    metrics = {k: float(v) for k, v in summary["test_results"].items()}
    settings = {k: v for k, v in arguments.items()
                if k not in ("cache_dir", "base_result_dir", "tensorboard_log_dir", "run_time", "rand_seed")}
    info = provenance()
    return {
        "label": LABEL, "model": OFFICIAL_CODE_MODEL, "dataset": dataset, "seed": seed,
        **{metric: metrics.get(metric, "") for metric in METRICS},
        "best_valid_score": summary["best_val_score"], "epochs": summary["epochs_trained"],
        "stopped_by": "epoch cap" if summary["epochs_trained"] >= epochs else "early stopping",
        "n_parameters": summary["n_parameters"], "train_seconds": summary["train_seconds"],
        "test_seconds": summary["test_seconds"], "saved_model_file": summary["checkpoint"],
        "train_s_per_epoch": "", "valid_s_per_epoch": "",  # its log has them; the summary does not
        "overrides": json.dumps({"official_commit": OFFICIAL_COMMIT, **settings}, sort_keys=True, default=str),
        "config_files": "",  # the official code takes its settings as the overrides above
        "test_result": json.dumps(metrics, sort_keys=True),
        **{key: info[key] for key in ("commit", "hardware", "date", "command")},
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], allow_abbrev=False,
        epilog="Any other --key=value is a RecBole override of our LLaDARec config (e.g. --data_path=DIR).")
    parser.add_argument("--official_dir", type=Path, required=True,
                        help=f"local checkout of TengShi-RUC/LLaDA-Rec at {OFFICIAL_COMMIT}")
    parser.add_argument("--dataset", required=True)
    sids = parser.add_mutually_exclusive_group(required=True)
    sids.add_argument("--sid_table", type=Path, help="item_id<TAB>codes, from python -m recbole_llada.cli.build_sids")
    sids.add_argument("--checkpoint", type=Path, help="a trained LLaDARec checkpoint (its item_sid buffer)")
    parser.add_argument("--epochs", type=int, required=True, help="training epochs (as our run's)")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--config_files", default="", help="extra YAML files of our config, space separated")
    parser.add_argument("--work_dir", type=Path, default=None,
                        help="official inputs and outputs (default: <tmp>/llada_official/<dataset>); keep it "
                             "outside the repository")
    parser.add_argument("--results_dir", type=Path, default=RESULTS_DIR)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from recbole_llada.training.quick_start import parse_overrides

    args, rest = build_parser().parse_known_args(argv)
    overrides = parse_overrides(rest)
    if "seed" in overrides or "epochs" in overrides:
        raise ValueError("set --seed and --epochs as this script's own arguments")
    overrides.update(seed=args.seed, epochs=args.epochs)
    work_dir = (args.work_dir or Path(tempfile.gettempdir()) / "llada_official" / args.dataset).resolve()
    official_dir = check_official_checkout(args.official_dir)

    config, data, (train, valid, test) = load_split(args.dataset, split_config_files(args.config_files),
                                                    overrides)
    user_tokens = list(data.field2id_token[data.uid_field])
    item_tokens = list(data.field2id_token[data.iid_field])
    item_codes = (read_sid_table(args.sid_table) if args.sid_table is not None
                  else checkpoint_sids(args.checkpoint, item_tokens))
    sid_length = sid_shape(item_codes, config["sid_codebook_size"])
    sequences = user_sequences(train, valid, test)
    sem_ids_path = write_official_inputs(work_dir, args.dataset, sequences, user_tokens, item_tokens, item_codes,
                                         config["MAX_ITEM_LIST_LENGTH"])
    print(f"wrote {len(sequences)} users' sequences and {sem_ids_path}", flush=True)

    arguments = official_arguments(config, args.dataset, sid_length, args.epochs, args.seed, work_dir)
    summary = run_official(official_dir, arguments, work_dir)
    append_run(runs_path(args.results_dir, args.dataset),
               run_record(summary, args.dataset, args.seed, arguments, args.epochs))
    md_path, _ = write_summary(args.dataset, args.results_dir)
    print(f"official test metrics: {summary['test_results']}\nrow added to "
          f"{runs_path(args.results_dir, args.dataset)}; summary {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
