"""The SID pipeline end to end (tiny, CPU, fake text encoder) and its configuration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import recbole_llada.sid.build as build_module
from recbole_llada.sid.build import PADDING_CODE, SIDConfig, build_semantic_ids, write_sid_table
from recbole_llada.sid.embed import array_embeddings, file_embeddings
from test_sid_cache import ITEMS, TEXTS, TRAIN, fake_encoder, text_source, tiny_pipeline  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_from_config_reads_prefixed_keys_and_coerces_strings():
    cfg = SIDConfig.from_config({
        "item_embedding": "text", "text_fields": "title, genre", "text_encoder": "sentence-t5-base",
        "sid_tokenizer": "rq_kmeans", "sid_length": "3", "sid_codebook_size": 64, "sid_weight_decay": "1e-4",
        "sid_hidden_sizes": "[64, 32]", "sid_kmeans_init": "false", "sid_epochs": None, "sid_cache_dir": None,
        "seed": 7, "device": torch.device("cpu"), "unrelated_recbole_key": 1,
    })
    assert (cfg.text_fields, cfg.text_encoder, cfg.tokenizer) == (["title", "genre"], "sentence-t5-base", "rq_kmeans")
    assert (cfg.sid_length, cfg.codebook_size, cfg.weight_decay, cfg.hidden_sizes) == (3, 64, 1e-4, (64, 32))
    assert cfg.kmeans_init is False and cfg.epochs is None and cfg.cache_dir is None
    assert (cfg.seed, cfg.device) == (7, "cpu")  # RecBole's seed and device when no sid_ key overrides them
    assert SIDConfig.from_config({"seed": 7, "sid_seed": 9}).seed == 9


@pytest.mark.parametrize("config, message", [
    ({"sid_n_head": 4}, "unknown SID config keys"),
    ({"sid_tokenizer": "vqgan"}, "sid_tokenizer must be one of"),
    ({"sid_length": "four"}, "cannot read 'four'"),
    ({"item_embedding": "file"}, "needs sid_embedding_file"),
])
def test_from_config_rejects_bad_values(config, message):
    with pytest.raises(ValueError, match=message):
        SIDConfig.from_config(config)


def test_epochs_default_depends_on_device():
    cfg = SIDConfig()
    assert build_module.resolved_epochs(cfg, "cpu") == build_module.CPU_EPOCHS
    assert build_module.resolved_epochs(cfg, "cuda") == build_module.GPU_EPOCHS == 10000
    assert build_module.resolved_epochs(SIDConfig(epochs=3), "cuda") == 3


@pytest.mark.parametrize("tokenizer", ["mh_vqvae", "rq_vae", "rq_kmeans", "opq"])
def test_pipeline_gives_distinct_sids_and_fits_on_training_items(tmp_path, fake_encoder, monkeypatch, tokenizer):
    fitted_sizes = []
    original = build_module.make_quantizer

    def recording_make_quantizer(cfg, device):
        quantizer = original(cfg, device)
        fit = quantizer.fit
        quantizer.fit = lambda train: (fitted_sizes.append(len(train)), fit(train))[1]
        return quantizer

    monkeypatch.setattr(build_module, "make_quantizer", recording_make_quantizer)
    result = build_semantic_ids(tiny_pipeline(tmp_path, tokenizer=tokenizer, cache_dir=None), ITEMS, TRAIN,
                                text_source(TEXTS))
    item_sid, report = result.item_sid, result.report
    assert item_sid.shape == (31, 2) and item_sid.dtype == torch.long
    assert (item_sid[0] == PADDING_CODE).all()
    assert ((item_sid[1:] >= 0) & (item_sid[1:] < 8)).all()
    assert len(torch.unique(item_sid[1:], dim=0)) == 30
    assert fitted_sizes == [25]
    # 30 items but only 12 distinct texts: at least 18 collide before make_unique, none after.
    assert report.collisions_before >= 18 and report.collisions_after == 0
    assert report.n_moved == report.collisions_after_rebalance
    assert len(report.code_usage) == 2 and all(1 <= usage <= 8 for usage in report.code_usage)
    assert all(1.0 <= value <= 8.0 for value in report.perplexity)
    assert report.cache_hits == {}
    text = report.format()
    assert "collisions:" in text and "perplexity" in text and "fit" in text
    vae = tokenizer in ("mh_vqvae", "rq_vae")
    assert len(report.check_epochs) == len(report.loss_history) == len(report.collision_history)
    assert bool(report.check_epochs) == vae and ("checks (epoch: loss" in text) == vae
    if vae:
        assert report.check_epochs[-1] == report.epochs and report.best_epoch in report.check_epochs


def test_pipeline_accepts_an_embedding_matrix(tmp_path):
    embeddings = np.random.default_rng(0).standard_normal((30, 6)).astype(np.float32)
    cfg = tiny_pipeline(tmp_path, item_embedding="collaborative", tokenizer="rq_kmeans")
    first = build_semantic_ids(cfg, ITEMS, TRAIN, array_embeddings(embeddings))
    assert not first.report.cache_hits["sids"]
    assert build_semantic_ids(cfg, ITEMS, TRAIN, array_embeddings(embeddings)).report.cache_hits["sids"]
    embeddings[5, 0] += 1.0
    assert not build_semantic_ids(cfg, ITEMS, TRAIN, array_embeddings(embeddings)).report.cache_hits["sids"]


def test_pipeline_reads_an_embedding_file(tmp_path):
    matrix = np.random.default_rng(1).standard_normal((30, 6)).astype(np.float32)
    np.save(tmp_path / "emb.npy", matrix[::-1].copy())
    (tmp_path / "ids.txt").write_text("\n".join(reversed(ITEMS[1:])) + "\n")
    cfg = tiny_pipeline(tmp_path, item_embedding="file", embedding_file=str(tmp_path / "emb.npy"),
                        embedding_ids_file=str(tmp_path / "ids.txt"), tokenizer="rq_kmeans", cache_dir=None)
    from_file = build_semantic_ids(cfg, ITEMS, TRAIN, file_embeddings(tmp_path / "emb.npy", tmp_path / "ids.txt",
                                                                      ITEMS[1:]))
    in_memory = build_semantic_ids(cfg, ITEMS, TRAIN, array_embeddings(matrix))
    assert torch.equal(from_file.item_sid, in_memory.item_sid)


@pytest.mark.parametrize("item_ids, mask, n_rows, message", [
    (ITEMS[1:], TRAIN[1:], 30, "must start with the padding item"),
    (ITEMS, TRAIN[:-1], 30, "train_item_mask has shape"),
    (ITEMS, np.zeros(31, dtype=bool), 30, "no training items"),
    (ITEMS, TRAIN, 29, "aligned with item_ids"),
])
def test_pipeline_input_errors(tmp_path, item_ids, mask, n_rows, message):
    with pytest.raises(ValueError, match=message):
        build_semantic_ids(tiny_pipeline(tmp_path), item_ids, mask, array_embeddings(np.ones((n_rows, 4))))


def test_write_sid_table(tmp_path):
    item_sid = torch.tensor([[PADDING_CODE, PADDING_CODE], [3, 0], [1, 2]])
    write_sid_table(tmp_path / "out" / "sids.tsv", ["[PAD]", "a", "b"], item_sid)
    assert (tmp_path / "out" / "sids.tsv").read_text() == "a\t3 0\nb\t1 2\n"


def test_every_sid_default_is_written_once_in_the_model_yaml():
    from dataclasses import MISSING, fields

    from recbole_llada.resources import load_yaml, model_config
    from recbole_llada.sid.quantizers import KMeansQuantizerConfig, VAEConfig

    model_yaml = load_yaml(model_config("LLaDARec"))
    sid_fields = {spec.name for spec in fields(SIDConfig)}
    assert {SIDConfig.config_key(name) for name in sid_fields} <= set(model_yaml)
    for quantizer_class in (VAEConfig, KMeansQuantizerConfig):
        assert [spec.name for spec in fields(quantizer_class)
                if spec.name in sid_fields and spec.default is not MISSING] == []


def test_count_identical_rows_matches_a_set_of_tuples():
    rng = np.random.default_rng(3)
    for n_rows in (1, 7, 40):
        pool = rng.standard_normal((5, 3)).astype(np.float32)
        vectors = pool[rng.integers(0, 5, n_rows)]  # rows drawn from 5 vectors: many repeats
        vectors[rng.random(n_rows) < 0.3, 1] += 1.0  # and some made distinct again
        assert build_module.count_identical_rows(vectors) == n_rows - len({tuple(row) for row in vectors.tolist()})
    assert build_module.count_identical_rows(np.asfortranarray(rng.standard_normal((6, 2)))) == 0


@pytest.mark.parametrize("collisions, identical, expected", [
    (18, 18, ["repeat another item's embedding"]),  # every collision is one of identical embeddings: data, not tokenizer
    (20, 0, ["tokenizer collapsed"]),  # most distinct embeddings share a SID
    (25, 18, ["repeat another item's embedding", "tokenizer collapsed"]),  # 7 beyond 18: most of the 12 distinct
    (3, 2, []),
])
def test_collision_warnings_tell_identical_embeddings_from_a_collapsed_tokenizer(caplog, collisions, identical,
                                                                                 expected):
    with caplog.at_level("WARNING", logger=build_module.__name__):
        build_module.warn_about_collisions("mh_vqvae", collisions, identical, n_items=30)
    assert [message for message in expected if message in caplog.text] == expected
    assert len(caplog.records) == len(expected)


def test_report_counts_items_with_identical_embeddings(tmp_path):
    distinct = np.random.default_rng(4).standard_normal((12, 6)).astype(np.float32)
    embeddings = distinct[np.arange(30) % 12]  # 30 items, 12 distinct vectors: 18 repeat another's
    report = build_semantic_ids(tiny_pipeline(tmp_path, cache_dir=None), ITEMS, TRAIN,
                                array_embeddings(embeddings)).report
    assert report.identical_embeddings == 18
    assert "identical item embeddings: 18 items repeat another item's (12 distinct)" in report.format()
