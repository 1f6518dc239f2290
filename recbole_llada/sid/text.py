"""Item text: clean raw metadata values and read them from a RecBole atomic ``.item`` file.

RecBole turns ``token_seq`` fields into word ids while loading, so the SID pipeline reads the raw file itself.
"""

from __future__ import annotations

import csv
import html
import math
import re
import sys
from pathlib import Path

_TAG = re.compile(r"<[^>]+>")
_WHITESPACE = re.compile(r"\s+")

# Titles and descriptions can exceed csv's default 128 KiB field limit.
csv.field_size_limit(sys.maxsize)


def clean_text(value: object) -> str:
    """Metadata value -> one clean line, as the official LLaDA-Rec preprocessing does.

    HTML entities are unescaped, tags removed and whitespace collapsed; a list becomes its cleaned elements joined
    with ", "; None and NaN become "". Unlike the official code we keep non-ASCII characters: the encoders'
    tokenizers handle Unicode, and dropping it mangles accented words ("Café" -> "Caf").
    """
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, (list, tuple)):
        parts = (clean_text(element) for element in value)
        return ", ".join(part for part in parts if part)
    text = html.unescape(str(value))
    text = _TAG.sub(" ", text)
    return _WHITESPACE.sub(" ", text).strip()


def join_fields(values: list[str], field_names: list[str] | None = None) -> str:
    """Join cleaned field values into one sentence; empty values are skipped.

    Each value ends with a period, like the official "title. features. categories." sentence. Field names are
    optional: they cost encoder tokens that are identical for every item, so by default we leave them out.
    """
    sentences = []
    for index, value in enumerate(values):
        if not value:
            continue
        if field_names is not None:
            value = f"{field_names[index]}: {value}"
        sentences.append(value if value.endswith(".") else value + ".")
    return " ".join(sentences)


def read_item_texts(item_file: Path, item_id_field: str, text_fields: list[str] | None = None,
                    with_field_names: bool = False, separator: str = "\t",
                    encoding: str = "utf-8") -> dict[str, str]:
    """Read ``item_id -> text`` from a RecBole atomic ``.item`` file (header cells are ``name:type``).

    The requested fields (None: every field but the item id, in file order) are cleaned and joined in the given
    order (see ``join_fields``). A repeated item id keeps its first row. Raises ``ValueError`` naming the
    available fields when a requested field is missing.
    """
    if text_fields is not None and not text_fields:
        raise ValueError("text_fields is empty: name at least one field of the .item file")
    with open(item_file, newline="", encoding=encoding) as handle:
        reader = csv.reader(handle, delimiter=separator, quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{item_file} is empty")
        names = [cell.split(":", 1)[0] for cell in header]
        if text_fields is None:
            text_fields = [name for name in names if name != item_id_field]
        wanted = [item_id_field, *text_fields]
        missing = [name for name in wanted if name not in names]
        if missing:
            raise ValueError(f"{item_file} has no field(s) {missing}; available fields: {names}")
        id_column = names.index(item_id_field)
        text_columns = [names.index(name) for name in text_fields]
        labels = list(text_fields) if with_field_names else None
        texts: dict[str, str] = {}
        for row in reader:
            if not row or len(row) <= id_column:
                continue
            item_id = row[id_column]
            if item_id in texts:
                continue
            values = [clean_text(row[column]) if column < len(row) else "" for column in text_columns]
            texts[item_id] = join_fields(values, labels)
    return texts
