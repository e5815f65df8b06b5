"""SHA-256 of files, read in chunks (``hashlib.file_digest`` needs Python 3.11). A leaf
module: it imports nothing of longplay."""

from __future__ import annotations

import hashlib
import os
from typing import Any

CHUNK_BYTES = 1 << 20


def update_with_file(digest: Any, path: str | os.PathLike[str]) -> Any:
    """Feed the bytes of ``path`` to the hashlib object ``digest``, a chunk at a time, and
    return it."""
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The hex SHA-256 of the bytes of ``path``."""
    return update_with_file(hashlib.sha256(), path).hexdigest()
