"""Item text: cleaning like the official preprocessing and reading RecBole atomic .item files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from recbole_llada.sid.text import clean_text, read_item_texts


@pytest.mark.parametrize("raw, expected", [
    ("Tom &amp; Jerry", "Tom & Jerry"),
    ("<p>Great <b>lipstick</b></p>", "Great lipstick"),
    ("  many \n\t spaces   here ", "many spaces here"),
    (["Skin Care", " Body ", "", None], "Skin Care, Body"),
    (None, ""),
    (math.nan, ""),
    (1995, "1995"),
    ("Café &eacute;clair", "Café éclair"),
])
def test_clean_text(raw, expected):
    assert clean_text(raw) == expected


def write_item_file(path: Path) -> Path:
    rows = [
        "item_id:token\ttitle:token_seq\tyear:token\tgenre:token_seq",
        "i1\tToy Story\t1995\tAnimation Comedy",
        "i2\t<i>Heat</i> &amp; Dust\t\tDrama",
        "i3\t\"Quoted\" title\t2001\t",
        "i1\tDuplicate row\t2000\tIgnored",
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_read_item_texts_joins_fields_in_order(tmp_path):
    texts = read_item_texts(write_item_file(tmp_path / "tiny.item"), "item_id", ["title", "year", "genre"])
    assert texts == {
        "i1": "Toy Story. 1995. Animation Comedy.",  # the first row of a repeated id wins
        "i2": "Heat & Dust. Drama.",  # empty fields are skipped, markup cleaned
        "i3": "\"Quoted\" title. 2001.",  # quotes are data, not csv quoting (RecBole reads with QUOTE_NONE)
    }


def test_read_item_texts_field_order_and_names(tmp_path):
    texts = read_item_texts(write_item_file(tmp_path / "tiny.item"), "item_id", ["genre", "title"],
                            with_field_names=True)
    assert texts["i1"] == "genre: Animation Comedy. title: Toy Story."


def test_read_item_texts_defaults_to_every_field_but_the_id(tmp_path):
    texts = read_item_texts(write_item_file(tmp_path / "tiny.item"), "item_id")
    assert texts["i1"] == "Toy Story. 1995. Animation Comedy."


def test_read_item_texts_missing_field_lists_available(tmp_path):
    with pytest.raises(ValueError, match=r"available fields: \['item_id', 'title', 'year', 'genre'\]"):
        read_item_texts(write_item_file(tmp_path / "tiny.item"), "item_id", ["title", "brand"])
