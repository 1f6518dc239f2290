"""SASRec item embeddings for item_embedding: collaborative, on the tiny dataset the tests write themselves."""

from __future__ import annotations

import numpy as np
import pytest
from recbole.config import Config
from recbole.data import create_dataset

from conftest import TINY_DATASET, tiny_config_dict
from recbole_llada.sid.collaborative import train_collaborative_embeddings
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def tiny_config(tiny_data_path, tmp_path):
    values = tiny_config_dict(tiny_data_path, tmp_path, sid_collab_hidden_size=8, sid_collab_epochs=1,
                              sid_cache_dir=str(tmp_path / "cache"))
    return Config(model="SASRec", dataset=TINY_DATASET, config_dict=values)


def test_embeddings_align_with_the_dataset_and_are_cached(tiny_config, tmp_path):
    dataset = create_dataset(tiny_config)
    embeddings = train_collaborative_embeddings(tiny_config, dataset)
    assert embeddings.shape == (dataset.item_num, 8) and embeddings.dtype == np.float32
    assert len(np.unique(embeddings[1:], axis=0)) == dataset.item_num - 1  # one learned vector per item
    assert len(list((tmp_path / "cache").glob("sasrec-*.npc"))) == 1
    assert not list((tmp_path / "saved").glob("SASRec-*.pth"))  # the temporary checkpoint is removed
    np.testing.assert_array_equal(train_collaborative_embeddings(tiny_config, dataset), embeddings)  # cache hit


def test_misaligned_dataset_is_an_error(tiny_config):
    dataset = create_dataset(tiny_config)
    dataset.field2id_token[dataset.iid_field] = dataset.field2id_token[dataset.iid_field][::-1]
    with pytest.raises(ValueError, match="would not line up"):
        train_collaborative_embeddings(tiny_config, dataset, cache_dir="")


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
        embeddings.append(train_collaborative_embeddings(Config(model="SASRec", dataset=TINY_DATASET,
                                                                config_dict=values)))
    assert len(list(cache.glob("sasrec-*.npc"))) == 1  # the second run seed hit the first one's cache
    np.testing.assert_array_equal(embeddings[0], embeddings[1])
    values = tiny_config_dict(tiny_data_path, tmp_path, seed=1, sid_seed=6, sid_collab_hidden_size=8,
                              sid_collab_epochs=1, sid_cache_dir=str(cache))
    other = train_collaborative_embeddings(Config(model="SASRec", dataset=TINY_DATASET, config_dict=values))
    assert len(list(cache.glob("sasrec-*.npc"))) == 2 and not np.array_equal(other, embeddings[0])
