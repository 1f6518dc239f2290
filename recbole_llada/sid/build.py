"""The SID pipeline: item embeddings -> PCA whitening -> quantizer -> unique SIDs, cached, with a report.

RecBole-free: the dataset adapter passes the item ids in RecBole's internal order, the training-item mask and
either the item texts or an embedding matrix, and gets back one row of M codes per internal item id.

Config keys: every ``SIDConfig`` field is the config key ``sid_<field>`` (``item_embedding``, ``text_fields`` and
``text_encoder`` keep their names); their defaults and meanings are written once, in
properties/model/LLaDARec.yaml. A key present with value null means "default" (except ``sid_cache_dir``, where it
turns caching off); ``sid_seed``, ``sid_device`` and ``sid_show_progress`` fall back to RecBole's ``seed``,
``device`` and ``show_progress``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from recbole_llada.devices import default_device
from recbole_llada.resources import load_yaml, model_config, overall_config
from recbole_llada.sid.cache import ArrayCache, fingerprint
from recbole_llada.sid.embed import ItemEmbeddings, pca_whiten
from recbole_llada.sid.quantizers import (KMeansQuantizerConfig, MultiHeadVQVAEQuantizer, OPQQuantizer, Quantizer,
                                          ResidualKMeansQuantizer, ResidualVQVAEQuantizer, VAEConfig,
                                          count_collisions)
from recbole_llada.sid.unique import make_unique

logger = logging.getLogger(__name__)

PAD_TOKEN = "[PAD]"
PADDING_CODE = -1  # row 0 of item_sid: never a valid code, so misuse fails loudly instead of aliasing code 0
PIPELINE_VERSION = 2  # bump when a code change alters results or the cached report's fields (2: sid_length)
GPU_EPOCHS = 10000  # the official setting
CPU_EPOCHS = 200  # keeps the offline default on ml-100k under a minute on 2 CPU cores
EMBEDDING_SOURCES = ("text", "file", "collaborative", "text+collaborative", "file+collaborative")
COLLABORATIVE_SOURCES = ("sasrec", "cooccurrence", "sasrec+cooccurrence")
TOKENIZERS = ("mh_vqvae", "rq_vae", "rq_kmeans", "opq")
_UNPREFIXED = {"item_embedding": "item_embedding", "text_fields": "text_fields", "text_encoder": "text_encoder",
               "sid_length": "sid_length"}
_FALLBACK_KEYS = {"seed": "seed", "device": "device", "show_progress": "show_progress"}
_MODEL_DEFAULTS = load_yaml(model_config("LLaDARec"))
_PROTOCOL_DEFAULTS = load_yaml(overall_config())


@dataclass
class SIDConfig:
    """Everything that shapes the SIDs. Each field's default is its key's value in the model's YAML (the one place
    defaults are written), read at import; the fallbacks to RecBole's own keys come from the protocol's YAML."""

    item_embedding: str = _MODEL_DEFAULTS["item_embedding"]
    text_fields: list[str] | None = _MODEL_DEFAULTS["text_fields"]
    text_encoder: str = _MODEL_DEFAULTS["text_encoder"]
    encode_batch_size: int = _MODEL_DEFAULTS["sid_encode_batch_size"]
    embedding_file: str | None = _MODEL_DEFAULTS["sid_embedding_file"]
    embedding_ids_file: str | None = _MODEL_DEFAULTS["sid_embedding_ids_file"]
    pca_dim: int = _MODEL_DEFAULTS["sid_pca_dim"]
    tokenizer: str = _MODEL_DEFAULTS["sid_tokenizer"]
    sid_length: int = _MODEL_DEFAULTS["sid_length"]
    codebook_size: int = _MODEL_DEFAULTS["sid_codebook_size"]
    code_dim: int = _MODEL_DEFAULTS["sid_code_dim"]
    hidden_sizes: tuple[int, ...] = tuple(_MODEL_DEFAULTS["sid_hidden_sizes"])
    epochs: int | None = _MODEL_DEFAULTS["sid_epochs"]  # None: by device (resolved_epochs)
    lr: float = _MODEL_DEFAULTS["sid_lr"]
    weight_decay: float = _MODEL_DEFAULTS["sid_weight_decay"]
    batch_size: int = _MODEL_DEFAULTS["sid_batch_size"]
    beta: float = _MODEL_DEFAULTS["sid_beta"]
    kmeans_init: bool = _MODEL_DEFAULTS["sid_kmeans_init"]
    kmeans_iters: int = _MODEL_DEFAULTS["sid_kmeans_iters"]
    sinkhorn_epsilon: float = _MODEL_DEFAULTS["sid_sinkhorn_epsilon"]
    sinkhorn_iters: int = _MODEL_DEFAULTS["sid_sinkhorn_iters"]
    sinkhorn_rounds: int = _MODEL_DEFAULTS["sid_sinkhorn_rounds"]
    check_every: int = _MODEL_DEFAULTS["sid_check_every"]
    checkpoint_rule: str = _MODEL_DEFAULTS["sid_checkpoint_rule"]
    opq_iters: int = _MODEL_DEFAULTS["sid_opq_iters"]
    collab_source: str = _MODEL_DEFAULTS["sid_collab_source"]
    collab_epochs: int = _MODEL_DEFAULTS["sid_collab_epochs"]
    collab_hidden_size: int = _MODEL_DEFAULTS["sid_collab_hidden_size"]
    cooc_dim: int = _MODEL_DEFAULTS["sid_cooc_dim"]
    seed: int = _PROTOCOL_DEFAULTS["seed"]  # sid_seed: ~ in the model's YAML, i.e. RecBole's seed
    cache_dir: str | None = _MODEL_DEFAULTS["sid_cache_dir"]
    device: str | None = None  # None: RecBole's device, else cuda when available (default_device)
    show_progress: bool = _PROTOCOL_DEFAULTS["show_progress"]  # sid_show_progress: ~, i.e. RecBole's

    def __post_init__(self) -> None:
        if self.item_embedding not in EMBEDDING_SOURCES:
            raise ValueError(f"item_embedding must be one of {EMBEDDING_SOURCES}, got {self.item_embedding!r}")
        if self.collab_source not in COLLABORATIVE_SOURCES:
            raise ValueError(f"sid_collab_source must be one of {COLLABORATIVE_SOURCES}, got {self.collab_source!r}")
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"sid_tokenizer must be one of {TOKENIZERS}, got {self.tokenizer!r}")
        if self.content_source == "file" and not (self.embedding_file and self.embedding_ids_file):
            raise ValueError("item_embedding 'file' needs sid_embedding_file and sid_embedding_ids_file")
        self.hidden_sizes = tuple(int(size) for size in self.hidden_sizes)

    @property
    def content_source(self) -> str | None:
        """"text" or "file" when item content feeds the SIDs, None for interactions alone."""
        source = self.item_embedding.split("+")[0]
        return None if source == "collaborative" else source

    @property
    def uses_interactions(self) -> bool:
        return self.item_embedding.endswith("collaborative")

    @staticmethod
    def config_key(field_name: str) -> str:
        return _UNPREFIXED.get(field_name, f"sid_{field_name}")

    @classmethod
    def from_config(cls, config: Any) -> "SIDConfig":
        """Read the keys above from a mapping or a RecBole ``Config``; unknown ``sid_*`` keys are an error."""
        values: Mapping[str, Any] = getattr(config, "final_config_dict", config)
        known = {cls.config_key(spec.name): spec for spec in fields(cls)}
        unknown = sorted(key for key in values if str(key).startswith("sid_") and key not in known)
        if unknown:
            raise ValueError(f"unknown SID config keys {unknown}; known keys: {sorted(known)}")
        kwargs: dict[str, Any] = {}
        for key, spec in known.items():
            value = values.get(key)
            if value is None and spec.name in _FALLBACK_KEYS:
                value = values.get(_FALLBACK_KEYS[spec.name])
            if value is not None:
                kwargs[spec.name] = _coerce(key, value, str(spec.type))
            elif spec.name == "cache_dir" and key in values:
                kwargs[spec.name] = None
        return cls(**kwargs)


def _coerce(key: str, value: Any, annotation: str) -> Any:
    """Convert a YAML/command-line value to the field's type (e.g. "1e-4" -> 1e-4, "[512,256]" -> (512, 256))."""
    try:
        if annotation.startswith(("tuple", "list")):
            if isinstance(value, str):
                value = [part for part in value.strip("[]()").replace(",", " ").split() if part]
            items = [str(item).strip("'\"") for item in value]
            return tuple(int(item) for item in items) if annotation.startswith("tuple") else items
        if annotation.startswith("bool"):
            if isinstance(value, str):
                if value.lower() not in ("true", "false"):
                    raise ValueError(value)
                return value.lower() == "true"
            return bool(value)
        if annotation.startswith("int"):
            return int(value)
        if annotation.startswith("float"):
            return float(value)
        return str(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"config key {key}: cannot read {value!r} as {annotation}") from error


def resolved_epochs(cfg: SIDConfig, device: str) -> int:
    """``cfg.epochs``, or the device's default when it is None."""
    if cfg.epochs is not None:
        return cfg.epochs
    return GPU_EPOCHS if torch.device(device).type == "cuda" else CPU_EPOCHS


def quantizer_config(cfg: SIDConfig, device: str) -> VAEConfig | KMeansQuantizerConfig:
    """The hyperparameters of the quantizer named by ``cfg.tokenizer``, taken from ``cfg``."""
    target = VAEConfig if cfg.tokenizer in ("mh_vqvae", "rq_vae") else KMeansQuantizerConfig
    return target(**quantizer_hyperparameters(cfg, device), device=device)


def make_quantizer(cfg: SIDConfig, device: str) -> Quantizer:
    """The quantizer named by ``cfg.tokenizer``, configured from ``cfg``."""
    hyperparameters = quantizer_config(cfg, device)
    if cfg.tokenizer in ("mh_vqvae", "rq_vae"):
        quantizer_class = MultiHeadVQVAEQuantizer if cfg.tokenizer == "mh_vqvae" else ResidualVQVAEQuantizer
        return quantizer_class(hyperparameters, show_progress=cfg.show_progress)
    return (ResidualKMeansQuantizer if cfg.tokenizer == "rq_kmeans" else OPQQuantizer)(hyperparameters)


def quantizer_hyperparameters(cfg: SIDConfig, device: str) -> dict[str, Any]:
    """The fields of ``cfg`` the chosen quantizer reads (so the cache key ignores the others)."""
    target = VAEConfig if cfg.tokenizer in ("mh_vqvae", "rq_vae") else KMeansQuantizerConfig
    names = {spec.name for spec in fields(target)} & {spec.name for spec in fields(SIDConfig)} - {"device"}
    values = {name: getattr(cfg, name) for name in sorted(names)}
    if "epochs" in values:
        values["epochs"] = resolved_epochs(cfg, device)
    return values


@dataclass
class SIDReport:
    """What building the SIDs did. On a cache hit the numbers are the original build's, plus ``cache_load``."""

    n_items: int
    n_train_items: int
    embedding_dim: int  # quantizer input dim, after PCA
    tokenizer: str
    sid_length: int
    codebook_size: int
    collisions_before: int  # N - distinct SIDs straight out of the quantizer
    collisions_after_rebalance: int  # after the official Sinkhorn pass (= before, for k-means tokenizers)
    collisions_after: int  # after make_unique: always 0
    n_moved: int
    code_usage: list[int]  # distinct codes used per head
    perplexity: list[float]  # exp(entropy) of each head's code distribution (max K)
    reconstruction_error: float  # mean squared error per embedding dimension, all items
    epochs: int = 0
    best_epoch: int = 0
    check_epochs: list[int] = field(default_factory=list)  # the tokenizer's checks (VAE tokenizers only)
    loss_history: list[float] = field(default_factory=list)  # training loss at each check
    collision_history: list[int] = field(default_factory=list)  # training-item collisions at each check
    stage_seconds: dict[str, float] = field(default_factory=dict)
    cache_hits: dict[str, bool] = field(default_factory=dict)
    # N - distinct item embeddings: items no tokenizer can tell apart (e.g. identical text); 0 in reports cached
    # before it was counted
    identical_embeddings: int = 0

    def format(self) -> str:
        lines = [
            f"Semantic IDs: {self.n_items} items ({self.n_train_items} in training), tokenizer {self.tokenizer}, "
            f"M={self.sid_length} tokens x K={self.codebook_size} codes, input dim {self.embedding_dim}",
            f"collisions: {self.collisions_before} from the quantizer -> {self.collisions_after_rebalance} after "
            f"Sinkhorn re-assignment -> {self.collisions_after} after make_unique ({self.n_moved} items moved)",
            f"reconstruction MSE: {self.reconstruction_error:.4f}"
            + (f" (checkpoint of epoch {self.best_epoch} of {self.epochs})" if self.epochs else ""),
        ]
        if self.identical_embeddings:
            lines.append(f"identical item embeddings: {self.identical_embeddings} items repeat another item's "
                         f"({self.n_items - self.identical_embeddings} distinct), which no tokenizer can separate")
        if self.check_epochs:
            lines.append(self._checks_line())
        lines += ["", f"{'token':>5} | {'distinct codes':>14} | {'perplexity':>10}"]
        for token, (usage, perplexity) in enumerate(zip(self.code_usage, self.perplexity), start=1):
            lines.append(f"{token:>5} | {usage:>14} | {perplexity:>10.1f}")
        lines += ["", f"{'stage':<12} | {'seconds':>8}"]
        lines += [f"{stage:<12} | {seconds:>8.2f}" for stage, seconds in self.stage_seconds.items()]
        hits = ", ".join(f"{name} {'hit' if hit else 'miss'}" for name, hit in self.cache_hits.items())
        lines.append(f"cache: {hits or 'off'}")
        return "\n".join(lines)

    def _checks_line(self, shown: int = 3) -> str:
        """The first and last ``shown`` checks, enough to see whether training still moved at the end."""
        checks = [f"{epoch}: {loss:.4f} / {collisions}"
                  for epoch, loss, collisions in zip(self.check_epochs, self.loss_history, self.collision_history)]
        if len(checks) > 2 * shown:
            checks = [*checks[:shown], "...", *checks[-shown:]]
        return "checks (epoch: loss / training-item collisions): " + ", ".join(checks)


@dataclass
class SIDResult:
    item_sid: Tensor  # LongTensor [n_items, M]; row 0 (padding) is PADDING_CODE (-1) in every head
    report: SIDReport


def resolved_device(cfg: SIDConfig) -> str:
    """``cfg.device`` (``sid_device``, else RecBole's ``device``), or CUDA when available."""
    return cfg.device or default_device()


def build_semantic_ids(cfg: SIDConfig, item_ids: list[str], train_item_mask: np.ndarray,
                       embeddings: ItemEmbeddings) -> SIDResult:
    """Distinct SIDs for every item, the quantizer fitted on training items only.

    ``item_ids`` is RecBole's internal order with ``item_ids[0] == "[PAD]"``; ``train_item_mask`` (same length)
    marks items seen in training; ``embeddings`` is the run's one source of item vectors, rows aligned with
    ``item_ids[1:]``. Its vectors are computed (the embed stage of the report) only when the SIDs are not cached.
    """
    start = time.perf_counter()
    if not item_ids or item_ids[0] != PAD_TOKEN:
        raise ValueError(f"item_ids must start with the padding item {PAD_TOKEN!r} (RecBole's internal order)")
    train_item_mask = np.asarray(train_item_mask, dtype=bool)
    if train_item_mask.shape != (len(item_ids),):
        raise ValueError(f"train_item_mask has shape {train_item_mask.shape}, expected ({len(item_ids)},)")
    items, train = list(item_ids[1:]), train_item_mask[1:]
    if not train.any():
        raise ValueError("no training items: the quantizer is fitted on items seen in training")
    device = resolved_device(cfg)
    cache = ArrayCache(cfg.cache_dir) if cfg.cache_dir else None
    stage_seconds: dict[str, float] = {}
    cache_hits: dict[str, bool] = {}

    def build_codes() -> dict[str, np.ndarray]:
        tick = time.perf_counter()
        if cache is None or not embeddings.cache_vectors:
            item_vectors = embeddings.compute()
        else:
            arrays, cache_hits["embeddings"] = cache.get_or_build("embeddings", embeddings.key,
                                                                  lambda: {"embeddings": embeddings.compute()})
            item_vectors = arrays["embeddings"]
        if item_vectors.ndim != 2 or item_vectors.shape[0] != len(items):
            raise ValueError(f"item vectors must be [n_items={len(items)}, dim] aligned with item_ids[1:], "
                             f"got {item_vectors.shape}")
        stage_seconds["embed"] = time.perf_counter() - tick
        codes, report = _quantize(cfg, item_vectors, train, device, stage_seconds)
        return {"codes": codes, "report": np.array(json.dumps(dataclasses.asdict(report)))}

    sid_key_parts = {
        "version": PIPELINE_VERSION,
        "embeddings": fingerprint(embeddings.key),
        "train_items": fingerprint(np.packbits(train)),
        "pca_dim": cfg.pca_dim,
        "tokenizer": cfg.tokenizer,
        "hyperparameters": quantizer_hyperparameters(cfg, device),
    }
    if cache is None:
        arrays, hit = build_codes(), False
    else:
        arrays, hit = cache.get_or_build("sids", sid_key_parts, build_codes)
    report = SIDReport(**json.loads(str(arrays["report"])))
    report.stage_seconds["cache_load" if hit else "total"] = time.perf_counter() - start
    report.cache_hits = {"sids": hit, **cache_hits} if cache is not None else {}

    item_sid = torch.full((len(item_ids), cfg.sid_length), PADDING_CODE, dtype=torch.long)
    item_sid[1:] = torch.from_numpy(arrays["codes"]).long()
    logger.info("\n%s", report.format())
    return SIDResult(item_sid, report)


def _quantize(cfg: SIDConfig, item_vectors: np.ndarray, train: np.ndarray, device: str,
              stage_seconds: dict[str, float]) -> tuple[np.ndarray, SIDReport]:
    """PCA -> fit -> encode -> Sinkhorn re-assignment -> make_unique, timing each stage."""
    tick = time.perf_counter()
    reduced = torch.from_numpy(pca_whiten(item_vectors[train], item_vectors, cfg.pca_dim))
    stage_seconds["pca"] = time.perf_counter() - tick

    tick = time.perf_counter()
    quantizer = make_quantizer(cfg, device)
    fit_report = quantizer.fit(reduced[torch.from_numpy(train)])
    stage_seconds["fit"] = time.perf_counter() - tick

    tick = time.perf_counter()
    codes = quantizer.encode(reduced)
    collisions_before = count_collisions(codes)
    codes = quantizer.rebalance_collisions(reduced, codes)
    collisions_after_rebalance = count_collisions(codes)
    distances = quantizer.distances(reduced)
    stage_seconds["encode"] = time.perf_counter() - tick

    tick = time.perf_counter()
    identical_embeddings = count_identical_rows(item_vectors)
    warn_about_collisions(cfg.tokenizer, collisions_after_rebalance, identical_embeddings, codes.shape[0])
    unique = make_unique(codes, distances)
    stage_seconds["unique"] = time.perf_counter() - tick

    final = unique.codes
    report = SIDReport(
        n_items=int(final.shape[0]), n_train_items=int(train.sum()), embedding_dim=int(reduced.shape[1]),
        tokenizer=cfg.tokenizer, sid_length=cfg.sid_length, codebook_size=cfg.codebook_size,
        collisions_before=collisions_before, collisions_after_rebalance=collisions_after_rebalance,
        collisions_after=unique.n_colliding_after, n_moved=unique.n_moved,
        code_usage=[int(len(torch.unique(final[:, head]))) for head in range(cfg.sid_length)],
        perplexity=[_perplexity(final[:, head], cfg.codebook_size) for head in range(cfg.sid_length)],
        reconstruction_error=quantizer.reconstruction_error(reduced),
        epochs=fit_report.epochs, best_epoch=fit_report.best_epoch, check_epochs=fit_report.check_epochs,
        loss_history=fit_report.loss_history, collision_history=fit_report.collision_history,
        stage_seconds=dict(stage_seconds), identical_embeddings=identical_embeddings)
    return final.numpy(), report


def count_identical_rows(vectors: np.ndarray) -> int:
    """N - the number of distinct rows (bitwise): the items whose embedding another item already has."""
    rows = np.ascontiguousarray(vectors)
    return len(rows) - len(np.unique(rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()))


def warn_about_collisions(tokenizer: str, collisions: int, identical_embeddings: int, n_items: int) -> None:
    """Warn when many items share a SID before make_unique, telling the data's cause from the tokenizer's.

    Items with identical embeddings (on Amazon data often items whose text is the same, e.g. brand + category only)
    get one code from any tokenizer; make_unique then gives each its own SID, a nearby code combination that says
    nothing about the item. A tokenizer has collapsed when, beyond those, most distinct embeddings share a SID.
    make_unique stays correct either way, but collapsed SIDs carry little and the search slows down sharply
    (observed: a 20-epoch CPU fit on 25,754 items left 39 distinct SIDs).
    """
    distinct = n_items - identical_embeddings
    if identical_embeddings > n_items // 10:
        logger.warning("%d of %d items repeat another item's embedding (%d distinct embeddings): no "
                       "tokenizer can tell them apart, and their SIDs differ only by collision resolution; richer "
                       "item text or collaborative embeddings (item_embedding) would separate them",
                       identical_embeddings, n_items, distinct)
    if collisions - identical_embeddings > distinct // 2:
        logger.warning("the %s tokenizer collapsed: %d of %d items share a semantic ID (%d beyond items with identical "
                       "embeddings); train it longer (sid_epochs) or check the item embeddings", tokenizer, collisions,
                       n_items, collisions - identical_embeddings)


def _perplexity(codes: Tensor, codebook_size: int) -> float:
    probabilities = torch.bincount(codes, minlength=codebook_size).double() / codes.numel()
    probabilities = probabilities[probabilities > 0]
    return float(math.exp(-(probabilities * probabilities.log()).sum()))


def write_sid_table(path: Path | str, item_ids: list[str], item_sid: Tensor) -> None:
    """Write ``item_id<TAB>c1 c2 ... cM`` per item, skipping the padding row."""
    if len(item_ids) != item_sid.shape[0]:
        raise ValueError(f"{len(item_ids)} item ids but {item_sid.shape[0]} SID rows")
    lines = [f"{item}\t{' '.join(str(int(code)) for code in row)}"
             for item, row in zip(item_ids, item_sid.tolist()) if item != PAD_TOKEN]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
