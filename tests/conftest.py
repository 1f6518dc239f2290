"""Shared fixtures: tiny RecBole atomic datasets written by the tests themselves (CI must not need ../shared)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

import recbole_llada  # noqa: F401  (applies compat and registers the plugin)

TINY_DATASET = "tiny"


def write_tiny_dataset(root: Path, name: str = TINY_DATASET, n_users: int = 40, n_items: int = 30,
                       min_len: int = 6, max_len: int = 10, seed: int = 0) -> Path:
    """A learnable toy world: each user walks forward through the item ring (i -> i+1 -> i+2 ...).

    The next item is a deterministic function of the last one, so any working sequential model should
    beat random ranking by a wide margin after a few epochs. Items carry a short text for the SID pipeline.
    """
    rng = random.Random(seed)
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for user in range(1, n_users + 1):
        start = rng.randrange(n_items)
        for step in range(rng.randint(min_len, max_len)):
            item = (start + step) % n_items + 1
            lines.append(f"u{user}\ti{item}\t{step + 1}")
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n")
    item_lines = ["item_id:token\ttitle:token_seq\tgenre:token"]
    for item in range(1, n_items + 1):
        item_lines.append(f"i{item}\tItem number {item} of the ring\tgenre{item % 3}")
    (folder / f"{name}.item").write_text("\n".join(item_lines) + "\n")
    return folder


@pytest.fixture(autouse=True)
def _run_in_tmp_dir(tmp_path, monkeypatch):
    """RecBole writes log/ and log_tensorboard/ into the working directory: keep them out of the repo."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def one_torch_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy 2-core machine the thread hand-offs
    make them many times slower. Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def tiny_data_path(tmp_path: Path) -> Path:
    """Folder holding the ``tiny`` dataset; pass it as RecBole's ``data_path``."""
    write_tiny_dataset(tmp_path / "data")
    return tmp_path / "data"


def tiny_config_dict(data_path: Path, tmp_path: Path, **overrides) -> dict:
    """The paper's protocol on the tiny dataset, small and CPU-only, everything written under tmp_path."""
    config = {
        "data_path": str(data_path),
        "checkpoint_dir": str(tmp_path / "saved"),
        "log_wandb": False,
        "state": "WARNING",
        "device": "cpu",
        "use_gpu": False,
        "seed": 2024,
        "reproducibility": True,
        "show_progress": False,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "eval_args": {"order": "TO", "split": {"LS": "valid_and_test"}, "mode": "full", "group_by": "user"},
        "metrics": ["Recall", "NDCG"],
        "topk": [1, 5, 10],
        "valid_metric": "NDCG@10",
        "MAX_ITEM_LIST_LENGTH": 5,
        "train_neg_sample_args": None,
        "loss_type": "CE",
        "epochs": 1,
        "train_batch_size": 64,
        "eval_batch_size": 64,
        "stopping_step": 10,
        "hidden_size": 8,
        "inner_size": 16,
        "embedding_size": 8,
        "n_layers": 1,
        "n_heads": 1,
        "worker": 0,
    }
    config.update(overrides)
    return config


# A tiny LLaDARec: SIDs from random item vectors (no text encoder needed), one small encoder, few beams.
TINY_LLADA = dict(gen_steps=2, sid_length=2, sid_codebook_size=8, sid_code_dim=4, sid_hidden_sizes=[16],
                  sid_epochs=20, sid_check_every=10, sid_pca_dim=0, item_embedding="file", hidden_size=16,
                  n_layers=1, n_heads=2, mlp_ratio=2, temperature=1.0, num_beams=6, valid_num_beams=3,
                  decode_batch_size=16, train_batch_size=64)


def tiny_llada_config_dict(root: Path, n_items: int = 30, vector_dim: int = 8, **overrides) -> dict:
    """``tiny_config_dict`` plus TINY_LLADA on the tiny dataset of ``n_items`` items, written (with the item
    vectors its SIDs come from) under root; overrides replace any key."""
    write_tiny_dataset(root / "data", n_items=n_items)
    np.save(root / "vectors.npy", np.random.default_rng(0).normal(size=(n_items, vector_dim)).astype(np.float32))
    (root / "ids.txt").write_text("\n".join(f"i{i}" for i in range(1, n_items + 1)) + "\n")
    files = dict(sid_embedding_file=str(root / "vectors.npy"), sid_embedding_ids_file=str(root / "ids.txt"),
                 sid_cache_dir=str(root / "sid_cache"))
    return tiny_config_dict(root / "data", root, **{**TINY_LLADA, **files, **overrides})


def prepare_tiny_llada(config_dict: dict) -> tuple:
    """(config, train, valid, test) of LLaDARec on the tiny dataset, as RecBole's quick start prepares them."""
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    config = Config(model="LLaDARec", dataset=TINY_DATASET, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, create_dataset(config))
    return config, train, valid, test
