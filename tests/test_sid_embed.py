"""Embedding stage: user-supplied matrices, train-only PCA whitening, and the packaged offline encoder."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA

from recbole_llada.sid.embed import encode_texts, load_embedding_file, pca_whiten, resolve_text_encoder


def test_load_embedding_file_reorders_rows(tmp_path):
    matrix = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "emb.npy", matrix)
    (tmp_path / "ids.txt").write_text("a\nb\nc\nd\n")
    rows = load_embedding_file(tmp_path / "emb.npy", tmp_path / "ids.txt", ["c", "a"])
    np.testing.assert_array_equal(rows, matrix[[2, 0]])


def test_load_embedding_file_errors(tmp_path):
    np.save(tmp_path / "emb.npy", np.zeros((3, 2), np.float32))
    (tmp_path / "ids.txt").write_text("a\nb\nc\n")
    with pytest.raises(ValueError, match="no row"):
        load_embedding_file(tmp_path / "emb.npy", tmp_path / "ids.txt", ["a", "z"])
    (tmp_path / "short.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match="3 rows but"):
        load_embedding_file(tmp_path / "emb.npy", tmp_path / "short.txt", ["a"])


def test_pca_whiten_matches_sklearn_fitted_on_train_only():
    rng = np.random.default_rng(0)
    all_embeddings = rng.standard_normal((60, 10)) @ rng.standard_normal((10, 10)) + 3.0
    train = all_embeddings[:40]
    expected = PCA(n_components=4, whiten=True, svd_solver="full").fit(train).transform(all_embeddings)
    result = pca_whiten(train, all_embeddings, 4)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(result[:40].std(axis=0, ddof=1), 1.0, rtol=1e-4)  # whitened on training items


def test_pca_whiten_disabled_and_too_large():
    embeddings = np.random.default_rng(0).standard_normal((20, 5))
    np.testing.assert_array_equal(pca_whiten(embeddings, embeddings, 0), embeddings.astype(np.float32))
    with pytest.raises(ValueError, match="PCA dim 6"):
        pca_whiten(embeddings, embeddings, 6)


def test_packaged_minilm_encodes_offline():
    path, packaged = resolve_text_encoder("all-MiniLM-L6-v2")
    assert packaged and path.endswith("model")
    assert resolve_text_encoder("sentence-t5-base") == ("sentence-t5-base", False)
    texts = ["Toy Story. 1995. Animation.", "Heat. 1995. Crime.", "Toy Story. 1995. Animation."]
    embeddings = encode_texts(texts, "all-MiniLM-L6-v2", batch_size=2, device="cpu", show_progress=False)
    assert embeddings.shape == (3, 384) and embeddings.dtype == np.float32
    np.testing.assert_array_equal(embeddings[0], embeddings[2])
    assert not np.allclose(embeddings[0], embeddings[1])
