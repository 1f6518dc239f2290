"""Check a dataset's ``.inter`` file before RecBole loads it, and have RecBole load its timestamps.

RecBole reads atomic files without checking them: an empty or header-only file, a header without ``name:type``
cells, a row with a missing field or a missing ``item_id`` column all end in tracebacks from pandas or deep inside
RecBole, some only after the semantic IDs were built. ``check_interaction_file`` reads the file once (a fraction
of the time RecBole then takes) and turns each of these into a ``UserInputError`` naming the file, the line and
the fix.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from recbole.utils import FeatureType

from recbole_llada.errors import UserInputError

logger = logging.getLogger(__name__)

FEATURE_TYPES = tuple(feature_type.value for feature_type in FeatureType)
MIN_USER_INTERACTIONS = 3  # leave-one-out: at least one to train on, one to validate, one to test


def _inter_file(config: Any) -> Path:
    return Path(config["data_path"]) / f"{config['dataset']}.inter"


def read_header(path: Path, separator: str, encoding: str) -> list[tuple[str, str]]:
    """``[(field name, type), ...]`` of an atomic file's header line."""
    with open(path, encoding=encoding) as handle:
        header = handle.readline().rstrip("\r\n")
    if not header:
        raise UserInputError(f"{path} is empty: an atomic .inter file starts with a header line such as "
                             "'user_id:token<TAB>item_id:token<TAB>timestamp:float', then one interaction per line.")
    columns = []
    for cell in header.split(separator):
        name, _, kind = cell.partition(":")
        if kind not in FEATURE_TYPES:
            raise UserInputError(
                f"{path}: header cell {cell!r} must be written name:type with a type among {', '.join(FEATURE_TYPES)} "
                f"(e.g. item_id:token). Header read: {header!r}; columns are separated by {separator!r} "
                "(RecBole's field_separator)."
            )
        columns.append((name, kind))
    return columns


def check_interaction_file(config: Any) -> None:
    """Raise a ``UserInputError`` for a ``.inter`` file RecBole would fail on, or one no user of which can be split
    into train, validation and test."""
    path = _inter_file(config)
    separator, encoding = config["field_separator"], config["encoding"] or "utf-8"
    columns = read_header(path, separator, encoding)
    names = [name for name, _ in columns]
    uid_field, iid_field = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
    for field in (uid_field, iid_field):
        if field not in names:
            raise UserInputError(
                f"{path} has no {field!r} column (its columns: {', '.join(names)}). RecBole needs a user and an item "
                f"column; rename yours in the header, or set USER_ID_FIELD / ITEM_ID_FIELD to their names."
            )
    uid_column, iid_column = names.index(uid_field), names.index(iid_field)
    float_columns = [index for index, (_, kind) in enumerate(columns) if kind == FeatureType.FLOAT.value]
    interactions_per_user: Counter[str] = Counter()
    with open(path, encoding=encoding) as handle:
        next(handle)
        for line_number, line in enumerate(handle, start=2):
            values = line.rstrip("\r\n").split(separator)
            if values == [""]:
                continue
            if len(values) != len(columns):
                raise UserInputError(f"{path}, line {line_number}: {len(values)} fields, but the header has "
                                     f"{len(columns)} ({', '.join(names)}); fields are separated by {separator!r}.")
            for index in float_columns:
                try:
                    float(values[index] or "nan")
                except ValueError:
                    raise UserInputError(f"{path}, line {line_number}: {names[index]} is {values[index]!r}, but the "
                                         "header declares it a float.") from None
            if not values[uid_column] or not values[iid_column]:
                raise UserInputError(f"{path}, line {line_number}: the user or item id is empty.")
            interactions_per_user[values[uid_column]] += 1
    if not interactions_per_user:
        raise UserInputError(f"{path} has a header but no interactions: add one interaction per line.")
    if max(interactions_per_user.values()) < MIN_USER_INTERACTIONS:
        raise UserInputError(
            f"{path}: every one of its {len(interactions_per_user)} users has fewer than {MIN_USER_INTERACTIONS} "
            "interactions, and the leave-one-out protocol needs at least 3 per user (the last one for test, the "
            "one before for validation, the rest for training). Add longer histories."
        )


def load_time_field(config: Any) -> None:
    """The protocol orders each user's interactions by time, but RecBole loads only the ``load_col`` columns
    (its default: user and item): add the time field to ``load_col`` when the ``.inter`` file has one."""
    path = _inter_file(config)
    if not path.is_file():  # split files only (RecBole's benchmark_filename): RecBole reads them as configured
        return
    names = [name for name, _ in read_header(path, config["field_separator"], config["encoding"] or "utf-8")]
    time_field, load_col = config["TIME_FIELD"], config["load_col"]
    if time_field not in names:
        if config["eval_args"]["order"] == "TO":
            logger.warning("%s has no %r column: each user's interactions keep their order in the file", path,
                           time_field)
        return
    if isinstance(load_col, dict) and time_field not in load_col.get("inter", [time_field]):
        load_col["inter"] = [*load_col["inter"], time_field]
        logger.info("loading %r from %s too: the protocol orders interactions by time", time_field, path)
