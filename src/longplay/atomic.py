"""Atomic file writing: a file appears complete under its final name, or not at all.

Every file the package writes (audio, weights, configs, sidecars, reports) goes
through :func:`atomic_output_path`, so that a crash or an exception while writing
never leaves a partial file under the final name, and an existing file is only
replaced once the new one is complete. A leaf module: it imports nothing of longplay.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_output_path", "write_json_atomic", "write_text_atomic"]


@contextmanager
def atomic_output_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Write a file atomically: yield a temporary path, then move it onto ``path``.

    The temporary file is hidden (``.<name>.tmp-<random><suffix>``), lives in the same
    directory as ``path`` (so the final ``os.replace`` is atomic) and keeps the suffix
    of ``path`` so that writers inferring the format from the extension still work. It
    is created empty (permissions from the umask) before the block runs; the block
    writes to it. When the block completes, the file replaces ``path``; when it raises,
    the temporary file is removed, ``path`` is left untouched and the exception
    propagates. (No fsync: this guards against crashes and errors of the process,
    not against power loss.) The final file has the permissions of a new file (0o666
    less the umask, typically 0644), whatever the block gave the temporary one.

    Raises:
        FileNotFoundError: the parent directory of ``path`` does not exist.
        IsADirectoryError: ``path`` is an existing directory.
        RuntimeError: the block removed the temporary file instead of writing it.
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(
            f"cannot write {path}: the output directory {parent} does not exist; create it "
            "first (e.g. mkdir -p)."
        )
    if path.is_dir():
        raise IsADirectoryError(
            f"cannot write {path}: it is an existing directory; choose a file name."
        )
    while True:
        tmp = parent / f".{path.name}.tmp-{secrets.token_hex(4)}{path.suffix}"
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        mode = os.fstat(fd).st_mode & 0o777  # 0o666 less the umask
        os.close(fd)
        break
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(
                f"the temporary file {tmp} for {path} disappeared before it could be moved "
                "into place; the block must write to the yielded path, not remove it."
            )
        # Writers that replace the file with their own (safetensors writes 0600) would
        # otherwise leave an output only its owner can read.
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    path = Path(path)
    with atomic_output_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON (with a final newline) to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2) + "\n")
