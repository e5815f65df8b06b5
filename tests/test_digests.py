"""longplay.digests: chunked SHA-256 of files."""

from __future__ import annotations

import hashlib

from longplay import digests


def test_file_sha256_matches_hashlib_across_chunk_boundaries(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(digests, "CHUNK_BYTES", 7)  # many chunks, the last one partial
    data = bytes(range(256)) * 3 + b"tail"
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert digests.file_sha256(path) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert digests.file_sha256(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()
