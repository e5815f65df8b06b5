"""scripts/demo_figures.py end to end on the tiny fixture model, a tiny CLAP and a tiny
corpus: the docs pages, their assets and links, and a resumed second run."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import SAO1_TINY, load_script
from longplay.audio import load_audio, save_audio

SR = 44100


def load_demo_figures():
    return load_script("scripts/demo_figures.py")


TRACKS = {
    "t000": {"title": "Reel in D", "composer": None, "genre": "folk", "style": "Irish reel",
             "instruments": ["fiddle", "guitar"], "bpm": 110, "key": "D major", "meter": "4/4"},
    "t001": {"title": "Chorale", "composer": "J. S. Bach", "genre": "classical",
             "style": "baroque chorale", "instruments": ["strings"], "bpm": 72.0,
             "key": "G minor", "meter": "4/4"},
    "t002": {"title": "Shuffle", "composer": "", "genre": "jazz", "style": "swing",
             "instruments": ["piano", "double bass", "drum kit"], "bpm": 160, "key": None,
             "meter": "4/4"},
}


@pytest.fixture
def corpus(tmp_path) -> Path:
    """A corpus folder as ``longplay data build-corpus`` writes it, held-out split only:
    test/<id>.flac (2 s, stereo, 44.1 kHz) with its metadata sidecar."""
    test = tmp_path / "corpus" / "test"
    test.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    t = torch.arange(2 * SR) / SR
    for i, (track, fields) in enumerate(TRACKS.items()):
        tone = 0.3 * torch.sin(2 * math.pi * 110 * (i + 2) * t)
        audio = torch.stack([tone, tone]) + 0.02 * torch.randn(2, t.numel(), generator=g)
        save_audio(test / f"{track}.flac", audio, SR)
        metadata = {**fields, "duration_s": 2.0, "num_samples": t.numel(), "sample_rate": SR,
                    "split": "test", "id": track, "licence": "CC0-1.0", "seed": i}
        (test / f"{track}.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return test.parent


def run_script(module, argv: list[str]) -> int:
    return module.main([str(a) for a in argv])


def image_links(markdown: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)


@pytest.mark.slow
def test_demo_figures_end_to_end_and_resumes(tmp_path, corpus, clap_folder) -> None:
    module = load_demo_figures()
    docs, work = tmp_path / "docs", tmp_path / "work"
    argv = ["--corpus", corpus, "--model", SAO1_TINY, "--clap", clap_folder, "--out", docs,
            "--work", work, "--steps", 2, "--per-prompt", 2, "--text-duration", 1,
            "--timing-durations", "1,2,285"]
    assert run_script(module, argv) == 0

    # The committed prompt set: every held-out track, --per-prompt times, ids <track>_<k>.
    rows = [json.loads(line) for line in
            (docs / "evaluation" / "prompts.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"{t}_{k}" for t in TRACKS for k in range(2)]
    assert all(r["duration_s"] == 1.0 for r in rows)
    assert rows[0]["prompt"] == "Reel in D, folk, Irish reel, fiddle, guitar, 110 BPM, " \
                                "D major, 4/4"
    assert rows[2]["prompt"].startswith("Chorale, J. S. Bach, classical")

    # Examples: every one clamped to the model's window, with its PNG and Ogg excerpt.
    results = json.loads((docs / "demo" / "results.json").read_text())
    window_s = results["window_s"]
    assert 2.5 < window_s < 3.5  # the fixture model's window
    assert [e["name"] for e in results["examples"]] == [e.name for e in module.EXAMPLES]
    for example, row in zip(module.EXAMPLES, results["examples"], strict=True):
        assert row["requested_s"] == example.duration_s
        # Clipped to the longest tenth of a second that the window holds.
        assert row["duration_s"] == min(example.duration_s, math.floor(window_s * 10) / 10)
        assert (docs / "demo" / f"{row['name']}.png").stat().st_size > 0
        ogg = load_audio(docs / "demo" / f"{row['name']}.ogg")
        assert ogg.audio.shape[-1] == pytest.approx(row["duration_s"] * SR, abs=2)
        # written as `longplay generate` writes: peak-normalised to -1 dBFS (Vorbis lowers
        # the peaks of the fixture's noise-like output; its raw peak is above 2)
        assert 0.5 < float(ogg.audio.abs().max()) < 1.0
    assert {p.name for p in (docs / "demo").glob("*.ogg")} == \
        {f"{e.name}.ogg" for e in module.EXAMPLES}

    # The evaluation: generated and real CLAP scores, FD, VAE, timing, structure.
    gen, real = results["generated"], results["real"]
    assert gen["autoencoder"]["items"] == len(TRACKS)
    assert gen["fd_clap"]["value"] >= 0
    assert -1 <= gen["clap"]["vs_prompts"] <= 1 and gen["clap"]["vs_other_prompts"] is not None
    assert -1 <= real["clap"]["vs_prompts"] <= 1 and real["clap"]["vs_other_prompts"] is not None
    timing = gen["timing"]["items"]
    assert [r["duration_s"] for r in timing][:2] == [1.0, 2.0]
    assert timing[2]["duration_s"] < window_s  # 285 s is clipped to the window
    assert results["timing_durations"] == [1.0, 2.0, 285.0]

    demo = (docs / "demo.md").read_text()
    evaluation = (docs / "evaluation.md").read_text()
    assert "| paper (Stable Audio 2.0 VAE, 156M) | 1.19 | 0.71 | 7.14 |" in demo
    vae_row = next(line for line in demo.splitlines() if line.startswith("| demo VAE ("))
    assert "n/a" not in vae_row and len(vae_row.split("|")) == 6
    assert re.search(r"^\| generated \| 6 \| -?\d\.\d{3} \| -?\d\.\d{3} \| -?\d\.\d{3} \|$",
                     demo, re.M)
    assert re.search(r"^\| real held-out tracks \| 3 \| -?\d\.\d{3} \| -?\d\.\d{3} \| "
                     r"-?\d\.\d{3} \|$", demo, re.M)
    for row in timing:
        assert f"| {row['duration_s']:g} s |" in demo
    for name in ("285", "4m45s"):
        assert name not in demo.split("## Timing adherence")[1].split("## How")[0]
    for row in results["examples"]:
        asked = f" (asked {row['requested_s']:g} s)" if row["requested_s"] > window_s else ""
        assert f"| {row['name']} | {row['prompt']} | {row['duration_s']:g} s{asked} |" in demo

    # Every image and audio link of both pages points to a file next to them.
    links = image_links(demo) + image_links(evaluation)
    links += re.findall(r"\]\((demo/[^)]+\.ogg)\)", demo)
    assert len(image_links(demo)) == len(module.EXAMPLES)
    for link in links:
        assert (docs / link).is_file(), link
    timing_pngs = sorted((docs / "evaluation" / "timing").glob("*.png"))
    structure_pngs = sorted((docs / "evaluation" / "structure").glob("*.png"))
    assert len(timing_pngs) == 3 and structure_pngs
    assert {f"evaluation/timing/{p.name}" for p in timing_pngs} <= set(links)
    assert {f"evaluation/structure/{p.name}" for p in structure_pngs} <= set(links)
    assert any("generated_" in link for link in links)
    assert any("reference_" in link for link in links)
    assert "# Evaluation of the bundled demo model" in evaluation
    assert "--steps 2" in evaluation
    # Without --compare: one model, its fidelity checks and pitched frames, no comparison.
    assert "previous" not in results and "previous" not in demo
    assert "## Current and previous model" not in evaluation
    fidelity_row = next(line for line in demo.splitlines() if line.startswith("| demo VAE |"))
    assert f"| {module._f(gen['autoencoder']['chroma_correlation'], 3)} |" in fidelity_row
    pitch = gen["pitch"]
    assert pitch["items"] == 6 and real["pitch"]["items"] == 3
    assert real["pitch"]["mean_pitched_share"] > 0.9  # the fixture's tracks are steady tones
    assert (f"| generated | 6 | {pitch['silent_items']} | "
            f"{module._percent(pitch['mean_sounding_share'])} | "
            f"{module._percent(pitch['mean_pitched_share'])} |") in demo
    assert "## Pitched content" in evaluation

    # A second run keeps the examples and resumes the evaluation: nothing is regenerated.
    audio = sorted((work / "generated" / "audio").glob("*.wav"))
    timing_wavs = sorted((work / "generated" / "timing").glob("*.wav"))
    assert len(audio) == 6 and len(timing_wavs) == 3
    stamps = {p: p.stat().st_mtime_ns for p in
              [*audio, *timing_wavs, *(docs / "demo").glob("*.ogg")]}
    assert run_script(module, [*argv, "--skip-examples"]) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    again = json.loads((docs / "demo" / "results.json").read_text())
    assert again["examples"] == results["examples"]
    assert again["generated"]["clap"] == results["generated"]["clap"]
    assert (docs / "demo.md").read_text() == demo


def previous_model(folder: Path) -> Path:
    """A copy of the fixture model whose VAE decoder plays 12 dB quieter: another model
    whose scores differ from the fixture's."""
    shutil.copytree(SAO1_TINY, folder)
    weights = load_file(str(folder / "model.safetensors"))
    last = max(int(key.split(".")[4]) for key in weights
               if key.startswith("pretransform.model.decoder.layers."))
    weights[f"pretransform.model.decoder.layers.{last}.weight_g"] *= 0.25
    save_file(weights, str(folder / "model.safetensors"))
    return folder


@pytest.mark.slow
def test_demo_figures_compare_shows_both_models(tmp_path, corpus, clap_folder,
                                               capsys) -> None:
    module = load_demo_figures()
    docs, work = tmp_path / "docs", tmp_path / "work"
    old = previous_model(tmp_path / "old-demo")
    argv = ["--corpus", corpus, "--model", SAO1_TINY, "--clap", clap_folder, "--out", docs,
            "--work", work, "--steps", 2, "--per-prompt", 1, "--text-duration", 1,
            "--timing-durations", "1,2", "--compare", old, "--compare-name",
            "the demo model before the new VAE"]
    assert run_script(module, argv) == 0
    results = json.loads((docs / "demo" / "results.json").read_text())
    now, before = results, results["previous"]
    assert (before["name"], before["folder"]) == ("the demo model before the new VAE", "old-demo")
    assert [e["name"] for e in before["examples"]] == [e.name for e in module.EXAMPLES]
    gen, old_gen = now["generated"], before["generated"]
    assert old_gen["autoencoder"]["items"] == gen["autoencoder"]["items"] == len(TRACKS)
    assert old_gen["autoencoder"]["stft_distance"] != gen["autoencoder"]["stft_distance"]
    assert old_gen["pitch"]["items"] == 3
    assert [r["duration_s"] for r in old_gen["timing"]["items"]] == [1.0, 2.0]

    demo = (docs / "demo.md").read_text()
    evaluation = (docs / "evaluation.md").read_text()
    # Both pages say which is which.
    which = ("**current**: the model in `sao1_tiny`; **previous**: the demo model before the "
             "new VAE (model folder `old-demo`)")
    assert which in demo and which in evaluation
    # demo.md: a row of each model in every table, with that model's numbers.
    f = module._f
    for label, metrics in (("current", gen), ("previous", old_gen)):
        vae, clap, pitch = metrics["autoencoder"], metrics["clap"], metrics["pitch"]
        vae_row = next(line for line in demo.splitlines()
                       if line.startswith(f"| demo VAE, {label} ("))
        assert vae_row.endswith(f"| {f(vae['stft_distance'])} | {f(vae['mel_distance'])} | "
                                f"{f(vae['si_sdr'])} |")
        assert (f"| demo VAE, {label} | {module._e(vae['dc_offset'])} "
                f"({module._e(vae['reference_dc_offset'])}) |") in demo
        assert (f"| generated, {label} | 3 | {f(clap['vs_prompts'], 3)} | "
                f"{f(clap['vs_other_prompts'], 3)} | "
                f"{f(clap['vs_prompts'] - clap['vs_other_prompts'], 3)} |") in demo
        assert (f"| generated, {label} | 3 | {pitch['silent_items']} | "
                f"{module._percent(pitch['mean_sounding_share'])} | "
                f"{module._percent(pitch['mean_pitched_share'])} |") in demo
        for row in metrics["timing"]["items"]:
            assert (f"| {row['duration_s']:g} s | {label} | {f(row['content_db'], 1)} | "
                    f"{f(row['tail_db'], 1)} | {f(row['relative_db'], 1)} |") in demo
    # Per prompt: both models' pitched frames beside the real track's, matched by prompt.
    real_rows = now["real"]["pitch"]["prompts"]
    assert real_rows
    for real_row in real_rows:
        by_model = [next(r for r in m["pitch"]["prompts"] if r["prompt"] == real_row["prompt"])
                    for m in (gen, old_gen)]
        assert (f"| {real_row['prompt']} | "
                + " | ".join(module._percent(r["mean_pitched_share"]) for r in by_model)
                + f" | {module._percent(real_row['mean_pitched_share'])} |") in demo
    assert "| prompt | generated, current (%) | generated, previous (%) | real track (%) |" in demo
    # The examples of both, side by side.
    for example in module.EXAMPLES:
        assert (f"![previous {example.name}](demo/previous/{example.name}.png) | "
                f"[{example.name}.ogg](demo/previous/{example.name}.ogg) |") in demo
    # evaluation.md: the measures of both in one table, the timing spectrograms of both.
    section = evaluation.split("## Current and previous model")[1].split("\n## ")[0]
    old_vae = old_gen["autoencoder"]
    assert (f"| VAE STFT distance | {f(gen['autoencoder']['stft_distance'])} | "
            f"{f(old_vae['stft_distance'])} |") in section
    assert (f"| timing: relative level at 2 s (dB) | "
            f"{f(gen['timing']['items'][1]['relative_db'], 1)} | "
            f"{f(old_gen['timing']['items'][1]['relative_db'], 1)} |") in section
    assert "| VAE pitch agreement (%) |" in section and "| CLAP difference" in section
    assert "evaluation/previous/timing/2.png" in image_links(section)
    assert any(link.startswith("evaluation/previous/structure/generated_")
               for link in image_links(evaluation))
    for link in image_links(demo) + image_links(evaluation):
        assert (docs / link).is_file(), link
    assert len(image_links(demo)) == 2 * len(module.EXAMPLES)

    # A second run keeps both models' examples and both evaluations.
    oggs = sorted((docs / "demo").rglob("*.ogg"))
    stamps = {p: p.stat().st_mtime_ns for p in
              [*oggs, *(work / "previous" / "audio").glob("*.wav")]}
    assert len(oggs) == 2 * len(module.EXAMPLES)
    assert run_script(module, [*argv, "--skip-examples"]) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert (docs / "demo.md").read_text() == demo
    # Without --skip-examples the current model's examples are made again (the same seeds
    # give the same audio, so their Ogg files keep their bytes), the previous model's are
    # kept (it does not change).
    previous_oggs = {p: p.stat().st_mtime_ns for p in (docs / "demo" / "previous").glob("*.ogg")}
    current_oggs = {p: p.read_bytes() for p in (docs / "demo").glob("*.ogg")}
    capsys.readouterr()
    assert run_script(module, argv) == 0
    made = capsys.readouterr().out
    assert all(f"example {example.name}:" in made for example in module.EXAMPLES)
    assert {p: p.stat().st_mtime_ns for p in previous_oggs} == previous_oggs
    assert {p: p.read_bytes() for p in current_oggs} == current_oggs


def test_compare_options_are_checked(tmp_path, corpus) -> None:
    module = load_demo_figures()
    with pytest.raises(SystemExit, match="not a model folder"):
        module.main(["--corpus", str(corpus), "--out", str(tmp_path / "docs"),
                     "--compare", str(tmp_path)])
    with pytest.raises(SystemExit):
        module.parse_args(["--corpus", "c", "--compare-name", "old"])
    args = module.parse_args(["--corpus", "c", "--compare", "old", "--compare-name", "v1"])
    assert (args.compare, args.compare_name) == (Path("old"), "v1")


def test_demo_figures_needs_a_corpus_test_split(tmp_path) -> None:
    module = load_demo_figures()
    with pytest.raises(SystemExit, match="does not exist"):
        module.main(["--corpus", str(tmp_path), "--out", str(tmp_path / "docs")])


def test_timing_durations_option() -> None:
    module = load_demo_figures()
    args = module.parse_args(["--corpus", "c", "--timing-durations", "10, 60,285"])
    assert args.timing_durations == (10.0, 60.0, 285.0)
    assert module.parse_args(["--corpus", "c"]).timing_durations == (10.0, 60.0, 285.0)
    with pytest.raises(SystemExit):
        module.parse_args(["--corpus", "c", "--timing-durations", "ten"])


def test_durations_beyond_the_window_are_shortened() -> None:
    module = load_demo_figures()
    assert module.fitting_duration(20.0, 2.972) == 2.9
    assert module.fitting_duration(2.0, 2.972) == 2.0
    assert module.fitting_duration(285.0, 6144 * 2048 / 44100) == 285.0  # the demo window
    assert module._minutes(6144 * 2048 / 44100) == "4m45s"
    assert module._minutes(2.972) == "2.97 s"


def test_an_unchanged_excerpt_keeps_its_file(tmp_path) -> None:
    """Ogg streams carry a random serial number: the same audio written again would be
    other bytes, so the script keeps the existing file; other audio replaces it."""
    script = load_demo_figures()
    torch.manual_seed(0)
    audio = (torch.rand(2, SR // 4) - 0.5) * 0.5  # within [-1, 1]: nothing clipped
    path = tmp_path / "piano.ogg"
    script.save_excerpt(path, audio, SR)
    first = path.read_bytes()
    script.save_excerpt(path, audio, SR)
    assert path.read_bytes() == first
    script.save_excerpt(path, 0.5 * audio, SR)
    assert path.read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["piano.ogg"]  # no temporaries
