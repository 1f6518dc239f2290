"""On-disk SID cache: hits, misses, invalidation, corruption, concurrent builders; and the pipeline's use of it."""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import recbole_llada.sid.embed as embed_module
from recbole_llada.sid.build import SIDConfig, build_semantic_ids
from recbole_llada.sid.cache import ArrayCache, fingerprint


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class CountingBuild:
    def __init__(self, value: float = 1.0):
        self.calls, self.value = 0, value

    def __call__(self) -> dict[str, np.ndarray]:
        self.calls += 1
        return {"a": np.full((3, 2), self.value, np.float32), "b": np.arange(4)}


def test_hit_after_miss_and_new_key_misses(tmp_path):
    cache, build = ArrayCache(tmp_path), CountingBuild()
    first, hit_first = cache.get_or_build("emb", {"x": 1}, build)
    second, hit_second = cache.get_or_build("emb", {"x": 1}, build)
    assert (hit_first, hit_second, build.calls) == (False, True, 1)
    assert all(np.array_equal(first[name], second[name]) for name in ("a", "b"))
    assert cache.get_or_build("emb", {"x": 2}, build)[1] is False and build.calls == 2


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "garbage"])
def test_corrupt_entry_is_rebuilt(tmp_path, damage):
    cache, build = ArrayCache(tmp_path), CountingBuild()
    cache.get_or_build("emb", {"x": 1}, build)
    path = cache.path("emb", fingerprint({"x": 1}))
    blob = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(blob[: len(blob) // 2])
    elif damage == "flip_byte":
        path.write_bytes(blob[:-10] + bytes([blob[-10] ^ 0xFF]) + blob[-9:])
    else:
        path.write_bytes(b"not a cache entry")
    arrays, hit = cache.get_or_build("emb", {"x": 1}, build)
    assert not hit and build.calls == 2
    assert np.array_equal(arrays["a"], np.ones((3, 2), np.float32))
    assert cache.get_or_build("emb", {"x": 1}, build)[1]  # the rebuilt entry is whole again


def test_a_valid_entry_of_other_key_parts_under_this_file_name_is_rebuilt(tmp_path):
    cache = ArrayCache(tmp_path)
    cache.get_or_build("emb", {"x": 1, "sizes": (4, 2)}, CountingBuild(value=1.0))
    other = cache.path("emb", fingerprint({"x": 1, "sizes": (4, 2)}))
    build = CountingBuild(value=2.0)
    other.replace(cache.path("emb", fingerprint({"x": 2})))  # e.g. copied from another machine's cache
    arrays, hit = cache.get_or_build("emb", {"x": 2}, build)
    assert not hit and build.calls == 1 and np.array_equal(arrays["a"], np.full((3, 2), 2.0, np.float32))
    assert cache.get_or_build("emb", {"x": 2}, build)[1]  # the rebuilt entry matches its key parts
    cache.get_or_build("emb", {"x": 1, "sizes": (4, 2)}, build)
    assert cache.get_or_build("emb", {"x": 1, "sizes": (4, 2)}, build)[1]  # tuples read back as lists still match


def test_fingerprint_distinguishes_values_and_types():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert len({fingerprint(value) for value in (1, 1.0, "1", True, [1], np.array([1]), np.array([1.0]))}) == 7


def _slow_builder(root: str, log: str, ready) -> None:
    def build() -> dict[str, np.ndarray]:
        with open(log, "a") as handle:
            handle.write("built\n")
        time.sleep(0.5)  # long enough that the other process arrives while the entry is being built
        return {"a": np.arange(1000, dtype=np.float32)}

    ready.wait()
    arrays, _ = ArrayCache(root).get_or_build("emb", {"x": 1}, build)
    digest = hashlib.sha256(arrays["a"].tobytes()).hexdigest()
    Path(log).with_suffix(f".{multiprocessing.current_process().pid}").write_text(digest)


def test_concurrent_builders_build_once_and_read_the_same(tmp_path):
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    log = tmp_path / "log.txt"
    workers = [context.Process(target=_slow_builder, args=(str(tmp_path / "cache"), str(log), ready))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    ready.set()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert log.read_text() == "built\n"
    digests = {path.read_text() for path in tmp_path.glob("log.[0-9]*")}
    assert digests == {hashlib.sha256(np.arange(1000, dtype=np.float32).tobytes()).hexdigest()}


def fake_encode(texts, model, batch_size, device, show_progress):
    """Deterministic stand-in for the sentence encoder: identical texts, identical vectors."""
    rows = [np.random.default_rng(int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)).standard_normal(8)
            for text in texts]
    fake_encode.calls += 1
    return np.asarray(rows, dtype=np.float32)


@pytest.fixture
def fake_encoder(monkeypatch):
    fake_encode.calls = 0
    monkeypatch.setattr(embed_module, "encode_texts", fake_encode)
    return fake_encode


def tiny_pipeline(tmp_path: Path, **overrides) -> SIDConfig:
    settings = dict(tokenizer="mh_vqvae", sid_length=2, codebook_size=8, code_dim=2, hidden_sizes=(8,), epochs=4,
                    check_every=2, kmeans_iters=5, pca_dim=4, cache_dir=str(tmp_path / "cache"), device="cpu",
                    show_progress=False)
    return SIDConfig(**{**settings, **overrides})


def text_source(texts: dict[str, str]) -> embed_module.ItemEmbeddings:
    """The items' text embeddings (with ``fake_encoder``: no sentence encoder needed)."""
    return embed_module.text_embeddings(ITEMS[1:], texts, "fake-encoder", 16, "cpu", show_progress=False)


ITEMS = ["[PAD]"] + [f"i{index}" for index in range(30)]
TEXTS = {f"i{index}": f"item {index % 12}" for index in range(30)}  # 12 distinct texts: many identical items
TRAIN = np.array([False] + [True] * 25 + [False] * 5)


def test_pipeline_cache_hit_and_invalidation(tmp_path, fake_encoder):
    first = build_semantic_ids(tiny_pipeline(tmp_path), ITEMS, TRAIN, text_source(TEXTS))
    assert first.report.cache_hits == {"sids": False, "embeddings": False} and fake_encoder.calls == 1

    again = build_semantic_ids(tiny_pipeline(tmp_path), ITEMS, TRAIN, text_source(TEXTS))
    assert again.report.cache_hits["sids"] and fake_encoder.calls == 1
    assert torch.equal(again.item_sid, first.item_sid)

    other_epochs = build_semantic_ids(tiny_pipeline(tmp_path, epochs=6), ITEMS, TRAIN, text_source(TEXTS))
    assert other_epochs.report.cache_hits == {"sids": False, "embeddings": True} and fake_encoder.calls == 1

    changed_text = build_semantic_ids(tiny_pipeline(tmp_path), ITEMS, TRAIN, text_source({**TEXTS, "i3": "new text"}))
    assert changed_text.report.cache_hits == {"sids": False, "embeddings": False} and fake_encoder.calls == 2

    other_train = TRAIN.copy()
    other_train[26] = True
    changed_split = build_semantic_ids(tiny_pipeline(tmp_path), ITEMS, other_train, text_source(TEXTS))
    assert changed_split.report.cache_hits == {"sids": False, "embeddings": True}


def test_pipeline_rebuilds_truncated_sid_entry(tmp_path, fake_encoder):
    first = build_semantic_ids(tiny_pipeline(tmp_path), ITEMS, TRAIN, text_source(TEXTS))
    (entry,) = (tmp_path / "cache").glob("sids-*.npc")
    entry.write_bytes(entry.read_bytes()[:100])
    rebuilt = build_semantic_ids(tiny_pipeline(tmp_path), ITEMS, TRAIN, text_source(TEXTS))
    assert not rebuilt.report.cache_hits["sids"] and rebuilt.report.cache_hits["embeddings"]
    assert torch.equal(rebuilt.item_sid, first.item_sid)  # deterministic rebuild
