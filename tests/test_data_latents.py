"""Pre-encoded latents: encode_folder shards/index/resume, LatentDataset crops and timing."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from conftest import SAO1_TINY
from longplay.audio import load_audio
from longplay.autoencoder import AudioVAE
from longplay.checkpoints import load_vae
from longplay.checkpoints.files import read_safetensors_metadata
from longplay.data import (
    LatentDataset,
    collate_latents,
    encode_folder,
    read_latent_index,
)

RATE = 44100
DURATIONS = {"a.wav": 0.4, "b.wav": 3.2, "c.wav": 0.7, "d/e.wav": 1.0, "f.wav": 0.5}


@pytest.fixture(scope="module")
def vae() -> AudioVAE:
    return load_vae(SAO1_TINY)


def make_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for name, seconds in DURATIONS.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        audio = 0.3 * rng.standard_normal((round(seconds * RATE), 2)).astype(np.float32)
        sf.write(str(path), audio, RATE, subtype="FLOAT")
    (root / "a.json").write_text(json.dumps({"caption": "a caption"}))
    (root / "d" / "e.txt").write_text("e caption")
    return root


@pytest.fixture(scope="module")
def encoded(vae: AudioVAE, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("encoded")
    root = make_folder(base / "music")
    out = base / "latents"
    encode_folder(vae, root, out, shard_size=2, seed=0)
    return out


def latents_by_path(out: Path) -> dict[str, torch.Tensor]:
    entries = read_latent_index(out)
    tensors = {}
    for entry in entries:
        tensors[entry.path] = load_file(str(out / entry.shard))[entry.item_id]
    return tensors


def test_encode_writes_shards_and_an_index_of_posterior_samples(vae: AudioVAE,
                                                                encoded: Path) -> None:
    assert sorted(p.name for p in encoded.iterdir()) == [
        "index.jsonl", "latents-00000.safetensors", "latents-00001.safetensors",
        "latents-00002.safetensors"]
    lines = [json.loads(line) for line in (encoded / "index.jsonl").read_text().splitlines()]
    assert [line["path"] for line in lines] == ["a.wav", "b.wav", "c.wav", "d/e.wav", "f.wav"]
    assert [line["id"] for line in lines] == [f"{i:08d}" for i in range(5)]
    assert [line["shard"] for line in lines] == [
        "latents-00000.safetensors"] * 2 + ["latents-00001.safetensors"] * 2 + [
        "latents-00002.safetensors"]
    assert lines[0]["metadata"] == {"caption": "a caption"}
    assert lines[3]["metadata"] == {"caption": "e caption"}
    header = read_safetensors_metadata(encoded / "latents-00001.safetensors")
    assert header["format"] == "longplay-latents" and header["hop_length"] == "2048"
    assert [item["path"] for item in json.loads(header["items"])] == ["c.wav", "d/e.wav"]
    standardized = []
    for line in lines:
        num_samples = round(DURATIONS[line["path"]] * RATE)
        assert line["num_samples"] == num_samples and line["sample_rate"] == RATE
        assert line["frames"] == math.ceil(num_samples / 2048)
        assert line["duration_s"] == pytest.approx(DURATIONS[line["path"]])
        z = load_file(str(encoded / line["shard"]))[line["id"]]
        assert z.shape == (vae.latent_dim, line["frames"]) and z.dtype == torch.float32
        audio = load_audio(encoded.parent / "music" / line["path"]).audio
        with torch.inference_mode():
            posterior = vae.encode(audio[None])
        standardized.append(((z - posterior.mean[0]) / posterior.std[0]).flatten())
    noise = torch.cat(standardized)  # a posterior sample: standard normal around the mean
    assert abs(float(noise.mean())) < 0.15 and 0.85 < float(noise.std()) < 1.15


def test_latents_depend_on_seed_and_path_only(vae: AudioVAE, encoded: Path,
                                              tmp_path: Path) -> None:
    root = make_folder(tmp_path / "music")
    (root / "a.wav").unlink()  # other files do not change a file's sample
    encode_folder(vae, root, tmp_path / "same", shard_size=3, seed=0)
    encode_folder(vae, root, tmp_path / "other", shard_size=3, seed=1)
    reference = latents_by_path(encoded)
    same = latents_by_path(tmp_path / "same")
    other = latents_by_path(tmp_path / "other")
    assert set(same) == set(reference) - {"a.wav"}
    assert all(torch.equal(same[p], reference[p]) for p in same)
    assert not any(torch.equal(other[p], reference[p]) for p in other)


def test_a_second_run_skips_everything(vae: AudioVAE, tmp_path: Path) -> None:
    root = make_folder(tmp_path / "music")
    out = tmp_path / "latents"
    first = encode_folder(vae, root, out, shard_size=2)
    index = (out / "index.jsonl").read_bytes()
    second = encode_folder(vae, root, out, shard_size=2)
    assert (first.num_encoded, first.num_already_encoded) == (5, 0)
    assert (second.num_encoded, second.num_already_encoded) == (0, 5)
    assert second.shards_written == ()
    assert (out / "index.jsonl").read_bytes() == index
    with pytest.raises(ValueError, match="seed"):
        encode_folder(vae, root, out, shard_size=2, seed=7)


def test_an_interrupted_run_resumes_without_duplicates(vae: AudioVAE, encoded: Path,
                                                       tmp_path: Path) -> None:
    root = make_folder(tmp_path / "music")
    out = tmp_path / "latents"

    def crash(done: int, total: int) -> None:
        if done == 3:  # the first shard (2 files) is written, the third file is pending
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        encode_folder(vae, root, out, shard_size=2, progress=crash)
    assert [e.path for e in read_latent_index(out)] == ["a.wav", "b.wav"]
    calls = []
    summary = encode_folder(vae, root, out, shard_size=2,
                            progress=lambda done, total: calls.append((done, total)))
    assert (summary.num_encoded, summary.num_already_encoded) == (3, 2)
    assert calls[-1] == (3, 3)
    entries = read_latent_index(out)
    assert [e.path for e in entries] == ["a.wav", "b.wav", "c.wav", "d/e.wav", "f.wav"]
    assert len({e.item_id for e in entries}) == 5
    resumed, reference = latents_by_path(out), latents_by_path(encoded)
    assert all(torch.equal(resumed[p], reference[p]) for p in reference)


def test_a_cut_index_append_is_repaired_and_its_shard_redone(vae: AudioVAE, tmp_path: Path,
                                                             caplog) -> None:
    root = make_folder(tmp_path / "music")
    out = tmp_path / "latents"
    encode_folder(vae, root, out, shard_size=2)
    index = out / "index.jsonl"
    lines = index.read_text().splitlines(keepends=True)
    # A crash while appending the second shard's lines: one whole line and half of the next.
    index.write_text("".join(lines[:3]) + lines[3][:20])
    with caplog.at_level(logging.WARNING, logger="longplay.data"):
        assert [e.path for e in read_latent_index(out)] == ["a.wav", "b.wav"]
        assert "interrupted" in caplog.text
        dataset = LatentDataset(out, num_frames=4)
        assert len(dataset) == 2
        summary = encode_folder(vae, root, out, shard_size=2)
    assert summary.num_encoded == 3 and summary.num_already_encoded == 2
    assert [json.loads(line)["path"] for line in index.read_text().splitlines()] == [
        "a.wav", "b.wav", "c.wav", "d/e.wav", "f.wav"]


def test_bad_files_are_skipped_and_counted(vae: AudioVAE, tmp_path: Path, caplog) -> None:
    root = make_folder(tmp_path / "music")
    (root / "notes.wav").write_text("not audio")
    sf.write(str(root / "silent.wav"), np.zeros((RATE // 2, 2), np.float32), RATE)
    with caplog.at_level(logging.WARNING, logger="longplay.data"):
        summary = encode_folder(vae, root, tmp_path / "latents")
    assert summary.num_encoded == 5 and summary.num_skipped == 2
    assert summary.reasons == {"unreadable": 1, "silent": 1}
    assert "notes.wav" in caplog.text and "silent.wav" in caplog.text


def test_out_of_range_files_are_skipped_and_the_folder_goes_on(vae: AudioVAE, tmp_path: Path,
                                                               caplog) -> None:
    """A 1 Hz header, nine channels or a file beyond max_duration_s skip that file only
    (a 1 Hz file used to be resampled, a large one until memory ran out); a file name
    that is not UTF-8 is encoded, indexed and found again by the next run."""
    root = make_folder(tmp_path / "music")
    sf.write(str(root / "one_hertz.wav"), np.full((3, 2), 0.1, np.float32), 1)
    sf.write(str(root / "nine.wav"), np.full((RATE // 4, 9), 0.1, np.float32), RATE)
    odd = os.fsencode(root) + b"/caf\xe9.wav"
    sf.write(odd, 0.3 * np.random.default_rng(1).standard_normal((RATE // 2, 2)), RATE)
    out = tmp_path / "latents"
    with caplog.at_level(logging.WARNING, logger="longplay.data"):
        summary = encode_folder(vae, root, out, max_duration_s=3.0)
    assert summary.reasons == {"out of range": 3} and summary.num_skipped == 3
    for name, value in (("one_hertz.wav", "1 Hz"), ("nine.wav", "9 channels"),
                        ("b.wav", "3.2 s")):
        assert name in caplog.text and value in caplog.text, name
    paths = [e.path for e in read_latent_index(out)]
    assert len(paths) == 5 and os.fsdecode(b"caf\xe9.wav") in paths and "b.wav" not in paths
    assert len(LatentDataset(out, num_frames=4)) == 5
    again = encode_folder(vae, root, out, max_duration_s=3.0)
    assert again.num_encoded == 0 and again.num_already_encoded == 5
    with pytest.raises(ValueError, match="max_duration_s"):
        encode_folder(vae, root, out, max_duration_s=0)


def test_latent_windows_keep_timing_consistent_with_the_crop(vae: AudioVAE,
                                                             encoded: Path) -> None:
    dataset = LatentDataset(encoded, num_frames=10, seed=1, latent_rate=44100 / 2048)
    assert dataset.latent_rate == 44100 / 2048 and len(dataset) == 5
    full = latents_by_path(encoded)["b.wav"]  # 3.2 s: 69 frames
    index = [e.path for e in dataset.entries].index("b.wav")
    starts = set()
    for position in range(30):
        ex = dataset.example(index, position)
        assert ex.latents.shape == (vae.latent_dim, 10) and ex.num_valid_frames == 10
        offsets = [o for o in range(full.shape[-1] - 9) if torch.equal(full[:, o:o + 10],
                                                                         ex.latents)]
        assert len(offsets) == 1
        assert ex.seconds_start == math.floor(offsets[0] * 2048 / 44100)
        assert ex.seconds_total == 4.0 and ex.path == "b.wav"
        starts.add(ex.seconds_start)
    assert starts == {0.0, 1.0, 2.0}


def test_latent_windows_pad_past_the_end_with_silence_and_batch(vae: AudioVAE,
                                                               encoded: Path) -> None:
    dataset = LatentDataset(encoded, num_frames=40, seed=0)
    short = dataset[0]  # a.wav: 0.4 s, 9 frames
    assert short.num_valid_frames == 9 and short.seconds_start == 0.0
    assert short.seconds_total == 1.0 and short.prompt == "a caption"
    # Past the end: the VAE's latent of digital silence (not zeros, which decode to
    # whatever the decoder's biases make of them), recorded when the folder was encoded.
    silence = vae.silence_latent()
    assert torch.count_nonzero(silence) > 0
    torch.testing.assert_close(short.latents[:, 9:], silence[:, None].expand(-1, 31))
    assert torch.count_nonzero(short.latents[:, :9]) > 0
    again = LatentDataset(encoded, num_frames=40, seed=0)
    assert all(torch.equal(again.example(i, 11).latents, dataset.example(i, 11).latents)
               for i in range(5))
    batch = collate_latents([dataset[i] for i in range(5)])
    assert batch.latents.shape == (5, 8, 40)
    assert batch.num_valid_frames.tolist() == [9, 40, 16, 22, 11]
    assert batch.seconds_total.tolist() == [1.0, 4.0, 1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="latent_rate"):
        LatentDataset(encoded, num_frames=4, latent_rate=21.0)


def test_short_crops_end_in_silence_where_seconds_total_says(vae: AudioVAE,
                                                             encoded: Path) -> None:
    rate = 44100 / 2048
    full = latents_by_path(encoded)["b.wav"]  # 3.2 s: 69 frames
    silence = vae.silence_latent()
    dataset = LatentDataset(encoded, num_frames=60, seed=1, latent_rate=rate,
                            short_crop_probability=0.5)
    index = [e.path for e in dataset.entries].index("b.wav")
    kinds, lengths = set(), set()
    for position in range(40):
        ex = dataset.example(index, position)
        assert ex.latents.shape == (vae.latent_dim, 60)
        if ex.num_valid_frames == 60:  # a plain crop, timed as the whole piece
            kinds.add("plain")
            assert ex.seconds_total == 4.0
            continue
        kinds.add("short")
        seconds = int(ex.seconds_total)
        lengths.add(seconds)
        # The window holds 2 whole seconds: S is 1 or 2, its frames a crop of the piece,
        # then silence, timed as a piece of S seconds that starts at 0.
        assert seconds in (1, 2) and ex.seconds_start == 0.0
        n = round(seconds * rate)
        assert ex.num_valid_frames == n
        assert any(torch.equal(full[:, o:o + n], ex.latents[:, :n])
                   for o in range(full.shape[-1] - n + 1))
        torch.testing.assert_close(ex.latents[:, n:], silence[:, None].expand(-1, 60 - n))
    assert kinds == {"plain", "short"} and lengths == {1, 2}
    # A crop that holds no whole second stays as it is (a.wav: 0.4 s).
    always = LatentDataset(encoded, num_frames=60, seed=1, short_crop_probability=1.0)
    a = always.example([e.path for e in always.entries].index("a.wav"), 0)
    assert a.num_valid_frames == 9 and a.seconds_total == 1.0
    # Off (the default), the windows are those of a dataset without the option.
    off = LatentDataset(encoded, num_frames=60, seed=1, short_crop_probability=0.0)
    plain = LatentDataset(encoded, num_frames=60, seed=1)
    assert all(torch.equal(off.example(i, 3).latents, plain.example(i, 3).latents)
               for i in range(5))
    with pytest.raises(ValueError, match="short_crop_probability"):
        LatentDataset(encoded, num_frames=60, short_crop_probability=1.5)


def test_log_uniform_short_pieces_are_as_many_per_octave(encoded: Path) -> None:
    # The draw alone, for a window of 285 whole seconds and crops that long.
    rate = 44100 / 2048
    window = round(285 * rate) + 1
    shares = {}
    for lengths in ("uniform", "log-uniform"):
        dataset = LatentDataset(encoded, num_frames=60, seed=0, latent_rate=rate,
                                short_crop_probability=1.0, short_crop_lengths=lengths)
        g = torch.Generator().manual_seed(4)
        drawn = [dataset._short_piece_seconds(g, window, window) for _ in range(4000)]
        assert all(1 <= s <= 285 for s in drawn)
        shares[lengths] = sum(s <= 10 for s in drawn) / len(drawn)
        if lengths == "log-uniform":  # each octave of length about as often as the next
            octaves = [sum(lo <= s < 2 * lo for s in drawn) for lo in (4, 8, 16, 32, 64)]
            assert max(octaves) < 1.25 * min(octaves)
    # P(S <= 10): 10 / 285 uniform; ln(11) / ln(286) log-uniform
    assert abs(shares["uniform"] - 10 / 285) < 0.015
    assert abs(shares["log-uniform"] - math.log(11) / math.log(286)) < 0.03
    # One draw either way, so the prompt drawn after it is the same.
    plain = LatentDataset(encoded, num_frames=60, seed=1, short_crop_probability=0.5)
    log = LatentDataset(encoded, num_frames=60, seed=1, short_crop_probability=0.5,
                        short_crop_lengths="log-uniform")
    assert [plain.example(i, i).prompt for i in range(5)] == [
        log.example(i, i).prompt for i in range(5)]
    with pytest.raises(ValueError, match=r"short_crop_lengths .* must be one of uniform, "
                                         r"log-uniform"):
        LatentDataset(encoded, num_frames=60, short_crop_lengths="exponential")
    with pytest.raises(ValueError, match="short_crop_probability is 0"):
        LatentDataset(encoded, num_frames=60, short_crop_lengths="log-uniform")


def test_the_silence_latent_is_what_silence_encodes_to(vae: AudioVAE) -> None:
    with torch.inference_mode():
        posterior = vae.encode(torch.zeros(1, 2, 64 * vae.hop_length), chunk_frames=None)
    interior = posterior.mean[0, :, 20:44]  # [D, 24], away from the edges
    torch.testing.assert_close(interior, vae.silence_latent()[:, None].expand_as(interior),
                               atol=1e-5, rtol=1e-4)


def test_folders_without_a_silence_latent_pad_with_zeros_and_a_bad_one_is_named(
        encoded: Path, tmp_path: Path) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    from longplay.checkpoints.files import read_safetensors_metadata

    def rewrite(folder: Path, silence: str | None) -> None:
        for shard in sorted(folder.glob("latents-*.safetensors")):
            meta = read_safetensors_metadata(shard)
            meta.pop("silence", None)
            if silence is not None:
                meta["silence"] = silence
            save_file(load_file(str(shard)), str(shard), metadata=meta)

    old = tmp_path / "old"
    shutil.copytree(encoded, old)
    rewrite(old, None)
    short = LatentDataset(old, num_frames=40, seed=0)[0]
    assert torch.count_nonzero(short.latents[:, 9:]) == 0
    rewrite(old, "[1.0, 2.0]")
    with pytest.raises(ValueError, match=r"silence latent.*encode it again"):
        LatentDataset(old, num_frames=40, seed=0)


def test_window_lengths_vary_per_group_among_multiples(vae: AudioVAE, encoded: Path) -> None:
    silence = vae.silence_latent()
    dataset = LatentDataset(encoded, num_frames=64, seed=2, min_frames=16, group_size=4,
                            frame_multiple=16)
    assert dataset.lengths == (16, 32, 48, 64)
    lengths = [dataset.window_frames(p) for p in range(64)]
    # one length per group of 4 consecutive positions (a micro-batch), every one drawn
    assert all(len(set(lengths[g:g + 4])) == 1 for g in range(0, 64, 4))
    assert set(lengths) == {16, 32, 48, 64}
    for position in (0, 5, 9, 14):
        frames = dataset.window_frames(position)
        batch = collate_latents([dataset.example(i, position - position % 4 + k)
                                 for k, i in enumerate(range(4))])
        assert batch.latents.shape == (4, vae.latent_dim, frames)
        ex = dataset.example(1, position)  # b.wav, 69 frames: padded only past its end
        assert ex.latents.shape[-1] == frames
        torch.testing.assert_close(ex.latents[:, ex.num_valid_frames:],
                                   silence[:, None].expand(-1, frames - ex.num_valid_frames))
    # short pieces fit the drawn window: S at most its whole seconds; a window that holds
    # no whole second (16 frames) stays a plain crop timed as the piece (b.wav: 4 s)
    short = LatentDataset(encoded, num_frames=64, seed=2, min_frames=16, group_size=4,
                          frame_multiple=16, short_crop_probability=1.0)
    seen = set()
    for position in range(64):
        ex = short.example(1, position)
        whole = int(short.window_frames(position) / short.latent_rate)
        seen.add(whole)
        if whole == 0:
            assert ex.seconds_total == 4.0
        else:
            assert ex.seconds_start == 0.0 and 1 <= ex.seconds_total <= whole
    assert seen == {0, 1, 2}
    # without min_frames: the fixed window, and the examples of a dataset without it
    fixed = LatentDataset(encoded, num_frames=64, seed=2, group_size=4)
    assert {fixed.window_frames(p) for p in range(16)} == {64}
    with pytest.raises(ValueError, match="min_frames"):
        LatentDataset(encoded, num_frames=64, min_frames=65)
    with pytest.raises(ValueError, match="min_frames"):
        LatentDataset(encoded, num_frames=64, min_frames=0)
    # a share of the groups in the full window, the rest uniform among all the lengths
    weighted = LatentDataset(encoded, num_frames=64, seed=2, min_frames=16, group_size=4,
                             frame_multiple=16, full_window_share=0.5)
    drawn = [weighted.window_frames(4 * g) for g in range(800)]
    assert set(drawn) == {16, 32, 48, 64}
    assert 0.57 < drawn.count(64) / len(drawn) < 0.68  # 0.5 + 0.5 / 4
    assert 0.08 < drawn.count(16) / len(drawn) < 0.17  # 0.5 / 4
    for share, min_frames in ((1.5, 16), (0.5, None)):
        with pytest.raises(ValueError, match="window_full_share"):
            LatentDataset(encoded, num_frames=64, min_frames=min_frames,
                          full_window_share=share)
    # a window that is not a multiple is itself among the lengths (the longest fit window)
    assert LatentDataset(encoded, num_frames=40, min_frames=33, frame_multiple=64).lengths \
        == (40,)
    assert LatentDataset(encoded, num_frames=70, min_frames=20, frame_multiple=16).lengths \
        == (32, 48, 64, 70)
