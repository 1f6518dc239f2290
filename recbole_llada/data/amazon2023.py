"""Amazon Reviews 2023 (McAuley Lab) official benchmark files -> RecBole atomic files.

Input, in ``raw_dir`` (``.csv.gz`` as published, or uncompressed ``.csv``/``.jsonl``):
  ``<Category>.{train,valid,test}.csv.gz`` from the 5-core ``last_out_w_his`` benchmark
  (``user_id,parent_asin,rating,timestamp,history``; ``history`` = the user's earlier items, space separated), and
  ``meta_<Category>.jsonl.gz`` (one JSON object per item, keyed by ``parent_asin``).
Output, in ``<out_dir>/<name>/``:
  ``<name>.inter``  ``user_id:token item_id:token timestamp:float``, users in the test file's order, each user's
                    interactions in the official order;
  ``<name>.item``   ``item_id`` and the cleaned ``title``, ``features``, ``categories``, ``description`` (only with
                    the meta file).

The test file alone fixes every sequence (its history plus its target); valid and train only add timestamps.
RecBole's ``eval_args: {order: TO, split: {LS: valid_and_test}}`` must give back the official targets, and it orders
by timestamp, so each user's timestamps are made strictly increasing (see ``assign_timestamps``). RecBole then
holds them as float32 (about two minutes of resolution for millisecond epochs), where neighbours can tie; its
sorts are stable, so ties keep this file's order, which is the official one.

CLI: ``python -m recbole_llada.data.amazon2023 --category Industrial_and_Scientific --name Scientific``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Sequence

import pandas as pd

from recbole_llada.data.download import DownloadError, download_file
from recbole_llada.errors import UserInputError
from recbole_llada.sid.text import clean_text as clean_item_text

logger = logging.getLogger(__name__)

CATEGORY_OF_DATASET = {
    "Scientific": "Industrial_and_Scientific",
    "Instrument": "Musical_Instruments",
    "Game": "Video_Games",
}
OFFICIAL_BENCHMARK_URL = ("https://mcauleylab.ucsd.edu/public_datasets/data/amazon_2023/benchmark/5core/"
                          "last_out_w_his/{category}.{split}.csv.gz")
OFFICIAL_META_URL = ("https://mcauleylab.ucsd.edu/public_datasets/data/amazon_2023/raw/meta_categories/"
                     "meta_{category}.jsonl.gz")
DEFAULT_OUT_DIR = Path("dataset/amazon2023")
TEXT_FIELDS = ("title", "features", "categories", "description")
# Gap between synthetic timestamps (milliseconds, like the real ones): the shared Scientific.inter uses 1 s.
SYNTHETIC_STEP_MS = 1000
# The protocol needs these two; train only adds real timestamps for the earlier interactions, meta adds item text.
REQUIRED_SPLITS = ("valid", "test")
OPTIONAL_SPLITS = ("train",)

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PARENT_ASIN = re.compile(r'"parent_asin"\s*:\s*"([^"]*)"')


@dataclass(frozen=True)
class DownloadSettings:
    """Where missing raw files come from and how hard to try (tests point the URLs at a loopback server)."""

    benchmark_url: str = OFFICIAL_BENCHMARK_URL
    meta_url: str = OFFICIAL_META_URL
    retries: int = 4
    backoff_s: float = 2.0
    show_progress: bool = True

    def url(self, category: str, kind: str) -> str:
        if kind == "meta":
            return self.meta_url.format(category=category)
        return self.benchmark_url.format(category=category, split=kind)


@dataclass(frozen=True)
class PreparedDataset:
    name: str
    category: str
    inter_file: Path
    item_file: Path | None
    n_users: int
    n_items: int
    n_interactions: int
    n_items_with_text: int
    n_real_timestamps: int  # interactions whose timestamp is the official one, unchanged
    source_files: tuple[Path, ...]


@dataclass
class _UserSequence:
    items: list[str]
    known_ms: list[int | None]  # official timestamp per position, None where no file gives it


def raw_file_name(category: str, kind: str) -> str:
    """Published file name of ``kind`` ('train', 'valid', 'test' or 'meta') for a category."""
    if kind == "meta":
        return f"meta_{category}.jsonl.gz"
    return f"{category}.{kind}.csv.gz"


def find_raw_file(raw_dir: Path, category: str, kind: str) -> Path | None:
    """The published ``.gz`` file in ``raw_dir``, else its uncompressed twin, else None."""
    name = raw_file_name(category, kind)
    for candidate in (raw_dir / name, raw_dir / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def read_split(path: Path) -> pd.DataFrame:
    """One benchmark CSV as strings (ids keep leading zeros, empty history stays ''), timestamps as int64."""
    frame = pd.read_csv(path, usecols=["user_id", "parent_asin", "timestamp", "history"],
                        dtype={"user_id": str, "parent_asin": str, "history": str}, keep_default_na=False)
    frame["timestamp"] = frame["timestamp"].astype("int64")
    return frame[["user_id", "parent_asin", "timestamp", "history"]]


def assign_timestamps(known_ms: Sequence[int | None], step_ms: int = SYNTHETIC_STEP_MS) -> list[int]:
    """Strictly increasing timestamps for one user's interactions in official order.

    Known timestamps are kept unless one does not exceed its predecessor (a tie or an out-of-order record); it then
    becomes predecessor + 1 ms. Unknown ones before the first known lie ``step_ms`` apart and end ``step_ms`` before
    it; unknown ones after it follow their predecessor by ``step_ms``.
    """
    anchor = next((index for index, value in enumerate(known_ms) if value is not None), None)
    if anchor is None:
        raise ValueError("at least one interaction needs a known timestamp")
    timestamps: list[int] = []
    for index, value in enumerate(known_ms):
        if value is None:
            value = known_ms[anchor] - (anchor - index) * step_ms if index < anchor else timestamps[-1] + step_ms
        if timestamps and value <= timestamps[-1]:
            value = timestamps[-1] + 1
        timestamps.append(value)
    return timestamps


def build_sequences(test: pd.DataFrame, valid: pd.DataFrame,
                    train: pd.DataFrame | None = None) -> dict[str, _UserSequence]:
    """Each user's official sequence (test history + test target) with the timestamps the files know.

    Raises ``ValueError`` when the files disagree (e.g. from different releases): a user missing from the test
    file, or a valid/train row that is not the matching position of the test file's sequence.
    """
    if not test["user_id"].is_unique:
        raise ValueError("the test file has several rows for one user; expected one row per user")
    sequences: dict[str, _UserSequence] = {}
    for user, item, timestamp, history in test.itertuples(index=False):
        items = history.split() + [item]
        sequences[user] = _UserSequence(items, [None] * (len(items) - 1) + [timestamp])

    def locate(user: str, item: str, history: str, split: str) -> _UserSequence:
        sequence = sequences.get(user)
        position = len(history.split())
        if sequence is None or sequence.items[:position + 1] != history.split() + [item]:
            raise ValueError(f"{split} row of user {user} (item {item} after {position} items) does not match the "
                             "test file's sequence: are the files from the same release?")
        return sequence

    for user, item, timestamp, history in valid.itertuples(index=False):
        sequence = locate(user, item, history, "valid")
        if len(history.split()) != len(sequence.items) - 2:
            raise ValueError(f"valid target of user {user} is not the second to last item of the test sequence")
        sequence.known_ms[-2] = timestamp
    if train is not None:
        for user, item, timestamp, history in train.itertuples(index=False):
            sequence = locate(user, item, history, "train")
            position = len(history.split())
            if position >= len(sequence.items) - 2:
                raise ValueError(f"train row of user {user} reaches the valid/test targets")
            sequence.known_ms[position] = timestamp
    return sequences


def clean_text(value: object) -> str:
    """Meta value -> one line safe inside a tab-separated atomic file.

    The SID pipeline's cleaning (HTML unescaped, tags dropped, whitespace collapsed), then what an atomic file
    needs on top: control characters removed, and double quotes written as two single quotes, because RecBole
    reads atomic files with pandas' default quoting, where a cell opening with ``"`` swallows the following tabs
    and lines. A list becomes its non-empty cleaned elements joined with ", ".
    """
    if isinstance(value, (list, tuple)):
        return ", ".join(part for part in (clean_text(element) for element in value) if part)
    return _CONTROL.sub("", clean_item_text(value)).replace('"', "''")


def read_item_texts(meta_file: Path, wanted_items: set[str]) -> dict[str, list[str]]:
    """``parent_asin -> cleaned TEXT_FIELDS`` for the wanted items (the meta file lists many more)."""
    texts: dict[str, list[str]] = {}
    with _open_text(meta_file) as lines:
        for line in lines:
            quick = _PARENT_ASIN.search(line)  # skip unwanted items without parsing their JSON
            if quick is not None and quick.group(1) not in wanted_items:
                continue
            if not line.strip():
                continue
            record = json.loads(line)
            item = record.get("parent_asin")
            if item in wanted_items and item not in texts:
                texts[item] = [clean_text(record.get(field)) for field in TEXT_FIELDS]
    return texts


def _write_atomically(path: Path, lines: Iterator[str]) -> None:
    """Write via a temporary file and rename, so a crash never leaves a half file that looks prepared."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", encoding="utf-8", newline="\n") as out:
        for line in lines:
            out.write(line + "\n")
    os.replace(temporary, path)


def _inter_lines(sequences: dict[str, _UserSequence], timestamps: dict[str, list[int]]) -> Iterator[str]:
    yield "user_id:token\titem_id:token\ttimestamp:float"
    for user, sequence in sequences.items():
        for item, timestamp in zip(sequence.items, timestamps[user]):
            yield f"{user}\t{item}\t{timestamp}.0"


def _item_lines(items: list[str], texts: dict[str, list[str]]) -> Iterator[str]:
    yield "\t".join(["item_id:token"] + [f"{field}:token_seq" for field in TEXT_FIELDS])
    empty = [""] * len(TEXT_FIELDS)
    for item in items:
        yield "\t".join([item] + texts.get(item, empty))


def _check_names(category: str, name: str) -> None:
    for label, value in (("category", category), ("name", name)):
        if not _SAFE_NAME.match(value):
            raise UserInputError(f"Invalid {label} {value!r}: use letters, digits, '_', '-' or '.', e.g. "
                                 "--category Industrial_and_Scientific --name Scientific.")


def _missing_files_message(category: str, raw_dir: Path, missing: list[str], settings: DownloadSettings,
                           cause: str) -> str:
    listing = "; ".join(f"{raw_file_name(category, kind)} (from {settings.url(category, kind)})" for kind in missing)
    return (f"Amazon Reviews 2023 {category}: {cause}. Place these official files in {raw_dir}/: {listing}; "
            "or point --raw_dir (prepare(raw_dir=...)) at a folder that holds them. Uncompressed .csv/.jsonl twins "
            "work too. The train and meta files are optional (real timestamps for earlier interactions; item text).")


def fetch_missing_files(category: str, raw_dir: Path, settings: DownloadSettings) -> None:
    """Download the raw files ``raw_dir`` lacks. A missing valid/test file stops with a paragraph saying what to put
    where; a missing train/meta file only warns (preparation works without them)."""
    for kind in (*REQUIRED_SPLITS, *OPTIONAL_SPLITS, "meta"):
        if find_raw_file(raw_dir, category, kind) is not None:
            continue
        url = settings.url(category, kind)
        logger.info("downloading %s", url)
        try:
            download_file(url, raw_dir / raw_file_name(category, kind), retries=settings.retries,
                          backoff_s=settings.backoff_s, show_progress=settings.show_progress)
        except DownloadError as error:
            if kind in REQUIRED_SPLITS:
                missing = [k for k in REQUIRED_SPLITS if find_raw_file(raw_dir, category, k) is None]
                raise UserInputError(_missing_files_message(
                    category, raw_dir, missing, settings, f"download failed ({error})")) from error
            logger.warning("could not download optional %s (%s); continuing without it", url, error)


def prepare(category: str, name: str, raw_dir: Path | None = None, out_dir: Path = DEFAULT_OUT_DIR,
            download: bool = True, settings: DownloadSettings = DownloadSettings()) -> PreparedDataset:
    """Write ``<out_dir>/<name>/<name>.inter`` (and ``.item`` when the meta file is there) from the official files.

    ``raw_dir`` defaults to ``<out_dir>/<name>/raw``. With ``download``, files missing there are fetched first
    (see ``fetch_missing_files``). Raises ``UserInputError`` (a ``ValueError``) when the valid or test file is
    missing, and ``ValueError`` when the files disagree.
    """
    _check_names(category, name)
    out_folder = Path(out_dir) / name
    raw_dir = Path(raw_dir) if raw_dir is not None else out_folder / "raw"
    if download:
        fetch_missing_files(category, raw_dir, settings)
    files = {kind: find_raw_file(raw_dir, category, kind) for kind in (*REQUIRED_SPLITS, *OPTIONAL_SPLITS, "meta")}
    missing = [kind for kind in REQUIRED_SPLITS if files[kind] is None]
    if missing:
        cause = "files missing" + ("" if download else " (downloading is off: --no-download)")
        raise UserInputError(_missing_files_message(category, raw_dir, missing, settings, cause))
    if files["train"] is None:
        logger.warning("%s not found in %s: timestamps before each user's valid target are synthetic (%d ms apart, "
                       "official order)", raw_file_name(category, "train"), raw_dir, SYNTHETIC_STEP_MS)

    train = read_split(files["train"]) if files["train"] is not None else None
    sequences = build_sequences(read_split(files["test"]), read_split(files["valid"]), train)
    items = list(dict.fromkeys(item for sequence in sequences.values() for item in sequence.items))

    out_folder.mkdir(parents=True, exist_ok=True)
    item_file = None
    texts: dict[str, list[str]] = {}
    if files["meta"] is None:
        logger.warning("%s not found in %s: no %s.item written, so the items have no text (text-based semantic IDs "
                       "need it)", raw_file_name(category, "meta"), raw_dir, name)
    else:
        texts = read_item_texts(files["meta"], set(items))
        if len(texts) < len(items):
            logger.warning("%d of %d items have no meta record; their text fields are empty",
                           len(items) - len(texts), len(items))
        item_file = out_folder / f"{name}.item"
        _write_atomically(item_file, _item_lines(items, texts))
    timestamps = {user: assign_timestamps(sequence.known_ms) for user, sequence in sequences.items()}
    inter_file = out_folder / f"{name}.inter"
    _write_atomically(inter_file, _inter_lines(sequences, timestamps))  # last: its presence means "prepared"

    n_real = sum(known == assigned for user, sequence in sequences.items()
                 for known, assigned in zip(sequence.known_ms, timestamps[user]))
    prepared = PreparedDataset(
        name=name, category=category, inter_file=inter_file, item_file=item_file, n_users=len(sequences),
        n_items=len(items), n_interactions=sum(len(sequence.items) for sequence in sequences.values()),
        n_items_with_text=len(texts), n_real_timestamps=n_real,
        source_files=tuple(path for path in files.values() if path is not None),
    )
    logger.info("prepared %s: %d users, %d items, %d interactions (%d with official timestamps), %d items with "
                "text", name, prepared.n_users, prepared.n_items, prepared.n_interactions, n_real,
                prepared.n_items_with_text)
    return prepared


def ensure_prepared(dataset_name: str, data_path: Path, raw_dir: Path | None = None, download: bool = True,
                    category: str | None = None) -> Path:
    """Path of ``<data_path>/<name>/<name>.inter``, preparing it first for an Amazon Reviews 2023 dataset.

    ``category`` is the official category name (the dataset YAML's ``amazon2023_category``); without it, the
    shipped datasets' categories (Scientific, Instrument, Game) are looked up by name.

    Raw files are looked for in ``raw_dir`` or else ``<data_path>/<name>/raw/``. Raises ``UserInputError`` (a
    ``ValueError``) for any other dataset whose file is missing.
    """
    inter_file = Path(data_path) / dataset_name / f"{dataset_name}.inter"
    if inter_file.is_file():
        return inter_file
    category = category or CATEGORY_OF_DATASET.get(dataset_name)
    if category is None:
        known = ", ".join(f"{name} ({category})" for name, category in CATEGORY_OF_DATASET.items())
        raise UserInputError(
            f"Dataset {dataset_name!r} has no atomic files at {inter_file}. The Amazon Reviews 2023 datasets "
            f"{known} are prepared automatically from the official files (downloaded, or placed in "
            f"{Path(data_path)}/<name>/raw/; see python -m recbole_llada.data.amazon2023 --help). Any other dataset "
            "must already be RecBole atomic files (<name>.inter, optional .item) in <data_path>/<name>/, e.g. "
            "ml-100k (bundled with RecBole); point --data_path at the folder holding it, or give a new Amazon 2023 "
            "dataset its category in its YAML (amazon2023_category: <Official_Category_Name>)."
        )
    return prepare(category, dataset_name, raw_dir, data_path, download).inter_file


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m recbole_llada.data.amazon2023",
        description="Turn the official Amazon Reviews 2023 benchmark files (5-core, last_out_w_his) into RecBole "
        "atomic files <out_dir>/<name>/<name>.inter and .item, downloading missing files unless --no-download.",
    )
    parser.add_argument("--category", help="official category, e.g. Industrial_and_Scientific, Musical_Instruments, "
                        "Video_Games (default: the one of --name)")
    parser.add_argument("--name", help="dataset name = output folder and file stem (default: Scientific, Instrument "
                        "or Game for their categories, else the category)")
    parser.add_argument("--raw_dir", type=Path, help="folder with the official files (default: <out_dir>/<name>/raw)")
    parser.add_argument("--out_dir", type=Path, default=DEFAULT_OUT_DIR, help="default: %(default)s")
    parser.add_argument("--download", action=argparse.BooleanOptionalAction, default=True,
                        help="download missing official files (default: on)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    category = args.category or CATEGORY_OF_DATASET.get(args.name or "")
    if category is None:
        print("error: give --category (e.g. Industrial_and_Scientific), or --name Scientific, Instrument or Game",
              file=sys.stderr)
        return 2
    name = args.name or {value: key for key, value in CATEGORY_OF_DATASET.items()}.get(category, category)
    try:
        prepared = prepare(category, name, args.raw_dir, args.out_dir, args.download)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{prepared.inter_file}: {prepared.n_users} users, {prepared.n_items} items, "
          f"{prepared.n_interactions} interactions")
    print(f"{prepared.item_file or 'no .item (meta file missing)'}: {prepared.n_items_with_text} items with text")
    return 0


if __name__ == "__main__":
    sys.exit(main())
