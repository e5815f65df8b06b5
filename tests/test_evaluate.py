"""``longplay evaluate``: the runner end to end on the tiny fixture model, and its parts."""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SAO1_TINY
from longplay.audio import load_audio, save_audio
from longplay.checkpoints import model_fingerprint, read_state_dict, write_safetensors
from longplay.cli import evaluate as evaluate_cli
from longplay.cli.main import main
from longplay.evaluation.embedders import own_clap, peak_normalise, windows
from longplay.evaluation.plots import MARK_COLOUR, MIN_PLOT_PIXELS
from longplay.evaluation.runner import (
    DEFAULT_METRICS,
    Evaluation,
    EvaluationConfig,
    ProgressBars,
)
from longplay.pipelines import TextToMusicPipeline


@pytest.fixture
def prompts(tmp_path) -> Path:
    path = tmp_path / "prompts.jsonl"
    rows = [{"id": "a", "prompt": "calm piano"}, {"id": "b", "prompt": "fast drums"},
            {"id": "c", "prompt": "string quartet", "duration_s": 0.5}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def reference(tmp_path) -> Path:
    folder = tmp_path / "reference"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    t = torch.arange(44100) / 44100
    for i, freq in enumerate((220.0, 330.0)):
        tone = torch.sin(2 * math.pi * freq * t) * 0.3 + 0.01 * torch.randn(44100, generator=g)
        save_audio(folder / f"{'ab'[i]}.wav", torch.stack([tone, tone]), 44100)
    return folder


def test_evaluate_end_to_end_and_resumes(tmp_path, prompts, reference, clap_folder) -> None:
    out = tmp_path / "report"
    args = ["evaluate", "--model", SAO1_TINY, "--prompts", prompts, "--reference", reference,
            "--clap", clap_folder, "--metrics",
            "clap,pitch,fd_clap,timing,structure,autoencoder",
            "--duration", "1", "--steps", "2", "--timing-durations", "1", "-o", out,
            "--no-progress"]
    assert main([str(a) for a in args]) == 0
    report = json.loads((out / "report.json").read_text())
    m = report["metrics"]
    assert set(m) == {"clap", "pitch", "fd_clap", "timing", "structure", "autoencoder"}
    assert m["pitch"]["items"] == 3
    assert [row["prompt"] for row in m["pitch"]["prompts"]] == [
        "calm piano", "fast drums", "string quartet"]
    for row in report["items"]:
        assert row["pitched_share"] is None or 0 <= row["pitched_share"] <= 1
    assert -1 <= m["clap"]["vs_prompts"] <= 1 and m["clap"]["vs_other_prompts"] is not None
    assert m["fd_clap"]["value"] >= 0
    assert m["timing"]["items"][0]["duration_s"] == 1.0
    assert m["structure"]["generated"]["items"] == 3
    assert m["structure"]["reference"]["items"] == 2
    assert m["autoencoder"]["items"] == 2
    assert m["autoencoder"]["pitched_share_reference"] > 0.9  # two steady tones
    assert m["autoencoder"]["worst_added_tone_db"] >= m["autoencoder"]["added_tone_db"]
    assert [row["seed"] for row in report["items"]] == [0, 1, 2]
    sidecar = json.loads((out / "audio" / "c.json").read_text())
    assert sidecar["request"]["duration_s"] == 0.5  # the prompt file's duration wins
    assert (out / "structure" / "generated_a_chroma.png").is_file()
    markdown = (out / "report.md").read_text()
    for title in ("Text adherence", "Pitched content", "Timing adherence", "Structure",
                  "Autoencoder", "Fidelity checks", "Items"):
        assert title in markdown
    # A rerun keeps finished generations.
    stamp = (out / "audio" / "a.wav").stat().st_mtime_ns
    timing_stamp = (out / "timing" / "1.wav").stat().st_mtime_ns
    assert main([str(a) for a in args]) == 0
    assert (out / "audio" / "a.wav").stat().st_mtime_ns == stamp
    assert (out / "timing" / "1.wav").stat().st_mtime_ns == timing_stamp
    # A changed request regenerates, the timing generations included.
    assert main([str(a) for a in [*args[:-3], "--seed", "5", "-o", out, "--no-progress"]]) == 0
    assert json.loads((out / "audio" / "a.json").read_text())["request"]["seed"] == 5
    assert json.loads((out / "timing" / "1.json").read_text())["request"]["seed"] == 10_005
    # A copy of the same model elsewhere keeps them; the same folder retrained (one DiT
    # weight changed) makes them again, the timing generations included.
    copy = tmp_path / "copy"
    shutil.copytree(SAO1_TINY, copy)
    seed5 = [*args[:-3], "--seed", "5", "-o", out, "--no-progress"]
    on_copy = [copy if a == SAO1_TINY else a for a in seed5]
    stamp = (out / "audio" / "a.wav").stat().st_mtime_ns
    assert main([str(a) for a in on_copy]) == 0
    assert (out / "audio" / "a.wav").stat().st_mtime_ns == stamp
    before = json.loads((out / "audio" / "a.json").read_text())["request"]["model"]
    state = read_state_dict(copy / "model.safetensors")
    name = next(k for k in sorted(state) if k.startswith("model.model.transformer"))
    state[name] = state[name] + 0.01
    write_safetensors(copy / "model.safetensors", state)
    assert main([str(a) for a in on_copy]) == 0
    for folder, item in (("audio", "a"), ("timing", "1")):
        request = json.loads((out / folder / f"{item}.json").read_text())["request"]
        assert request["model"] != before
        assert request["model"] == model_fingerprint(copy)


def test_model_fingerprint_follows_contents_not_place(tmp_path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(SAO1_TINY, copy)
    assert model_fingerprint(copy) == model_fingerprint(SAO1_TINY)
    assert model_fingerprint(copy / "model.safetensors") != model_fingerprint(copy)
    (copy / "model_config.json").write_text(
        (copy / "model_config.json").read_text().replace("}", " }", 1))
    assert model_fingerprint(copy) != model_fingerprint(SAO1_TINY)  # configs count too
    with pytest.raises(FileNotFoundError, match="no model"):
        model_fingerprint(tmp_path / "missing")


def test_evaluate_takes_generated_audio(tmp_path, prompts, reference, clap_folder) -> None:
    audio = tmp_path / "generated"
    audio.mkdir()
    for item_id in "abc":
        save_audio(audio / f"{item_id}.wav", torch.randn(2, 44100) * 0.1, 44100)
    config = EvaluationConfig(prompts=prompts, audio=audio, clap=clap_folder, model=SAO1_TINY,
                              metrics=("clap",))
    report = Evaluation(config, tmp_path / "r", progress=False).run()
    assert len(report.items) == 3 and not (tmp_path / "r" / "audio").exists()
    (audio / "c.wav").unlink()
    with pytest.raises(FileNotFoundError, match="no audio for 1 prompt id"):
        Evaluation(config, tmp_path / "r", progress=False).run()


def test_clap_chance_level_is_every_other_prompt_when_prompts_repeat(tmp_path,
                                                                    clap_folder) -> None:
    # Two prompts, three clips each, in a row: a clip's neighbour is mostly its own prompt.
    texts = ["calm piano", "fast drums"]
    rows = [{"id": f"{k}{n}", "prompt": texts[k]} for k in range(2) for n in range(3)]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    audio = tmp_path / "generated"
    audio.mkdir()
    g = torch.Generator().manual_seed(5)
    for row in rows:
        save_audio(audio / f"{row['id']}.wav", torch.randn(2, 44100, generator=g) * 0.1, 44100)
    config = EvaluationConfig(prompts=prompts, audio=audio, clap=clap_folder, model=SAO1_TINY,
                              metrics=("clap",))
    clap = Evaluation(config, tmp_path / "r", progress=False).run().metrics["clap"]
    assert clap["prompts"] == 2
    embedder = own_clap(clap_folder)
    text = torch.nn.functional.normalize(embedder.embed_text(texts).double(), dim=-1)
    cosines = []
    for row in rows:
        wave = load_audio(audio / f"{row['id']}.wav", sample_rate=44100, channels=2).audio
        clip = torch.nn.functional.normalize(embedder.embed_audio(wave[None], 44100).double(),
                                             dim=-1)
        cosines.append((clip @ text.T)[0])
    own = [texts.index(r["prompt"]) for r in rows]
    assert clap["vs_prompts"] == pytest.approx(
        float(sum(c[o] for c, o in zip(cosines, own, strict=True)) / 6), abs=1e-5)
    assert clap["vs_other_prompts"] == pytest.approx(
        float(sum(c[1 - o] for c, o in zip(cosines, own, strict=True)) / 6), abs=1e-5)


def test_pitch_metric_per_clip_per_prompt_and_silence(tmp_path, clap_folder) -> None:
    prompts = tmp_path / "prompts.jsonl"
    rows = [("t1", "calm piano"), ("n", "fast drums"), ("t2", "calm piano"), ("s", "silence")]
    prompts.write_text("".join(json.dumps({"id": i, "prompt": p}) + "\n" for i, p in rows))
    audio = tmp_path / "generated"
    audio.mkdir()
    t = torch.arange(44100) / 44100
    for item_id, f0 in (("t1", 220.0), ("t2", 330.0)):
        tone = 0.3 * torch.sin(2 * math.pi * f0 * t) + 0.1 * torch.sin(4 * math.pi * f0 * t)
        save_audio(audio / f"{item_id}.wav", torch.stack([tone, tone]), 44100)
    g = torch.Generator().manual_seed(0)
    save_audio(audio / "n.wav", 0.1 * torch.randn(2, 44100, generator=g), 44100)
    save_audio(audio / "s.wav", torch.zeros(2, 44100), 44100)
    out = tmp_path / "r"
    config = EvaluationConfig(prompts=prompts, audio=audio, clap=clap_folder,
                              model=SAO1_TINY, metrics=("pitch",))
    report = Evaluation(config, out, progress=False).run()
    share = {row["id"]: row["pitched_share"] for row in report.items}
    assert share["t1"] > 0.95 and share["t2"] > 0.95 and share["n"] < 0.05
    assert share["s"] is None  # nothing sounds: not counted
    f0 = {row["id"]: row["median_f0_hz"] for row in report.items}
    assert f0["t1"] == pytest.approx(220.0, rel=0.01) and f0["t2"] == pytest.approx(330, rel=0.01)
    pitch = report.metrics["pitch"]
    assert (pitch["items"], pitch["silent_items"]) == (4, 1)
    assert pitch["mean_pitched_share"] == pytest.approx(
        (share["t1"] + share["t2"] + share["n"]) / 3)
    per_prompt = {row["prompt"]: row for row in pitch["prompts"]}
    assert list(per_prompt) == ["calm piano", "fast drums", "silence"]
    assert per_prompt["calm piano"]["items"] == 2
    assert per_prompt["calm piano"]["mean_pitched_share"] == pytest.approx(
        (share["t1"] + share["t2"]) / 2)
    assert per_prompt["silence"]["mean_pitched_share"] is None
    markdown = (out / "report.md").read_text()
    section = markdown.split("## Pitched content")[1].split("\n## ")[0]
    sounding = {row["id"]: row["sounding_share"] for row in report.items}
    assert sounding["s"] == 0.0 and min(sounding["t1"], sounding["t2"], sounding["n"]) > 0.95
    assert pitch["mean_sounding_share"] == pytest.approx(sum(sounding.values()) / 4)
    assert (f"| 4 | 1 | {100 * pitch['mean_sounding_share']:.1f} | "
            f"{100 * pitch['mean_pitched_share']:.1f} |") in section
    assert f"| calm piano | 2 | {100 * per_prompt['calm piano']['mean_pitched_share']:.1f} |" \
        in section
    assert "| silence | 1 | n/a |" in section and "no prompt as tonal" in section
    items = markdown.split("## Items")[1]
    assert "pitched (%)" in items and "sounding (%)" in items
    assert (f"| t1 | 0 | calm piano | {100 * sounding['t1']:.1f} | "
            f"{100 * share['t1']:.1f} |") in items


def test_evaluate_config_errors(prompts) -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        EvaluationConfig(prompts=prompts, metrics=("fad",))
    with pytest.raises(ValueError, match="--reference"):
        EvaluationConfig(prompts=prompts, metrics=("fd_clap",))


def test_pretrained_embedders_name_what_to_install(tmp_path) -> None:
    # FD_openl3 and KL_passt (packages and weights): tests/test_pretrained_embedders.py.
    from longplay.evaluation import embedders

    with pytest.raises(FileNotFoundError, match="no LAION-CLAP model"):
        embedders.laion_clap(tmp_path)


def test_peak_normalisation_and_windows(clap_folder) -> None:
    audio = torch.tensor([[[0.1, -0.5, 0.2]], [[0.0, 0.0, 0.0]]])
    out = peak_normalise(audio)
    assert out[0].abs().max().item() == pytest.approx(10 ** (-1 / 20))
    assert torch.equal(out[1], audio[1])
    parts = windows(torch.arange(10.0).view(1, 1, 10), 4, 3)
    assert parts.shape == (1, 3, 1, 4) and parts[0, 2, 0].tolist() == [6, 7, 8, 9]
    assert windows(torch.ones(1, 1, 2), 4, 2).shape == (1, 1, 1, 4)
    # Own-CLAP window embeddings: one per 10 s window, 5 s hop.
    embedder = own_clap(clap_folder)
    emb = embedder.embed_windows(torch.randn(2, 2, 44100 * 20) * 0.1, 44100)
    assert emb.shape == (2, 3, 16)


def make_tiny_laion_clap(folder: Path) -> Path:
    """A random LAION-CLAP (transformers' ClapModel, HTSAT audio tower) with a
    character-level RoBERTa tokenizer, saved as a local Hugging Face folder."""
    from transformers import (
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapProcessor,
        RobertaTokenizerFast,
    )
    from transformers.models.clap.configuration_clap import ClapAudioConfig, ClapTextConfig

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", "<mask>",
                                          *"abcdefghijklmnopqrstuvwxyz", "Ġ"])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = RobertaTokenizerFast(vocab_file=str(folder / "vocab.json"),
                                     merges_file=str(folder / "merges.txt"))
    processor = ClapProcessor(feature_extractor=ClapFeatureExtractor(truncation="rand_trunc"),
                              tokenizer=tokenizer)
    text = ClapTextConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                          num_attention_heads=2, intermediate_size=64,
                          max_position_embeddings=80)
    audio = ClapAudioConfig(depths=[1, 1], num_attention_heads=[2, 2], hidden_size=32,
                            patch_embeds_hidden_size=16, window_size=8, spec_size=256,
                            num_mel_bins=64, enable_fusion=False, num_classes=10,
                            patch_stride=(4, 4), patch_size=4)
    torch.manual_seed(0)
    ClapModel(ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(),
                         projection_dim=16)).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_laion_clap_through_transformers(tmp_path, prompts) -> None:
    from longplay.evaluation import embedders

    folder = make_tiny_laion_clap(tmp_path / "laion")
    clap = embedders.laion_clap(folder)
    assert clap.sample_rate == 48000
    audio = torch.randn(2, 2, 44100, generator=torch.Generator().manual_seed(0)) * 0.1
    emb = clap.embed_audio(audio, 44100)
    text = clap.embed_text(["a cat", "a dog"])
    assert emb.shape == text.shape == (2, 16) and torch.isfinite(emb).all()
    # Each item is embedded on its own: batching does not change it.
    torch.testing.assert_close(clap.embed_audio(audio[:1], 44100), emb[:1], atol=1e-5,
                               rtol=1e-4)
    generated = tmp_path / "generated"
    generated.mkdir()
    for item_id in "abc":
        save_audio(generated / f"{item_id}.wav", torch.randn(2, 44100) * 0.1, 44100)
    config = EvaluationConfig(prompts=prompts, audio=generated, metrics=("clap_laion",),
                              laion_clap=folder, model=SAO1_TINY)
    report = Evaluation(config, tmp_path / "r", progress=False).run()
    assert -1 <= report.metrics["clap_laion"]["value"] <= 1
    assert report.metrics["clap_laion"]["items"] == 3


def test_evaluate_scores_the_joins_its_sidecars_record(tmp_path, prompts) -> None:
    audio = tmp_path / "edits"
    audio.mkdir()
    assert main(["generate", "calm piano", "--model", str(SAO1_TINY), "--duration", "2",
                 "--steps", "2", "--seed", "1", "-o", str(audio / "a.wav"),
                 "--no-progress"]) == 0
    assert main(["extend", str(audio / "a.wav"), "--seconds", "3", "--prompt", "fast drums",
                 "--model", str(SAO1_TINY), "--steps", "2", "--seed", "2",
                 "-o", str(audio / "b.wav"), "--no-progress"]) == 0
    assert main(["generate", "strings", "--model", str(SAO1_TINY), "--loop", "--duration",
                 "1.5", "--steps", "2", "-o", str(audio / "c.wav"), "--no-progress"]) == 0
    report = Evaluation(EvaluationConfig(prompts=prompts, audio=audio, metrics=("joins",)),
                        tmp_path / "r", progress=False).run()
    joins = report.metrics["joins"]
    extended = [r for r in joins["items"] if r["id"] == "b"]
    assert extended and extended[0]["position_s"] == 2.0  # where the recording ended
    assert {r["id"] for r in joins["items"]} == {"b", "c"}  # a has no join
    assert joins["joins"] == len(joins["items"]) and joins["max_click"] >= joins["mean_click"]
    assert "## Joins" in (tmp_path / "r" / "report.md").read_text()


def read_png(path: Path) -> np.ndarray:
    """RGB uint8 [H, W, 3] of a PNG as longplay writes them (8-bit RGB, filter 0 rows)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    chunks, pos = [], 8
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        if kind == b"IDAT":
            chunks.append(data[pos + 8:pos + 8 + length])
        pos += 12 + length
    rows = np.frombuffer(zlib.decompress(b"".join(chunks)), np.uint8).reshape(height, -1)
    assert (rows[:, 0] == 0).all()  # filter type 0 on every row
    return rows[:, 1:].reshape(height, width, 3)


def axes_of(picture: np.ndarray, min_length: int) -> tuple[int, int]:
    """(row of the bottom axis, column of the left axis): the black lines at least
    ``min_length`` pixels long, the lowest row and the leftmost column."""
    black = (picture == 0).all(axis=2)
    rows = [r for r in range(picture.shape[0]) if _longest_run(black[r]) >= min_length]
    columns = [c for c in range(picture.shape[1]) if _longest_run(black[:, c]) >= min_length]
    assert rows and columns, "no axis line"
    return rows[-1], columns[0]


def _longest_run(line: np.ndarray) -> int:
    best = run = 0
    for value in line:
        run = run + 1 if value else 0
        best = max(best, run)
    return best


class Recorder:
    """A progress callback that keeps every report."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.calls.append((stage, done, total))

    def finished(self, stage: str) -> int:
        """The total of ``stage``, after checking it started at 0 and counted up to it."""
        reports = [(d, t) for s, d, t in self.calls if s == stage]
        assert reports, f"{stage} reported no progress"
        total = reports[0][1]
        assert [d for d, _ in reports] == list(range(total + 1)), reports
        return total


def test_defaults_leave_out_timing_report_every_stage_and_show_the_plots(
        tmp_path, prompts, clap_folder) -> None:
    out = tmp_path / "report"
    config = EvaluationConfig(prompts=prompts, model=SAO1_TINY, clap=clap_folder,
                              duration_s=1.0, steps=2)
    assert "timing" not in config.metrics and config.metrics == DEFAULT_METRICS
    progress = Recorder()
    report = Evaluation(config, out, progress=progress).run()
    assert set(report.metrics) == {"clap", "pitch", "structure"}
    assert not (out / "timing").exists()
    assert progress.finished("generating") == progress.finished("clap") == 3
    assert progress.finished("pitch") == 3
    assert progress.finished("structure") == 3
    steps = {stage for stage, _, _ in progress.calls if stage.startswith("generating: ")}
    assert steps == {"generating: sampling", "generating: decoding"}

    markdown = (out / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(links) == 6  # chroma and MFCC of each clip
    for item_id in "abc":
        for kind in ("chroma", "mfcc"):
            assert f"structure/generated_{item_id}_{kind}.png" in links
    for link in links:
        assert (out / link).is_file()  # relative to report.md

    # The chroma matrix of a 1 s clip is 22 x 22 frames; the plot is larger, with a black
    # axis below and left of the (enlarged) matrix and ink (numbers, label) beyond them.
    picture = read_png(out / "structure" / "generated_a_chroma.png")
    assert picture.shape[0] > MIN_PLOT_PIXELS and picture.shape[1] > MIN_PLOT_PIXELS
    axis_row, axis_col = axes_of(picture, MIN_PLOT_PIXELS)
    ink = (picture == 0).all(axis=2)
    assert ink[axis_row + 2:].sum() > 50 and ink[:, :axis_col - 1].sum() > 50
    matrix = picture[:axis_row, axis_col + 1:]
    shaded = matrix[(matrix != 255).any(axis=2)]
    assert (shaded[:, 0] == shaded[:, 1]).all()  # the matrix itself is gray


def test_every_metric_reports_progress_and_timing_marks_the_end(
        tmp_path, prompts, reference, clap_folder) -> None:
    audio = tmp_path / "generated"
    audio.mkdir()
    for item_id in "abc":
        save_audio(audio / f"{item_id}.wav", torch.randn(2, 44100) * 0.1, 44100)
    metrics = ("clap", "pitch", "fd_clap", "timing", "structure", "autoencoder", "joins")
    config = EvaluationConfig(prompts=prompts, audio=audio, reference=reference,
                              clap=clap_folder, model=SAO1_TINY, metrics=metrics, steps=2,
                              timing_durations=(1.0,))
    progress = Recorder()
    report = Evaluation(config, tmp_path / "r", progress=progress).run()
    assert set(report.metrics) == set(metrics)
    assert "generating" not in {stage for stage, _, _ in progress.calls}  # --audio
    expected = {"clap": 3, "pitch": 3, "fd_clap": 5, "timing": 1, "structure": 5, "autoencoder": 2,
                "joins": 3}
    assert {metric: progress.finished(metric) for metric in metrics} == expected
    assert any(stage == "timing: sampling" for stage, _, _ in progress.calls)

    # The timing spectrogram: time axis over the whole window, the requested end marked.
    picture = read_png(tmp_path / "r" / "timing" / "1.png")
    axis_row, axis_col = axes_of(picture, 100)
    marked = np.flatnonzero(((picture[:axis_row] == MARK_COLOUR).all(axis=2)).any(axis=0))
    window_s = TextToMusicPipeline.from_pretrained(SAO1_TINY).max_duration_s
    # The axis line runs from the corner under the whole picture.
    width = (picture[axis_row, axis_col:] == 0).all(axis=1).argmin() - 1
    assert len(marked) == 1
    assert (marked[0] - axis_col - 1) / (width - 1) == pytest.approx(1.0 / window_s, abs=0.01)


def test_progress_bars_show_each_stage_and_restart_for_each_generation(capsys) -> None:
    bars = ProgressBars()
    for done in range(3):
        bars("generating: sampling", done, 2)  # one generation's steps
    bars("generating: sampling", 1, 4)  # the next one's
    bars("generating", 0, 2)
    bars("generating", 2, 2)
    assert list(bars._bars) == ["generating: sampling"]  # "generating" ended
    restarted = bars._bars["generating: sampling"]
    assert (restarted.n, restarted.total) == (1, 4)
    bars.close()
    assert bars._bars == {}
    err = capsys.readouterr().err
    assert "generating: sampling" in err and "generating: 100%" in err and "2/2" in err


def test_every_evaluate_option_has_help() -> None:
    parser = argparse.ArgumentParser(prog="longplay")
    sub = parser.add_subparsers()
    evaluate_cli.add_parser(sub)
    actions = sub.choices["evaluate"]._actions
    assert [a.dest for a in actions if not a.help] == []
    args = parser.parse_args(["evaluate", "--prompts", "p.jsonl", "-o", "out"])
    assert args.metrics == DEFAULT_METRICS and "timing" not in args.metrics
