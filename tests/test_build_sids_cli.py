"""python -m recbole_llada.cli.build_sids on the tiny dataset: the SID table and the report file."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import write_tiny_dataset
from recbole_llada.cli import build_sids
from recbole_llada.errors import UserInputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")
N_ITEMS = 30


def test_build_sids_writes_one_distinct_sid_per_item_and_the_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # RecBole writes log/ into the working directory
    write_tiny_dataset(tmp_path / "data", n_items=N_ITEMS)
    np.save(tmp_path / "vectors.npy", np.random.default_rng(0).normal(size=(N_ITEMS, 8)).astype(np.float32))
    (tmp_path / "ids.txt").write_text("\n".join(f"i{i}" for i in range(1, N_ITEMS + 1)) + "\n")
    table, report = tmp_path / "sids.tsv", tmp_path / "report" / "tiny.md"
    code = build_sids.main([
        "--dataset=tiny", f"--output={table}", f"--report={report}", f"--data_path={tmp_path / 'data'}",
        "--load_col={'inter': ['user_id', 'item_id', 'timestamp']}", "--device=cpu", "--use_gpu=False",
        "--item_embedding=file", f"--sid_embedding_file={tmp_path / 'vectors.npy'}",
        f"--sid_embedding_ids_file={tmp_path / 'ids.txt'}", "--sid_pca_dim=0", "--sid_length=2",
        "--sid_codebook_size=8", "--sid_code_dim=4", "--sid_hidden_sizes=[16]", "--sid_epochs=10",
        f"--sid_cache_dir={tmp_path / 'cache'}", "--state=WARNING",
    ])
    assert code == 0
    rows = [line.split("\t") for line in table.read_text().splitlines()]
    assert sorted(item for item, _ in rows) == sorted(f"i{i}" for i in range(1, N_ITEMS + 1))
    codes = [tuple(int(c) for c in sid.split()) for _, sid in rows]
    assert len(set(codes)) == N_ITEMS and all(len(sid) == 2 and all(0 <= c < 8 for c in sid) for sid in codes)
    text = report.read_text()
    assert "-> 0 after make_unique" in text and "- commit:" in text and "perplexity" in text


def test_build_sids_reports_a_mistake_in_one_paragraph_or_with_debug_its_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RECBOLE_LLADA_DEBUG", raising=False)
    assert build_sids.main(["--dataset=ml-100k", "--sid_tokenizr=opq"]) == 2
    err = capsys.readouterr().err
    assert "Did you mean 'sid_tokenizer'" in err and "Traceback" not in err
    with pytest.raises(UserInputError, match="sid_tokenizr"):
        build_sids.main(["--dataset=ml-100k", "--sid_tokenizr=opq", "--debug"])
