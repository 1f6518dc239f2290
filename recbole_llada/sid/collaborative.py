"""Collaborative item embeddings for datasets without item text: RecBole's SASRec trained on the training split, or
an SVD of the training split's item transitions; both as ``ItemEmbeddings`` sources.

The only RecBole-dependent part of the SID pipeline. SASRec runs on a copy of the caller's RecBole config with
the model keys replaced by SASRec's own defaults (read from the installed RecBole) and the optimisation keys by the
baselines' protocol, so the dataset, its filtering and split are the caller's while the model and its training are
our plain SASRec baseline's. The item embedding table (row = RecBole internal item id, row 0 = padding) is
returned and, when a cache folder is configured, cached under a key of the dataset files, the dataset/training
arguments and the SASRec settings.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import random
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from recbole_llada.resources import load_yaml, overall_config
from recbole_llada.sid.build import SIDConfig
from recbole_llada.sid.cache import ArrayCache, fingerprint
from recbole_llada.sid.embed import ItemEmbeddings

logger = logging.getLogger(__name__)

_NO_NEGATIVES = {"distribution": "none", "sample_num": "none", "alpha": "none", "dynamic": False, "candidate_num": 0}


# Optimisation keys SASRec takes from the baselines' protocol (properties/overall.yaml, then RecBole's defaults)
# rather than from the caller's config, which holds the calling model's recipe (LLaDARec: batch 1024, lr 3e-3).
BASELINE_TRAINING_KEYS = ("learner", "learning_rate", "weight_decay", "train_batch_size", "stopping_step",
                          "clip_grad_norm", "eval_step")


def sasrec_config(config: Any, hidden_size: int, epochs: int, seed: int) -> Any:
    """A copy of the RecBole ``Config`` that trains SASRec with CE loss, as our SASRec baseline trains; the
    original is left untouched. ``seed`` is the SID seed (``sid_seed``), not the run's: the embeddings belong to
    the tokenizer, so runs that differ only in their model seed share one SASRec and one set of SIDs."""
    import recbole
    from recbole.utils import InputType

    recbole_properties = Path(recbole.__file__).parent / "properties"
    training = load_yaml(recbole_properties / "overall.yaml")
    training.update(load_yaml(overall_config()))
    values = dict(config.final_config_dict)
    values.update({key: training.get(key) for key in BASELINE_TRAINING_KEYS})
    values.update(load_yaml(recbole_properties / "model" / "SASRec.yaml"))
    # What Config derives from loss_type CE; SASRec's yaml sets CE and we train without negatives.
    values.update(model="SASRec", MODEL_INPUT_TYPE=InputType.POINTWISE, hidden_size=hidden_size, epochs=epochs,
                  seed=seed, train_neg_sample_args=dict(_NO_NEGATIVES), save_dataset=False, save_dataloaders=False)
    copied = copy.copy(config)
    copied.final_config_dict = values
    copied.model = "SASRec"
    return copied


def _dataset_files_fingerprint(config: Any) -> str:
    """Hash of the dataset's atomic files, so editing the data invalidates cached embeddings."""
    folder = Path(config["data_path"])
    digest = hashlib.sha256()
    for path in sorted(folder.glob(f"{config['dataset']}.*")):
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _training_key(config: Any) -> dict[str, str]:
    from recbole.utils.argument_list import dataset_arguments, evaluation_arguments, training_arguments

    names = {*dataset_arguments, *training_arguments, *evaluation_arguments, "dataset", "seed", "reproducibility",
             "n_layers", "n_heads", "hidden_size", "inner_size", "hidden_dropout_prob", "attn_dropout_prob",
             "hidden_act", "layer_norm_eps", "initializer_range", "loss_type"}
    return {name: repr(config[name]) for name in sorted(names)}


class _PreservedRandomState:
    """RecBole's ``init_seed`` reseeds the global generators; keep the caller's random streams as they were."""

    def __enter__(self) -> None:
        self.states = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
                       torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)

    def __exit__(self, *exc_info: object) -> None:
        python_state, numpy_state, torch_state, cuda_states = self.states
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


def sasrec_embeddings(config: Any, sid: SIDConfig, dataset: Any, splits: Sequence[Any]) -> ItemEmbeddings:
    """SASRec item embeddings as a source of item vectors, trained (or read from the cache) only when the SIDs are
    built.

    ``config`` is the run's RecBole ``Config``, ``sid`` its SID settings (``sid_collab_*``, ``sid_seed``,
    ``sid_cache_dir``), ``dataset`` the run's RecBole dataset and ``splits`` its (train, valid, test) splits, on which
    SASRec trains as they are: the data is loaded once per run. The best validation checkpoint is used (RecBole's
    early stopping on ``valid_metric``).
    """
    model_config = sasrec_config(config, sid.collab_hidden_size, sid.collab_epochs, sid.seed)
    key = {"model": "SASRec", "files": _dataset_files_fingerprint(model_config),
           "arguments": fingerprint(_training_key(model_config))}
    item_ids = list(dataset.field2id_token[dataset.iid_field])

    def train() -> dict[str, np.ndarray]:
        from recbole.data.utils import create_samplers, get_dataloader
        from recbole.model.sequential_recommender import SASRec
        from recbole.trainer import Trainer
        from recbole.utils import init_seed

        with _PreservedRandomState():
            init_seed(model_config["seed"], model_config["reproducibility"])
            # What RecBole's data_preparation does after building the splits, which this run already has.
            train_sampler, valid_sampler, _ = create_samplers(model_config, dataset, splits)
            train_data = get_dataloader(model_config, "train")(model_config, splits[0], train_sampler,
                                                                shuffle=model_config["shuffle"])
            valid_data = get_dataloader(model_config, "valid")(model_config, splits[1], valid_sampler, shuffle=False)
            init_seed(model_config["seed"], model_config["reproducibility"])
            model = SASRec(model_config, train_data._dataset).to(model_config["device"])
            trainer = Trainer(model_config, model)
            trainer.fit(train_data, valid_data, saved=True, show_progress=model_config["show_progress"])
            checkpoint = Path(trainer.saved_model_file)
            # RecBole wrote this file itself a moment ago; it holds a pickled Config, hence weights_only=False.
            model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"])
            checkpoint.unlink(missing_ok=True)
        embeddings = model.item_embedding.weight.detach().cpu().numpy().astype(np.float32)
        return {"embeddings": embeddings, "item_ids": np.array(item_ids)}

    def compute() -> np.ndarray:
        if sid.cache_dir:
            arrays, hit = ArrayCache(sid.cache_dir).get_or_build("sasrec", key, train)
            logger.info("SASRec item embeddings: cache %s", "hit" if hit else "miss")
        else:
            arrays = train()
        _check_alignment(arrays["item_ids"].tolist(), item_ids)
        return arrays["embeddings"][1:]

    return ItemEmbeddings(key, compute)


def _check_alignment(item_ids: list[str], expected: list[str]) -> None:
    if list(item_ids) != list(expected):
        raise ValueError("the cached SASRec embeddings map item ids differently from this dataset; the embedding "
                         "rows would not line up")


def cooccurrence_source(previous_items: np.ndarray, next_items: np.ndarray, n_items: int, dim: int,
                        seed: int) -> ItemEmbeddings:
    """``cooccurrence_embeddings`` as a source of item vectors (rows of the real items), keyed by the pairs."""
    key = {"source": "cooccurrence", "pairs": fingerprint([previous_items, next_items]), "n_items": n_items,
           "dim": dim, "seed": seed}
    return ItemEmbeddings(key, lambda: cooccurrence_embeddings(previous_items, next_items, n_items, dim, seed)[1:])


def cooccurrence_embeddings(previous_items: np.ndarray, next_items: np.ndarray, n_items: int, dim: int,
                            seed: int) -> np.ndarray:
    """Item vectors ``float32 [n_items, dim]`` from a truncated SVD of the item transition graph.

    ``previous_items[i] -> next_items[i]`` are the consecutive pairs of the training split (RecBole's training rows:
    the last history item and the target). The matrix counts each pair in both directions and is log-damped
    (log(1 + count)), so a handful of heavy pairs does not own the spectrum; rows are U * sqrt(S) of its top
    ``dim`` singular triplets (largest first, signs fixed). Items without a training pair, and the padding row 0,
    get zero vectors. ANR-DiffRec (arXiv 2608.23400) fuses such an SVD into text embeddings before tokenization.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import svds

    if not 0 < dim < n_items - 1:
        raise ValueError(f"sid_cooc_dim must be in 1..{n_items - 2} for {n_items} items, got {dim}")
    keep = (previous_items > 0) & (next_items > 0)
    rows = np.concatenate([previous_items[keep], next_items[keep]])
    cols = np.concatenate([next_items[keep], previous_items[keep]])
    counts = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_items, n_items)).tocsr()
    counts.sum_duplicates()
    counts.data = np.log1p(counts.data)
    start = np.random.default_rng(seed).random(n_items)
    left, singular, _ = svds(counts, k=dim, v0=start)
    order = np.argsort(singular)[::-1]
    vectors = left[:, order] * np.sqrt(singular[order])
    largest = np.abs(vectors).argmax(axis=0)
    vectors *= np.sign(vectors[largest, np.arange(dim)])
    vectors[counts.getnnz(axis=1) == 0] = 0.0  # exactly, not SVD round-off
    return vectors.astype(np.float32)
