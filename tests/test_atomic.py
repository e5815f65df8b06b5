"""Atomic file writing (longplay.atomic): complete under the final name, or nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from longplay.atomic import atomic_output_path, write_json_atomic, write_text_atomic


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_atomic_output_path(tmp_path: Path) -> None:
    target = tmp_path / "latents.safetensors"
    with atomic_output_path(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.suffix == ".safetensors"
        assert tmp.name.startswith(".latents.safetensors.tmp-")
        assert not target.exists()
        tmp.write_text("done")
    assert target.read_text() == "done"
    assert _listing(tmp_path) == ["latents.safetensors"]

    with pytest.raises(KeyError), atomic_output_path(target) as tmp:
        tmp.write_text("half")
        raise KeyError("boom")
    assert target.read_text() == "done"
    assert _listing(tmp_path) == ["latents.safetensors"]


def test_atomic_output_path_missing_parent(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_dir"
    with (
        pytest.raises(FileNotFoundError, match="no_such_dir"),
        atomic_output_path(missing / "x.wav"),
    ):
        pass
    assert not missing.exists()


def test_text_and_json_helpers_write_complete_files(tmp_path: Path) -> None:
    write_text_atomic(tmp_path / "notes.txt", "héllo\n")
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "héllo\n"
    write_json_atomic(tmp_path / "a.json", {"x": [1, 2]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": [1, 2]}
    with pytest.raises(TypeError):  # not serialisable: the old file stays, no leftovers
        write_json_atomic(tmp_path / "a.json", {"x": object()})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": [1, 2]}
    assert _listing(tmp_path) == ["a.json", "notes.txt"]
