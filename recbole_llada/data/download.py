"""Download one file over HTTP(S): retries with exponential backoff, resume via ``Range``, atomic rename.

Bytes arrive in ``<destination>.part``; an interrupted transfer (this run's or an earlier one's) resumes from the
part file's size when the server honours ``Range``, and starts over when it does not. Only a complete transfer is
renamed to ``destination``, so a file at ``destination`` is always whole.
"""

from __future__ import annotations

import http.client
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

# Client errors other than these mean the URL is wrong: retrying cannot help.
_RETRYABLE_CLIENT_STATUS = (408, 429)
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+|\*)(?:-(\d+))?/(\d+|\*)")


class DownloadError(OSError):
    """A file could not be downloaded: network down, server error, wrong URL or a transfer that kept breaking."""


class _InterruptedTransfer(Exception):
    """The server sent fewer bytes than announced, or a range we did not ask for; the next attempt resumes."""


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """``Content-Range`` -> (first byte, total size); None where the header leaves it open."""
    match = _CONTENT_RANGE.match(header or "")
    if match is None:
        return None, None
    first, _, total = match.groups()
    return (None if first == "*" else int(first)), (None if total == "*" else int(total))


def _transfer(url: str, partial: Path, timeout_s: float, show_progress: bool, chunk_bytes: int) -> None:
    """One attempt: fetch what ``partial`` lacks. Returns when the part file holds the whole resource."""
    offset = partial.stat().st_size if partial.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s)
    except urllib.error.HTTPError as error:
        if error.code != 416 or not offset:
            raise
        # 416: nothing at or after our offset. Either the part file is already whole or it is stale.
        _, total = _content_range(error.headers.get("Content-Range"))
        if total == offset:
            return
        partial.unlink()
        raise _InterruptedTransfer(f"the partial file ({offset} bytes) does not match the server's") from error

    with response:
        if offset and response.status == 206:
            first, _ = _content_range(response.headers.get("Content-Range"))
            if first != offset:
                partial.unlink()
                raise _InterruptedTransfer(f"asked for bytes from {offset}, the server sent from {first}")
        else:
            offset = 0  # the server ignored Range and sends everything
        length = response.headers.get("Content-Length")
        expected = int(length) if length is not None else None
        received = 0
        with open(partial, "ab" if offset else "wb") as out, tqdm(
            total=None if expected is None else offset + expected, initial=offset, unit="B", unit_scale=True,
            unit_divisor=1024, desc=partial.name.removesuffix(".part"), disable=not show_progress,
        ) as progress:
            while chunk := response.read(chunk_bytes):
                out.write(chunk)
                received += len(chunk)
                progress.update(len(chunk))
    if expected is not None and received < expected:
        raise _InterruptedTransfer(f"connection closed after {received} of {expected} bytes")


def download_file(url: str, destination: Path, retries: int = 4, backoff_s: float = 2.0, timeout_s: float = 60.0,
                  show_progress: bool = True, chunk_bytes: int = 1 << 20) -> Path:
    """Download ``url`` to ``destination`` (parents created); returns ``destination``.

    Network errors, server errors (5xx, 408, 429) and broken transfers are retried ``retries`` times, waiting
    ``backoff_s * 2**attempt`` seconds in between; other HTTP errors (404 ...) fail at once. Raises
    ``DownloadError`` naming the URL and the last cause.
    """
    if retries < 0 or backoff_s < 0:
        raise ValueError(f"retries and backoff_s must be >= 0, got {retries} and {backoff_s}")
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    last_error: Exception | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1))
        try:
            _transfer(url, partial, timeout_s, show_progress, chunk_bytes)
        except urllib.error.HTTPError as error:
            if error.code < 500 and error.code not in _RETRYABLE_CLIENT_STATUS:
                raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from error
            last_error = error
        except (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException,
                _InterruptedTransfer) as error:
            last_error = error
        else:
            os.replace(partial, destination)
            return destination
    raise DownloadError(f"could not download {url} ({retries + 1} attempts): {last_error}") from last_error
