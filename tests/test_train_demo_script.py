"""scripts/train_demo.py: the demo model's stages in order, each skipped once exported,
resumed from its checkpoint, and never exported before its config's last step."""

from __future__ import annotations

import sys

import pytest

from conftest import load_script


@pytest.fixture()
def script(monkeypatch, tmp_path):
    module = load_script("scripts/train_demo.py")
    calls: list[list[str]] = []
    monkeypatch.setattr(module, "command", lambda args, dry_run: calls.append(args))
    (tmp_path / "corpus" / "train").mkdir(parents=True)

    def run(*argv: str) -> list[list[str]]:
        calls.clear()
        monkeypatch.setattr(sys, "argv", ["train_demo.py", str(tmp_path), *argv])
        assert module.main() == 0
        return [c[:3] + [a for a in c if a in ("--resume",)] for c in calls]

    module.run = run
    module.work = tmp_path
    module.calls = calls
    return module


def test_a_fresh_work_folder_runs_every_stage_in_order(script) -> None:
    assert script.run("--dry-run") == [
        ["longplay", "train", "vae"], ["longplay", "export", str(script.work / "runs/demo-vae")],
        ["longplay", "train", "vae"],
        ["longplay", "export", str(script.work / "runs/demo-vae-decoder")],
        ["longplay", "data", "encode"],
        ["longplay", "train", "dit"],
        ["longplay", "export", str(script.work / "runs/demo-dit-pretrain")],
        ["longplay", "train", "dit"],
        ["longplay", "export", str(script.work / "runs/demo-dit-finetune")],
        ["longplay", "train", "distill"],
        ["longplay", "export", str(script.work / "runs/demo-distill")],
    ]


def test_an_unfinished_run_is_resumed_and_not_exported(script, monkeypatch) -> None:
    full = script.config_steps(script.STAGES[0])  # the VAE config's max_steps
    monkeypatch.setattr(script, "run_step", lambda run: full // 4)
    limit = str(full // 2)
    assert script.run("--max-steps", f"vae={limit}") == [["longplay", "train", "vae",
                                                           "--resume"]]
    assert "--max-steps" in script.calls[0] and limit in script.calls[0]
    assert not (script.work / "models" / "demo-vae").exists()


def test_exported_stages_are_skipped(script, monkeypatch) -> None:
    for name in ("demo-vae", "demo-vae-decoder", "demo-dit-pretrain"):
        (script.work / "models" / name).mkdir(parents=True)
        (script.work / "models" / name / "model_config.json").write_text("{}")
    monkeypatch.setattr(script, "run_step", lambda run: None)
    assert script.run("--stop-after", "dit-finetune") == [
        ["longplay", "data", "encode"], ["longplay", "train", "dit"]]
    assert "demo-dit-finetune" in " ".join(script.calls[1])


def test_bad_step_limits_are_refused(script) -> None:
    with pytest.raises(SystemExit):
        script.run("--max-steps", "vae=0")
