"""benchmarks/few_step.py on the bundled demo models, at a tiny size: its draws are pooled
into one set per row, the validation prompts and the student's variant rows run."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from conftest import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/few_step.py")


def test_draws_are_pooled_and_variant_rows_run(bench, tmp_path: Path, monkeypatch) -> None:
    counted: list[int] = []
    run_config = bench.run_config

    def counting(pipe, counter, config, prompts, duration, frames, seed_offset=0,
                 refiner=None):
        counted.append(seed_offset)
        return run_config(pipe, counter, config, prompts, duration, frames, seed_offset,
                          refiner)

    monkeypatch.setattr(bench, "run_config", counting)
    out = tmp_path / "few.md"
    monkeypatch.setattr(sys, "argv", [
        "few_step.py", "--prompts", "2", "--draws", "2", "--duration", "3",
        "--window-frames", "128", "--prompt-set", "validation", "--seed-offset", "7",
        "--only", "reference, other seeds", "distilled, 4 steps, other seeds",
        "--student-sigma-min", "0.3", "--student-guidance", "2", "--refine", "2:3",
        "2:3::0.5", "--out", str(out)])
    assert bench.main() == 0
    rows = json.loads(out.with_suffix(".json").read_text())
    assert [r["name"] for r in rows] == [
        "reference (full guidance)", "reference, other seeds",
        "distilled, 4 steps, other seeds", "distilled, its default, sigma_min 0.3",
        "distilled, its default, guidance 2", "distilled draft, refined from sigma 2 in 3 steps",
        "distilled draft, refined from sigma 2 in 3 steps, guided above sigma 0.5"]
    # Every row: two draws, the second DRAW_SEED_STRIDE further on.
    assert counted == [7, 7 + bench.DRAW_SEED_STRIDE] * 7
    assert rows[0]["fd_own_clap"] is None
    assert all(r["fd_own_clap"] > 0 for r in rows[1:])
    # The refined draft: 4 student evaluations, then 3 guided teacher steps from sigma 2.
    # The refined draft: 4 student evaluations, then 3 guided teacher steps from sigma 2;
    # guided above sigma 0.5, only the first of the levels 2, 0.245, 0.03 takes two passes.
    assert [r["evaluations"] for r in rows] == [100, 100, 4, 4, 8, 4 + 2 * 3, 4 + 2 + 1 + 1]
    assert [r["guidance_scale"] for r in rows[2:]] == [1, 1, 2, 7, 7]
    assert [r["sigma_min"] for r in rows[2:]] == [0.03, 0.3, 0.03, 0.03, 0.03]
    for row in rows[-2:]:
        assert row["sampler"] == "consistency + dpmpp-3m-sde" and row["steps"] == "4 + 3"
        assert row["init_noise_level"] == 2.0
    assert rows[-1]["guidance_interval"] == [0.5, math.inf]
    text = out.read_text()
    assert "2 prompts of the validation set" in text and "2 draws of every prompt pooled" in text


def test_cached_rows_are_reused_and_marked(bench, tmp_path: Path, monkeypatch) -> None:
    """--cache: a second run with the same model, settings and seeds generates nothing for
    the rows it kept and gives the same measurements; another seed offset is a new entry."""
    counted: list[str] = []
    run_config = bench.run_config

    def counting(pipe, counter, config, prompts, duration, frames, seed_offset=0,
                 refiner=None):
        counted.append(config["name"])
        return run_config(pipe, counter, config, prompts, duration, frames, seed_offset,
                          refiner)

    monkeypatch.setattr(bench, "run_config", counting)
    cache = tmp_path / "cache"

    def run(out: Path, *extra: str) -> list[dict]:
        monkeypatch.setattr(sys, "argv", [
            "few_step.py", "--prompts", "2", "--duration", "3", "--window-frames", "128",
            "--only", "reference settings, euler (the student's teacher)", "--refine",
            "--cache", str(cache), "--out", str(out), *extra])
        assert bench.main() == 0
        return json.loads(out.with_suffix(".json").read_text())

    first = run(tmp_path / "a.md")
    assert counted == ["reference (full guidance)",
                       "reference settings, euler (the student's teacher)"]
    assert [r["sampler"] for r in first] == ["dpmpp-3m-sde", "euler"]
    assert not any(r["cached"] for r in first)
    assert len(list(cache.glob("*.pt"))) == 2

    second = run(tmp_path / "b.md")
    assert len(counted) == 2  # nothing generated again
    assert all(r["cached"] for r in second)
    for a, b in zip(first, second, strict=True):
        assert b["fd_own_clap"] == a["fd_own_clap"] and b["clap_score"] == a["clap_score"]
        assert b["sampler"] == a["sampler"] and b["steps"] == a["steps"]
    assert "(reused)" in (tmp_path / "b.md").read_text()

    run(tmp_path / "c.md", "--seed-offset", "5")
    assert len(counted) == 4 and len(list(cache.glob("*.pt"))) == 4


def test_another_model_refines_the_draft_without_guidance(bench, tmp_path: Path,
                                                          monkeypatch) -> None:
    """--refiner MODEL and LEVEL:STEPS:GUIDANCE: the draft (here in --draft-steps 2) is
    refined by that model, here one pass per step."""
    out = tmp_path / "refined.md"
    refiner = bench.DEMO.parent / "demo-fast"  # any model folder of the same VAE
    monkeypatch.setattr(sys, "argv", [
        "few_step.py", "--prompts", "2", "--duration", "3", "--window-frames", "128",
        "--only", "reference (full guidance)", "--refine", "2:3:1", "--refiner",
        str(refiner), "--draft-steps", "2", "--out", str(out)])
    assert bench.main() == 0
    rows = json.loads(out.with_suffix(".json").read_text())
    assert [r["name"] for r in rows] == [
        "reference (full guidance)",
        "distilled draft in 2 steps, refined from sigma 2 in 3 steps, guidance 1, by demo-fast"]
    assert rows[1]["evaluations"] == 2 + 3 and rows[1]["guidance_scale"] == 1
    assert rows[1]["steps"] == "2 + 3"
    assert bench.parse_refine("4:10:1:2") == (4.0, 10, 1.0, 2.0)
    assert bench.parse_refine("4:10::0.5") == (4.0, 10, None, 0.5)
    for bad in ("4:10:1:2:3", "4:10:1:-1", "4:10:1:nan", "4", "4:x"):
        with pytest.raises(SystemExit, match="LEVEL:STEPS"):
            bench.parse_refine(bad)
