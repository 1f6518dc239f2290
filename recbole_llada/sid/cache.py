"""On-disk cache of named numpy arrays, keyed by a hash of everything that determines them.

An entry is one file ``<kind>-<key>.npc``: a magic line, the SHA-256 of the payload, then the payload (an
uncompressed ``.npz`` of the arrays plus the JSON of the key's parts). Writes go to a temporary file in the same
folder, are fsynced, then renamed over the entry (``os.replace`` is atomic), so readers see a whole entry or none.
Builders take an exclusive ``filelock.FileLock`` on ``<entry>.lock``: a second process wanting the same entry waits, then loads
what the first wrote instead of building it again. A truncated or otherwise corrupt entry fails its checksum and
is rebuilt, and so is an entry whose stored key parts differ from the ones asked for (e.g. a valid entry of
another configuration copied under this key's file name).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from filelock import FileLock

logger = logging.getLogger(__name__)

_MAGIC = b"recbole-llada-sid-cache v1\n"
_DIGEST_BYTES = 32
_KEY_PARTS = "__key_parts__"


def fingerprint(value: object) -> str:
    """Stable SHA-256 hex digest of JSON-like data, numpy arrays and byte strings (nested freely)."""
    digest = hashlib.sha256()
    _feed(digest, value)
    return digest.hexdigest()


def _feed(digest: "hashlib._Hash", value: object) -> None:
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        digest.update(f"ndarray:{array.dtype.str}:{array.shape}:".encode())
        digest.update(array.tobytes())
    elif isinstance(value, bytes):
        digest.update(b"bytes:%d:" % len(value) + value)
    elif isinstance(value, Mapping):
        digest.update(b"map{")
        for key in sorted(value, key=str):
            _feed(digest, str(key))
            _feed(digest, value[key])
        digest.update(b"}")
    elif isinstance(value, (list, tuple)):
        digest.update(b"list[")
        for element in value:
            _feed(digest, element)
        digest.update(b"]")
    elif isinstance(value, np.generic):
        _feed(digest, value.item())
    elif isinstance(value, Path):
        _feed(digest, str(value))
    elif value is None or isinstance(value, (bool, int, float, str)):
        digest.update(json.dumps(value).encode() + b";")
    else:
        raise TypeError(f"cannot fingerprint a {type(value).__name__}; pass plain data or numpy arrays")


def _as_json(value: object) -> object:
    """``value`` as its JSON text reads back (tuples become lists, unknown objects strings), for comparison."""
    return json.loads(json.dumps(value, default=str))


class CacheError(ValueError):
    """An entry exists but cannot be trusted (truncated, corrupt, or written for other key parts)."""


class ArrayCache:
    """Named-array entries under ``root``; see the module docstring for the file format and locking."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def path(self, kind: str, key: str) -> Path:
        return self.root / f"{kind}-{key}.npc"

    def load(self, kind: str, key: str, key_parts: object = None) -> dict[str, np.ndarray] | None:
        """The entry's arrays, or None when absent; raises ``CacheError`` when it is corrupt or, given
        ``key_parts``, when it was written for other key parts."""
        path = self.path(kind, key)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        header_end = len(_MAGIC) + _DIGEST_BYTES
        if len(blob) < header_end or not blob.startswith(_MAGIC):
            raise CacheError(f"{path} is not a cache entry")
        payload = blob[header_end:]
        if hashlib.sha256(payload).digest() != blob[len(_MAGIC):header_end]:
            raise CacheError(f"{path} fails its checksum (truncated or corrupt)")
        with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        stored_parts = arrays.pop(_KEY_PARTS, None)
        if key_parts is not None and (stored_parts is None or json.loads(str(stored_parts)) != _as_json(key_parts)):
            raise CacheError(f"{path} was written for other key parts than its file name says")
        return arrays

    def save(self, kind: str, key: str, arrays: Mapping[str, np.ndarray], key_parts: object = None) -> Path:
        """Write the entry atomically (temporary file, fsync, rename)."""
        self.root.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays, **{_KEY_PARTS: np.array(json.dumps(_as_json(key_parts)))})
        payload = buffer.getvalue()
        path = self.path(kind, key)
        handle, temporary = tempfile.mkstemp(dir=self.root, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(_MAGIC + hashlib.sha256(payload).digest() + payload)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return path

    def get_or_build(self, kind: str, key_parts: object,
                     build: Callable[[], Mapping[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], bool]:
        """``(arrays, hit)``: the cached entry for ``key_parts``, else ``build()``'s result, saved for next time."""
        key = fingerprint(key_parts)
        arrays = self._load_or_none(kind, key, key_parts)
        if arrays is not None:
            return arrays, True
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(self.path(kind, key).with_suffix(".lock")):
            arrays = self._load_or_none(kind, key, key_parts)  # another process may have built it while we waited
            if arrays is not None:
                return arrays, True
            arrays = {name: np.asarray(value) for name, value in build().items()}
            self.save(kind, key, arrays, key_parts)
            return arrays, False

    def _load_or_none(self, kind: str, key: str, key_parts: object) -> dict[str, np.ndarray] | None:
        try:
            return self.load(kind, key, key_parts)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            logger.warning("rebuilding SID cache entry: %s", error)
            return None
