"""Check the Amazon 2023 preparation on the real Scientific data against the official split.

Prepares Scientific from the official valid/test files (no train, no meta: the situation on our machines) into a
temporary folder, then checks: the published counts; the same users, items and per-user order as the shared
``Scientific.inter``; and that RecBole's leave-one-out split (order TO, LS valid_and_test) gives every user the
official valid and test target and history. Writes ``benchmarks/results/scientific_split_check.{md,csv}`` and exits
with status 1 on any mismatch.

    python benchmarks/check_scientific_split.py [--shared_dir ../shared/data/amazon2023/Scientific]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

import recbole_llada  # noqa: F401  (numpy-2 compat for RecBole)
from recbole.config import Config
from recbole.data import create_dataset, data_preparation

from recbole_llada.data.amazon2023 import prepare, read_split

REPO = Path(__file__).resolve().parents[1]
CATEGORY = "Industrial_and_Scientific"
NAME = "Scientific"
EXPECTED_USERS, EXPECTED_ITEMS, EXPECTED_INTERACTIONS = 50_985, 25_848, 412_947
MAX_HISTORY = 50


@dataclass
class Check:
    name: str
    expected: str
    observed: str

    @property
    def ok(self) -> bool:
        return self.expected == self.observed


def read_inter(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    frame.columns = [column.split(":")[0] for column in frame.columns]
    return frame


def compare_with_shared(mine: pd.DataFrame, shared: pd.DataFrame) -> list[Check]:
    mine_sequences = mine.groupby("user_id", sort=False)["item_id"].agg(list)
    shared_sequences = shared.groupby("user_id", sort=False)["item_id"].agg(list)
    common = mine_sequences.index.intersection(shared_sequences.index)
    same_order = sum(mine_sequences[user] == shared_sequences[user] for user in common)
    same_rows = len(mine) == len(shared) and bool((mine.values == shared.values).all())
    return [
        Check("same users as shared Scientific.inter", "yes",
              "yes" if set(mine_sequences.index) == set(shared_sequences.index) else "no"),
        Check("same items as shared Scientific.inter", "yes",
              "yes" if set(mine["item_id"]) == set(shared["item_id"]) else "no"),
        Check("users with the same item order as shared", str(len(shared_sequences)), str(same_order)),
        Check("identical rows incl. timestamps (user, item, timestamp)", "yes", "yes" if same_rows else "no"),
    ]


def recbole_split_checks(data_path: Path, work_dir: Path, raw_dir: Path) -> list[Check]:
    config = Config(model="SASRec", dataset=NAME, config_dict={
        "data_path": str(data_path), "checkpoint_dir": str(work_dir / "saved"), "state": "WARNING",
        "device": "cpu", "use_gpu": False, "show_progress": False, "log_wandb": False, "worker": 0,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "eval_args": {"order": "TO", "split": {"LS": "valid_and_test"}, "mode": "full", "group_by": "user"},
        "MAX_ITEM_LIST_LENGTH": MAX_HISTORY, "train_neg_sample_args": None, "loss_type": "CE",
    })
    dataset = create_dataset(config)
    _, valid_data, test_data = data_preparation(config, dataset)
    checks = [Check("RecBole users / items (excl. padding)", f"{EXPECTED_USERS} / {EXPECTED_ITEMS}",
                    f"{dataset.user_num - 1} / {dataset.item_num - 1}")]
    for split, loader in (("valid", valid_data), ("test", test_data)):
        official = read_split(raw_dir / f"{CATEGORY}.{split}.csv.gz").set_index("user_id")
        feat = loader._dataset.inter_feat
        users = dataset.id2token("user_id", feat["user_id"].numpy())
        targets = dataset.id2token("item_id", feat["item_id"].numpy())
        histories = feat["item_id_list"].numpy()
        lengths = feat["item_length"].numpy()
        same_target = same_history = 0
        for user, target, history, length in zip(users, targets, histories, lengths):
            if user not in official.index:
                continue
            row = official.loc[user]
            same_target += target == row["parent_asin"]
            official_history = row["history"].split()[-MAX_HISTORY:]
            same_history += list(dataset.id2token("item_id", history[:length])) == official_history
        checks += [
            Check(f"{split} rows (one per user)", str(len(official)), str(len(users))),
            Check(f"users whose RecBole {split} target is the official one", str(len(official)), str(same_target)),
            Check(f"users whose RecBole {split} history is the official one (last {MAX_HISTORY})",
                  str(len(official)), str(same_history)),
        ]
    return checks


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs visible; {platform.platform()}; Python {platform.python_version()}"


def write_results(checks: list[Check], timings: dict[str, float], command: str, results_dir: Path) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with open(results_dir / "scientific_split_check.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["check", "expected", "observed", "ok"])
        writer.writerows([check.name, check.expected, check.observed, check.ok] for check in checks)
    lines = [
        "# Scientific split check",
        "",
        "Amazon Reviews 2023 *Industrial_and_Scientific* prepared by `recbole_llada.data.amazon2023` from the "
        "official `valid`/`test` files only, compared with the shared `Scientific.inter` and with the official "
        "targets after RecBole's leave-one-out split (`order: TO`, `LS: valid_and_test`).",
        "",
        f"- command: `{command}`",
        f"- date: {date}",
        f"- hardware: {hardware()}",
        "- time: " + ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in timings.items()),
        f"- result: **{'all checks pass' if all(check.ok for check in checks) else 'MISMATCH'}**",
        "",
        "| check | expected | observed | ok |",
        "|---|---|---|---|",
        *(f"| {check.name} | {check.expected} | {check.observed} | {'yes' if check.ok else '**NO**'} |"
          for check in checks),
        "",
    ]
    (results_dir / "scientific_split_check.md").write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared_dir", type=Path, default=REPO.parent / "shared/data/amazon2023/Scientific",
                        help="folder with Scientific.inter and raw/ (default: %(default)s)")
    parser.add_argument("--results_dir", type=Path, default=REPO / "benchmarks/results")
    args = parser.parse_args()
    command = shlex.join(["python", *sys.argv])
    raw_dir = args.shared_dir / "raw"
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        start = time.perf_counter()
        prepared = prepare(CATEGORY, NAME, raw_dir, work_dir / "data", download=False)
        timings["prepare"] = time.perf_counter() - start
        checks = [
            Check("users", str(EXPECTED_USERS), str(prepared.n_users)),
            Check("items", str(EXPECTED_ITEMS), str(prepared.n_items)),
            Check("interactions", str(EXPECTED_INTERACTIONS), str(prepared.n_interactions)),
        ]
        checks += compare_with_shared(read_inter(prepared.inter_file), read_inter(args.shared_dir / f"{NAME}.inter"))
        start = time.perf_counter()
        checks += recbole_split_checks(work_dir / "data", work_dir, raw_dir)
        timings["RecBole load + split + check"] = time.perf_counter() - start
    write_results(checks, timings, command, args.results_dir)
    for check in checks:
        print(f"{'ok ' if check.ok else 'BAD'} {check.name}: expected {check.expected}, observed {check.observed}")
    return 0 if all(check.ok for check in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
