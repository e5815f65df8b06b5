"""Beyond one window: inpainting, extension, long pieces in windows, sections and loops,
with the tiny random-weight model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import SAO1_TINY, SAOS_TINY
from longplay.diffusion import get_objective
from longplay.evaluation.joins import JoinMetric, join_scores
from longplay.pipelines import SettingsError, TextToMusicPipeline
from longplay.pipelines.windows import generate_frames, loop_duration_s, plan_windows

RATE = 44100
HOP = 2048
FAST = dict(num_inference_steps=3, sampler="dpmpp-2m", guidance_scale=3.0)


@pytest.fixture(scope="module")
def sao1() -> TextToMusicPipeline:
    return TextToMusicPipeline.from_pretrained(SAO1_TINY)


@pytest.fixture(scope="module")
def piece(sao1) -> torch.Tensor:
    """2 s of the model's own audio [2, S], the input to edit."""
    return sao1("a calm piano", duration_s=2.0, seed=1, **FAST).audio[0]


# -- planning --------------------------------------------------------------------------


def test_windows_cover_what_is_to_be_generated_with_context() -> None:
    generate = torch.zeros(100, dtype=torch.bool)
    generate[30:] = True  # keep 30 frames, generate 70
    windows = plan_windows(generate, 40, 10)
    # The last window ends with the piece, seeing more of what came before.
    assert [(w.start, w.end) for w in windows] == [(20, 60), (50, 90), (60, 100)]
    assert [w.first_generated for w in windows] == [30, 60, 90]
    assert int(windows[0].generate.sum()) == 30 and not bool(windows[0].generate[:10].any())
    assert int(windows[-1].generate.sum()) == 10  # the last 10 frames to make
    short = torch.zeros(30, dtype=torch.bool)
    short[20:] = True  # a piece shorter than the window: one window from 0
    (full,) = plan_windows(short, 40, 10)
    assert (full.start, full.end) == (0, 40) and bool(full.generate[30:].all())  # past: free
    (fit,) = plan_windows(short, 40, 10, quantum_frames=8)
    assert (fit.start, fit.end) == (0, 32)  # shortened to fit
    # A section boundary inside a window: its work stops there, the next window goes on
    # from it (the rest of the first window was generated freely).
    parts = plan_windows(torch.ones(30, dtype=torch.bool), 40, 10, boundaries=[12])
    assert [(w.start, w.end, w.first_generated) for w in parts] == [(0, 40, 0), (0, 40, 12)]
    assert int(parts[1].generate[:30].sum()) == 18
    assert plan_windows(torch.zeros(10, dtype=torch.bool), 8, 2) == []
    with pytest.raises(ValueError, match="shorter than the window"):
        plan_windows(generate, 40, 40)
    regions = generate_frames(100, [(0.5, 1.0)], 21.5)
    assert torch.nonzero(regions).flatten().tolist() == list(range(10, 22))
    assert loop_duration_s(120, 4) == 8.0 and loop_duration_s(90, 2, beats_per_bar=3) == 4.0
    with pytest.raises(ValueError, match="bars"):
        loop_duration_s(120, 0)


# -- inpainting ------------------------------------------------------------------------


def test_the_kept_region_is_preserved(sao1, piece) -> None:
    out = sao1.inpaint(piece, 0.8, 1.3, "a calm piano", seed=5, **FAST)
    s = out.settings
    assert s.inpaint_regions == ((0.8, 1.3),) and s.num_windows == 1 and s.has_inpaint_audio
    assert out.joins_s == (0.8, 1.3)
    with torch.inference_mode():
        known = sao1.model.vae.encode(piece[None]).mode()[0]
    edge = round(s.inpaint_edge_s * RATE / HOP)
    first, last = int(0.8 * RATE / HOP), -(-int(1.3 * RATE) // HOP)
    kept = torch.ones(out.latents.shape[-1], dtype=torch.bool)
    kept[first - edge:last + edge] = False
    kept[known.shape[-1]:] = False
    # Latents: exactly the known ones where the mask keeps them.
    assert torch.equal(out.latents[0][:, kept], known[:, kept[:known.shape[-1]]])
    assert not torch.allclose(out.latents[0, :, first:last], known[:, first:last], atol=1e-3)
    # Audio: the input's own samples outside the region and its soft edges (the crossfade
    # runs between frame centres: half a frame further).
    outside = torch.ones(piece.shape[-1], dtype=torch.bool)
    outside[(first - edge - 1) * HOP:(last + edge + 1) * HOP] = False
    assert torch.equal(out.audio[0][:, outside], piece[:, outside])
    assert not torch.allclose(out.audio[0, :, first * HOP:last * HOP],
                              piece[:, first * HOP:last * HOP], atol=1e-3)
    # Without splicing: the VAE's reconstruction of the input away from the edges (the
    # decoder sees about 9 frames each side).
    raw = sao1.inpaint(piece, 0.8, 1.3, "a calm piano", seed=5, splice=False, **FAST)
    with torch.inference_mode():
        reconstruction = sao1.model.vae.decode(known[None], num_samples=piece.shape[-1])[0]
    away = (first - edge - 10) * HOP
    torch.testing.assert_close(raw.audio[0, :, :away], reconstruction[:, :away], rtol=0,
                               atol=1e-4)


def test_an_all_kept_mask_returns_the_input(sao1, piece) -> None:
    out = sao1(prompt="anything", inpaint_audio=piece, inpaint_regions=[], seed=2, **FAST)
    assert out.settings.num_windows == 0 and out.settings.inpaint_regions == ()
    assert torch.equal(out.audio[0], piece)
    with torch.inference_mode():
        assert torch.equal(out.latents[0], sao1.model.vae.encode(piece[None]).mode()[0])


def test_an_all_generated_mask_is_plain_generation(sao1, piece) -> None:
    duration = piece.shape[-1] / RATE
    plain = sao1("fast drums", duration_s=duration, seed=9, **FAST)
    everything = sao1("fast drums", inpaint_audio=piece, inpaint_regions=[(0, duration)],
                      seed=9, **FAST)
    assert torch.equal(everything.latents, plain.latents)
    assert torch.equal(everything.audio, plain.audio)


def test_same_seed_same_edit_and_partial_strength(sao1, piece) -> None:
    a = sao1.inpaint(piece, 0.5, 1.5, "a calm piano", seed=3, **FAST)
    b = sao1.inpaint(piece, 0.5, 1.5, "a calm piano", seed=3, **FAST)
    c = sao1.inpaint(piece, 0.5, 1.5, "a calm piano", seed=4, **FAST)
    assert torch.equal(a.audio, b.audio) and not torch.equal(a.audio, c.audio)
    # init_noise_level regenerates the region only in part: closer to the input.
    light = sao1.inpaint(piece, 0.5, 1.5, "a calm piano", seed=3, init_noise_level=0.3, **FAST)
    region = slice(int(0.6 * RATE), int(1.4 * RATE))
    assert ((light.audio[0, :, region] - piece[:, region]).norm()
            < (a.audio[0, :, region] - piece[:, region]).norm())


def test_resampling_runs_the_jumps(sao1, piece) -> None:
    steps = []
    out = sao1.inpaint(piece, 0.5, 1.5, "a calm piano", seed=3, resample_steps=3,
                       jump_length=1, progress=lambda stage, done, total: steps.append(
                           (stage, done, total)), **FAST)
    sampling = [(d, t) for stage, d, t in steps if stage == "sampling"]
    assert sampling[-1] == (9, 9) and out.settings.resample_steps == 3
    plain = sao1.inpaint(piece, 0.5, 1.5, "a calm piano", seed=3, **FAST)
    assert not torch.equal(out.audio, plain.audio)
    with pytest.raises(SettingsError) as info:
        sao1.inpaint(piece, 0.5, 1.5, "x", sampler="v-ddim", resample_steps=2)
    assert info.value.field == "resample_steps"


def test_inpainting_works_with_rectified_flow_and_v_ddim(sao1, piece) -> None:
    saos = TextToMusicPipeline.from_pretrained(SAOS_TINY)
    out = saos.inpaint(piece, 0.5, 1.0, "kick drum", seed=1)
    assert out.audio.shape == (1, 2, piece.shape[-1])
    assert torch.equal(out.audio[0, :, :int(0.2 * RATE)], piece[:, :int(0.2 * RATE)])
    ddim = sao1.inpaint(piece, 0.5, 1.0, "x", seed=1, sampler="v-ddim", num_inference_steps=3)
    assert torch.equal(ddim.audio[0, :, :int(0.2 * RATE)], piece[:, :int(0.2 * RATE)])


@pytest.mark.parametrize("kwargs,field", [
    ({"inpaint_regions": [(1.0, 0.5)]}, "inpaint_regions"),
    ({"inpaint_regions": [(0.5, 9.0)]}, "inpaint_regions"),
    ({"inpaint_regions": [0.5]}, "inpaint_regions"),
    ({"inpaint_edge_s": -1.0}, "inpaint_edge_s"),
    ({"init_audio": torch.zeros(2, 100)}, "inpaint_audio"),
    ({"loop": True}, "loop"),
    ({"resample_steps": 0}, "resample_steps"),
    ({"context_s": 5.0, "duration_s": 30.0}, "context_s"),
])
def test_bad_editing_arguments_name_the_field(sao1, piece, kwargs, field) -> None:
    with pytest.raises(SettingsError) as info:
        sao1.check_inputs("x", inpaint_audio=piece, **kwargs)
    assert info.value.field == field


def test_regions_need_audio_and_sections_must_make_sense(sao1) -> None:
    for kwargs, field in (({"prompt": "x", "inpaint_regions": [(0, 1)]}, "inpaint_regions"),
                          ({"sections": [(1.0, "late start")]}, "sections"),
                          ({"sections": [(0, "a"), (0, "b")]}, "sections"),
                          ({"sections": [(0, "a"), (9.0, "after the end")],
                            "duration_s": 5.0}, "sections"),
                          ({"sections": [(0, " ")]}, "sections")):
        with pytest.raises(SettingsError) as info:
            sao1.check_inputs(**kwargs)
        assert info.value.field == field
    with pytest.raises(SettingsError, match="sections or a prompt"):
        sao1.check_inputs("x", sections=[(0, "a")])


# -- extension and long pieces ---------------------------------------------------------


def test_extension_keeps_the_recording_and_continues_it(sao1, piece) -> None:
    out = sao1.extend(piece, 6.0, "a calm piano", seed=2, **FAST)
    s = out.settings
    assert out.audio.shape[-1] == piece.shape[-1] + 6 * RATE
    assert s.num_windows > 1 and s.inpaint_regions == ((2.0, 8.0),)
    edge = round(s.inpaint_edge_s * RATE / HOP) + 2
    assert torch.equal(out.audio[0, :, :piece.shape[-1] - edge * HOP],
                       piece[:, :piece.shape[-1] - edge * HOP])
    assert out.joins_s[0] == pytest.approx(2.0) and len(out.joins_s) == s.num_windows
    assert out.audio[0, :, piece.shape[-1]:].abs().max() > 0.01


def test_a_long_piece_has_the_requested_length_and_timing_per_window(sao1, monkeypatch) -> None:
    timings: list[tuple[float, float]] = []
    conditioner = sao1.model.conditioner
    original = type(conditioner).forward

    def spy(self, features, seconds):
        timings.append((float(seconds["seconds_start"][0]), float(seconds["seconds_total"][0])))
        return original(self, features, seconds)

    monkeypatch.setattr(type(conditioner), "forward", spy)
    out = sao1("a calm piano", duration_s=10.0, seed=4, context_s=0.5, **FAST)
    s = out.settings
    assert out.audio.shape == (1, 2, 10 * RATE)
    assert s.num_windows == len(timings)  # one conditioning per window
    # 216 frames in windows of 64 keeping 11: each starts 53 frames on, and the last one
    # ends with the piece (216 - 64 = 152).
    starts = sorted(start for start, _ in timings)
    assert starts == pytest.approx([f * HOP / RATE for f in (0, 53, 106, 152)], abs=1e-5)
    assert {total for _, total in timings} == {10.0}
    again = sao1("a calm piano", duration_s=10.0, seed=4, context_s=0.5, **FAST)
    assert torch.equal(again.audio, out.audio)


def test_sections_change_the_prompt_window_by_window(sao1, monkeypatch) -> None:
    asked: list[tuple[str, ...]] = []
    original = sao1.encode_prompt

    def spy(prompts):
        asked.append(tuple(prompts))
        return original(prompts)

    monkeypatch.setattr(sao1, "encode_prompt", spy)
    out = sao1(sections=[(0, "a calm piano"), (4.0, "fast drums")], duration_s=8.0, seed=1,
               **FAST)
    assert out.settings.sections == ((0.0, "a calm piano"), (4.0, "fast drums"))
    assert asked == [("a calm piano",), ("fast drums",)]  # each encoded once
    assert out.audio.shape[-1] == 8 * RATE
    asked.clear()
    short = sao1(sections=[(0, "a calm piano"), (1.5, "fast drums")], duration_s=2.5, seed=1,
                 **FAST)  # both sections in one window's length: a window each
    assert short.settings.num_windows == 2 and short.joins_s == (round(32 * HOP / RATE, 6),)
    assert asked == [("a calm piano",), ("fast drums",)]


def test_sections_in_a_short_fit_window(sao1, monkeypatch) -> None:
    """A model that samples the shortest window that fits: the windows of a short piece
    with sections are that long, and keep a quarter of it."""
    from longplay.pipelines import settings as generation_settings

    monkeypatch.setattr(generation_settings, "WINDOW_QUANTUM_FRAMES", 16)
    out = sao1(sections=[(0, "a calm piano"), (1.0, "fast drums")], duration_s=2.0, seed=1,
               window="fit", **FAST)
    s = out.settings
    assert s.window_frames == 48 and s.num_windows == 2
    assert s.context_s == pytest.approx(12 * HOP / RATE)
    assert out.audio.shape[-1] == 2 * RATE


def test_memory_stays_that_of_one_window(sao1, monkeypatch) -> None:
    """A 10-minute piece: the network never sees more than one window, and the decoder
    works in chunks; the latents of the whole piece are the only thing that grows."""
    positions: list[int] = []
    handle = sao1.model.dit.project_in.register_forward_hook(
        lambda module, args, output: positions.append(args[0].shape[1]))
    decoded: list[int | None] = []
    vae = sao1.model.vae
    original = type(vae).decode

    def spy(self, latents, **kwargs):
        decoded.append(kwargs.get("chunk_frames"))
        return original(self, latents, **kwargs)

    monkeypatch.setattr(type(vae), "decode", spy)
    try:
        out = sao1("a calm piano", duration_s=600.0, seed=0, num_inference_steps=1,
                   sampler="euler", guidance_scale=1.0)
    finally:
        handle.remove()
    assert out.audio.shape == (1, 2, 600 * RATE)
    assert max(positions) == sao1.config.window_frames
    assert len(positions) == out.settings.num_windows > 200
    assert decoded[0] is not None and decoded[0] < out.latents.shape[-1]


# -- loops -----------------------------------------------------------------------------


def smoothing_model(pipe: TextToMusicPipeline):
    """A stand-in network with structure in time: it predicts a smoothed (not circular)
    version of its input, so a sample is smooth, and its two ends unrelated unless the
    generation treats the sequence as a circle."""
    objective = get_objective(pipe.config.objective)

    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        kernel = torch.ones(x.shape[1], 1, 9, dtype=x.dtype) / 9
        x0 = F.conv1d(F.pad(x, (4, 4), mode="replicate"), kernel, groups=x.shape[1])
        return objective.from_denoised(x, x0, t)

    return fn


def test_a_loop_wraps_around_like_an_interior_join(sao1, monkeypatch) -> None:
    monkeypatch.setattr(TextToMusicPipeline, "_model_fn",
                        lambda self, cond, s, uncond, interval=None: smoothing_model(self))
    duration = loop_duration_s(bpm=120, bars=1)  # 2 s
    scores = {}
    for loop in (False, True):
        out = sao1("a drum loop", duration_s=duration, loop=loop, seed=3, **FAST)
        assert out.audio.shape[-1] == round(duration * RATE)
        z = out.latents[0]
        steps = (z[:, 1:] - z[:, :-1]).norm(dim=0)
        scores[loop] = float((z[:, 0] - z[:, -1]).norm() / steps.median())
        wrap = join_scores(out.audio[0], RATE, [duration], circular=True)[0]
        inner = join_scores(out.audio[0], RATE, [0.5, 1.0, 1.5])
        scores[loop, "audio"] = wrap.mel_jump / max(s.mel_jump for s in inner)
    assert out.settings.loop and out.joins_s == (duration,)
    # Measured: the latent wrap is 1.4 steps with loop=True, 17 without; the audio's wrap
    # 1.03 of the largest interior join's mel change with loop=True, 1.4 without.
    assert scores[True] < 2.0 < 8.0 < scores[False]
    assert scores[True, "audio"] < 1.2 and scores[True, "audio"] < scores[False, "audio"]


def test_the_join_metric_finds_a_seam_and_a_click() -> None:
    t = torch.arange(4 * RATE) / RATE
    tone = torch.sin(2 * torch.pi * 220 * t)
    audio = torch.stack([tone, tone]) * 0.3
    smooth = join_scores(audio, RATE, [2.0])[0]
    seam = audio.clone()
    seam[:, 2 * RATE:] = 0.3 * torch.sin(2 * torch.pi * 1400 * t[2 * RATE:] + 1.0)
    jump = join_scores(seam, RATE, [2.0])[0]
    assert smooth.click < 1.5 and jump.click > 2.0
    assert jump.mel_jump > 5 * smooth.mel_jump
    metric = JoinMetric()
    metric.update(audio, RATE, [1.0, 2.0])
    metric.update(seam, RATE, [2.0])
    summary = metric.compute()
    assert summary["joins"] == 3 and summary["max_click"] == pytest.approx(jump.click)
