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
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_output_path", "atomic_output_paths", "remove_stale_temporaries",
           "write_json_atomic", "write_text_atomic"]

STALE_TEMP_S = 24 * 3600
"""A temporary file of another host (or of unknown origin) older than this is left over
from a writer that died; those of this host are recognised by their process id."""
_HOST = socket.gethostname().replace(".", "_").replace("-", "_")[:32] or "host"


def _temp_name(path: Path) -> str:
    """``.<name>.tmp-<host>-<pid>-<random><suffix>``: hidden, and naming its writer so that
    a later writer can tell a temporary file left by a killed process from a live one."""
    return f".{path.name}.tmp-{_HOST}-{os.getpid()}-{secrets.token_hex(4)}{path.suffix}"


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files that writers of ``path`` left behind when they were
    killed (SIGKILL, power loss): those of this host whose process is gone, and any older
    than ``STALE_TEMP_S``. Temporary files of live writers are kept. Returns the removed
    paths; :func:`atomic_output_path` calls it before each write."""
    path = Path(path)
    removed = []
    try:
        candidates = list(path.parent.glob(f".{path.name}.tmp-*{path.suffix}"))
    except OSError:
        return removed
    now = time.time()
    for tmp in candidates:
        parts = tmp.name[len(f".{path.name}.tmp-"):].split("-")
        try:
            stale = (len(parts) == 3 and parts[0] == _HOST and parts[1].isdigit()
                     and not _is_alive(int(parts[1]))) or (
                now - tmp.stat().st_mtime > STALE_TEMP_S)
            if stale:
                tmp.unlink()
                removed.append(tmp)
        except OSError:  # gone meanwhile, or not ours to remove
            continue
    return removed


@contextmanager
def atomic_output_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Write a file atomically: yield a temporary path, then move it onto ``path``.

    The temporary file is hidden (``.<name>.tmp-<host>-<pid>-<random><suffix>``), lives in
    the same directory as ``path`` (so the final ``os.replace`` is atomic, also when
    ``$TMPDIR`` is on another filesystem) and keeps the suffix of ``path`` so that writers
    inferring the format from the extension still work. It is created empty (permissions
    from the umask) before the block runs; the block writes to it. Temporary files that
    killed writers of ``path`` left behind are removed first
    (:func:`remove_stale_temporaries`). When the block completes, the file replaces
    ``path``; when it raises, the temporary file is removed, ``path`` is left untouched
    and the exception propagates. (No fsync: this guards against crashes and errors of the process,
    not against power loss.) The final file has the permissions of a new file (0o666
    less the umask, typically 0644), whatever the block gave the temporary one.

    Raises:
        FileNotFoundError: the parent directory of ``path`` does not exist.
        PermissionError: the parent directory is not writable (the message names ``path``).
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
    remove_stale_temporaries(path)
    while True:
        tmp = parent / _temp_name(path)
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        except PermissionError:
            raise PermissionError(f"cannot write {path}: the folder {parent} is not "
                                  "writable; choose another output folder or fix its "
                                  "permissions") from None
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


@contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM that arrive during the block take effect after it (their Python
    handlers run then; in the main thread only, where Python runs them)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not None:  # None: not set from Python; left alone
            previous[signum] = signal.signal(signum, lambda n, frame: received.append(n))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in received:
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


@contextmanager
def atomic_output_paths(*paths: str | os.PathLike[str]) -> Iterator[list[Path]]:
    """Write several files that belong together (an output and its sidecar): yield their
    temporary paths; when the block completes, move them into place in the order given,
    with SIGINT and SIGTERM held back between the moves, so that an interruption leaves
    all of them or none of them new. When the block raises, every temporary file is
    removed and no final file is touched."""
    with ExitStack() as stack:
        temps = [stack.enter_context(atomic_output_path(p)) for p in reversed(paths)][::-1]
        yield temps
        with _signals_held():
            stack.close()  # the moves, first path first (the stack unwinds in reverse)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    path = Path(path)
    with atomic_output_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON (with a final newline) to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2) + "\n")
