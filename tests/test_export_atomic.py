"""An exported model folder is never half-written: the copied text encoder, the weights
and the config each appear whole, and a failure leaves the previous export as it was."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import longplay.checkpoints.export as export
from conftest import SAO1_TINY
from longplay.checkpoints import load_diffusion_model, save_model_folder


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_a_failed_export_leaves_the_previous_one_whole(tmp_path, monkeypatch) -> None:
    model = load_diffusion_model(SAO1_TINY)
    out = save_model_folder(model, tmp_path / "exported", copy_text_encoder=True)
    assert load_diffusion_model(out).text_encoder is not None
    before = listing(out)
    assert any(name.startswith("text_encoder/") for name in before)

    def copy_half_then_fail(source, target, **kwargs):
        Path(target).mkdir(parents=True)
        (Path(target) / "config.json").write_text("{")
        raise OSError("disk full")

    monkeypatch.setattr(export.shutil, "copytree", copy_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_model_folder(model, out, copy_text_encoder=True)
    assert listing(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["exported"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]

    monkeypatch.setattr(export.shutil, "copytree", shutil.copytree)

    def fail_writing(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(export, "save_file", fail_writing)
    with pytest.raises(OSError, match="disk full"):
        save_model_folder(model, out)
    assert listing(out) == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
