"""SASRec item embeddings for item_embedding: collaborative, on the tiny dataset the tests write themselves."""

from __future__ import annotations

import numpy as np
import torch
import pytest
from recbole.config import Config
from recbole.data import create_dataset

from conftest import TINY_DATASET, tiny_config_dict
from recbole_llada.sid.build import SIDConfig
from recbole_llada.sid.collaborative import sasrec_embeddings
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def tiny_config(tiny_data_path, tmp_path):
    values = tiny_config_dict(tiny_data_path, tmp_path, sid_collab_hidden_size=8, sid_collab_epochs=1,
                              sid_cache_dir=str(tmp_path / "cache"))
    return Config(model="SASRec", dataset=TINY_DATASET, config_dict=values)


def sasrec_source(config):
    """(dataset, its SASRec embeddings source), the splits built once as LLaDARecDataset builds them."""
    dataset = create_dataset(config)
    return dataset, sasrec_embeddings(config, SIDConfig.from_config(config), dataset, dataset.build())


def test_embeddings_align_with_the_dataset_and_are_cached(tiny_config, tmp_path):
    dataset, source = sasrec_source(tiny_config)
    assert not list((tmp_path / "cache").glob("sasrec-*.npc"))  # nothing trains before the vectors are asked for
    embeddings = source.compute()
    assert embeddings.shape == (dataset.item_num - 1, 8) and embeddings.dtype == np.float32
    assert len(np.unique(embeddings, axis=0)) == dataset.item_num - 1  # one learned vector per item
    assert len(list((tmp_path / "cache").glob("sasrec-*.npc"))) == 1
    assert not list((tmp_path / "saved").glob("SASRec-*.pth"))  # the temporary checkpoint is removed
    np.testing.assert_array_equal(sasrec_source(tiny_config)[1].compute(), embeddings)  # cache hit


def test_cached_embeddings_of_other_item_ids_are_an_error(tiny_config):
    dataset, sid = create_dataset(tiny_config), SIDConfig.from_config(tiny_config)
    splits = dataset.build()
    sasrec_embeddings(tiny_config, sid, dataset, splits).compute()
    dataset.field2id_token[dataset.iid_field] = dataset.field2id_token[dataset.iid_field][::-1]
    with pytest.raises(ValueError, match="would not line up"):
        sasrec_embeddings(tiny_config, sid, dataset, splits).compute()


def test_sasrec_trains_with_the_baseline_protocol_not_the_callers_recipe(tiny_data_path, tmp_path):
    from recbole_llada.sid.collaborative import sasrec_config

    values = tiny_config_dict(tiny_data_path, tmp_path, train_batch_size=1024, learning_rate=0.003,
                              weight_decay=0.05, stopping_step=3)
    caller = Config(model="SASRec", dataset=TINY_DATASET, config_dict=values)
    sasrec = sasrec_config(caller, hidden_size=8, epochs=5, seed=7)
    assert (sasrec["train_batch_size"], sasrec["learning_rate"], sasrec["stopping_step"]) == (256, 0.001, 10)
    assert sasrec["weight_decay"] == 0.0 and sasrec["epochs"] == 5 and sasrec["hidden_size"] == 8
    assert caller["train_batch_size"] == 1024 and caller["learning_rate"] == 0.003  # the caller's is untouched


def test_sasrec_seed_is_the_sid_seed_so_model_seeds_share_one_embedding(tiny_data_path, tmp_path):
    cache = tmp_path / "cache"
    embeddings = []
    for run_seed in (1, 2):
        values = tiny_config_dict(tiny_data_path, tmp_path, seed=run_seed, sid_seed=5, sid_collab_hidden_size=8,
                                  sid_collab_epochs=1, sid_cache_dir=str(cache))
        embeddings.append(sasrec_source(Config(model="SASRec", dataset=TINY_DATASET, config_dict=values))[1].compute())
    assert len(list(cache.glob("sasrec-*.npc"))) == 1  # the second run seed hit the first one's cache
    np.testing.assert_array_equal(embeddings[0], embeddings[1])
    values = tiny_config_dict(tiny_data_path, tmp_path, seed=1, sid_seed=6, sid_collab_hidden_size=8,
                              sid_collab_epochs=1, sid_cache_dir=str(cache))
    other = sasrec_source(Config(model="SASRec", dataset=TINY_DATASET, config_dict=values))[1].compute()
    assert len(list(cache.glob("sasrec-*.npc"))) == 2 and not np.array_equal(other, embeddings[0])


def test_cooccurrence_embeddings_equal_a_dense_svd():
    from recbole_llada.sid.collaborative import cooccurrence_embeddings

    rng = np.random.default_rng(0)
    n_items, dim = 12, 3
    previous = rng.integers(0, n_items, size=200)
    following = rng.integers(1, n_items, size=200)
    vectors = cooccurrence_embeddings(previous, following, n_items, dim, seed=0)

    dense = np.zeros((n_items, n_items))
    for a, b in zip(previous, following):
        if a > 0 and b > 0:
            dense[a, b] += 1
            dense[b, a] += 1
    dense = np.log1p(dense)
    left, singular, _ = np.linalg.svd(dense)
    expected = left[:, :dim] * np.sqrt(singular[:dim])
    expected *= np.sign(expected[np.abs(expected).argmax(axis=0), np.arange(dim)])
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    np.testing.assert_array_equal(vectors[0], 0)  # padding never co-occurs


def test_fused_sources_weigh_the_same_whatever_their_scale():
    from recbole_llada.sid.embed import fuse_embeddings

    rng = np.random.default_rng(1)
    wide, narrow = 100 * rng.normal(size=(50, 20)), 0.01 * rng.normal(size=(50, 4))
    train = np.ones(50, dtype=bool)
    train[40:] = False
    fused = fuse_embeddings([wide, narrow], train)
    assert fused.shape == (50, 24)
    for part in (fused[train, :20], fused[train, 20:]):
        np.testing.assert_allclose(part.mean(axis=0), 0, atol=1e-5)
        assert abs(((part - part.mean(axis=0)) ** 2).sum(axis=1).mean() - 1) < 1e-4
    with pytest.raises(ValueError, match="constant"):
        fuse_embeddings([wide, np.ones((50, 3))], train)


def test_file_plus_cooccurrence_sids_are_unique_and_keyed_apart(tmp_path):
    from recbole_llada.data.dataset import LLaDARecDataset
    from conftest import write_tiny_dataset

    write_tiny_dataset(tmp_path / "data")
    rng = np.random.default_rng(0)
    np.save(tmp_path / "vectors.npy", rng.normal(size=(30, 16)).astype(np.float32))
    (tmp_path / "ids.txt").write_text("\n".join(f"i{i}" for i in range(1, 31)) + "\n")
    common = dict(sid_embedding_file=str(tmp_path / "vectors.npy"), sid_embedding_ids_file=str(tmp_path / "ids.txt"),
                  sid_pca_dim=8, sid_length=2, sid_codebook_size=8, sid_code_dim=4, sid_hidden_sizes=[16],
                  sid_epochs=20, sid_check_every=10, sid_cache_dir=str(tmp_path / "cache"), sid_cooc_dim=4,
                  sid_collab_source="cooccurrence")
    sids = {}
    for source in ("file", "file+collaborative"):
        values = tiny_config_dict(tmp_path / "data", tmp_path, item_embedding=source, **common)
        config = Config(model="LLaDARec", dataset=TINY_DATASET, config_dict=values)
        dataset = LLaDARecDataset(config)
        dataset.build()
        codes = dataset.item_sid[1:]
        assert len(torch.unique(codes, dim=0)) == len(codes)
        sids[source] = codes
    assert len(list((tmp_path / "cache").glob("sids-*.npc"))) == 2  # the fused build has its own cache entry
