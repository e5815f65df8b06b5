"""benchmarks/vae_quality.py: its collapse check and one scored model; and
benchmarks/_report.py, the ending every benchmark shares."""

from __future__ import annotations

import json
import math
import sys

import pytest
import soundfile as sf
import torch

from conftest import SAO1_TINY, load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/vae_quality.py")


def tones(n: int) -> list[torch.Tensor]:
    t = torch.arange(44100) / 44100
    return [torch.sin(2 * math.pi * 110 * (k + 1) * t).expand(2, -1) * 0.3 for k in range(n)]


def test_own_input_nearest_tells_a_collapsed_vae(bench) -> None:
    inputs = tones(4)
    assert bench.own_input_nearest(inputs, [0.8 * x for x in inputs]) == 1  # quieter, same
    collapsed = [inputs[0] * 0.9] * 4  # one output for every input
    assert bench.own_input_nearest(inputs, collapsed) == 0.25


def test_the_table_of_a_scored_vae(bench, tmp_path, monkeypatch) -> None:
    corpus = tmp_path / "test"
    corpus.mkdir()
    for k, x in enumerate(tones(2)):
        sf.write(str(corpus / f"{k}.wav"), x.T.numpy(), 44100)
    out = tmp_path / "table.md"
    monkeypatch.setattr(sys, "argv", ["vae_quality.py", "--corpus", str(corpus), "--model",
                                      f"tiny={SAO1_TINY}", "--seconds", "1", "--out", str(out)])
    assert bench.main() == 0
    text = out.read_text()
    assert "the first 2 files" in text and "| tiny |" in text
    row = next(line for line in text.splitlines() if line.startswith("| tiny |"))
    assert len(row.split("|")) == len(text.splitlines()[4].split("|"))  # every column filled
    with pytest.raises(SystemExit):
        monkeypatch.setattr(sys, "argv", ["vae_quality.py", "--corpus", str(corpus),
                                          "--model", "no-equals-sign"])
        bench.main()


def test_a_report_is_printed_then_saved_with_its_rows(bench, tmp_path, capsys) -> None:
    from _report import save_report

    out = tmp_path / "new" / "table.md"
    save_report("| a |\n", out, [{"a": 1}])
    assert "| a |" in capsys.readouterr().out
    assert out.read_text() == "| a |\n"
    assert json.loads(out.with_suffix(".json").read_text()) == [{"a": 1}]
    save_report("| b |\n", out)  # no rows: the earlier JSON is left alone, the table replaced
    assert out.read_text() == "| b |\n" and out.with_suffix(".json").exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["table.json", "table.md"]
