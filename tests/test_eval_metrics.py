"""Distribution metrics (FD, KL, CLAP score), structure analysis and prompt lists."""

from __future__ import annotations

import itertools
import json
import math
import struct

import numpy as np
import pytest
import torch

from longplay.audio.spectral import mel_filterbank, stft_magnitude
from longplay.conditioning import CLAPAudioEncoder, CLAPModel, HFTextEncoder
from longplay.evaluation import (
    CLAPScore,
    FrechetDistance,
    KLDivergence,
    PromptItem,
    chroma_features,
    clap_embedders,
    frechet_distance,
    mfcc_features,
    novelty_curve,
    read_prompts,
    save_ssm_png,
    self_similarity,
    structure_score,
)

SAMPLE_RATE = 8000


class TinyFrameEmbedder:
    """A fixed random linear map of log-mel frames: audio [B, C, S] -> [B, F, D]."""

    def __init__(self, width: int = 6, n_mels: int = 16, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.projection = torch.randn(n_mels, width, generator=generator, dtype=torch.float64)
        self.filters = mel_filterbank(SAMPLE_RATE, 256, n_mels).double()

    def __call__(self, audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
        assert sample_rate == SAMPLE_RATE
        magnitude = stft_magnitude(audio.double().mean(dim=1), 256, 128)  # [B, 129, F]
        log_mel = torch.log(self.filters @ magnitude + 1e-5)  # [B, M, F]
        return log_mel.transpose(1, 2) @ self.projection  # [B, F, D]


def _random_audio(num_items: int, seed: int, scale: float = 0.1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return scale * torch.randn(num_items, 2, 2048, generator=generator)


def _gaussian(num: int, dim: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(dim, dim))
    return rng.normal(size=(num, dim)) @ mixing + shift


# ---------------------------------------------------------------- Fréchet distance


def test_fd_of_a_set_with_itself_is_zero() -> None:
    x = _gaussian(300, 8, seed=1)
    metric = FrechetDistance()
    metric.update_reference(x)
    metric.update_generated(torch.from_numpy(x))
    scale = np.trace(np.cov(x, rowvar=False))
    assert abs(metric.compute()) < 1e-6 * scale


def test_fd_grows_with_a_mean_shift() -> None:
    x = _gaussian(300, 8, seed=2)
    scores = []
    for shift in (0.0, 0.25, 0.5, 1.0, 2.0):
        metric = FrechetDistance()
        metric.update_reference(x)
        metric.update_generated(x + shift)
        scores.append(metric.compute())
        # equal covariances: only the mean term remains, D * shift^2
        assert scores[-1] == pytest.approx(8 * shift**2, abs=1e-6)
    assert all(a < b for a, b in itertools.pairwise(scores))


def test_fd_matches_a_direct_numpy_computation() -> None:
    x = _gaussian(200, 5, seed=3)
    y = 0.7 * _gaussian(150, 5, seed=4, shift=0.3)
    metric = FrechetDistance()
    metric.update_reference(x)
    metric.update_generated(y)
    mu_x, mu_y = x.mean(axis=0), y.mean(axis=0)
    cov_x, cov_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    # independent route: eigenvalues of the (non-symmetric) product cov_x cov_y
    trace_sqrt = np.sqrt(np.linalg.eigvals(cov_x @ cov_y).real.clip(min=0)).sum()
    expected = np.sum((mu_x - mu_y) ** 2) + np.trace(cov_x + cov_y) - 2 * trace_sqrt
    assert metric.compute() == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu_x, cov_x, mu_y, cov_y) == pytest.approx(expected, rel=1e-9)


def test_fd_is_batch_size_invariant_and_mergeable_through_embed_fn() -> None:
    embed = TinyFrameEmbedder()
    reference, generated = _random_audio(6, seed=5), _random_audio(6, seed=6, scale=0.3)

    whole = FrechetDistance(embed)
    whole.update(reference, SAMPLE_RATE, generated=False)
    whole.update(generated, SAMPLE_RATE, generated=True)

    batched = FrechetDistance(embed)
    for part in (slice(0, 2), slice(2, 6)):
        batched.update(reference[part], SAMPLE_RATE, generated=False)
        batched.update(generated[part], SAMPLE_RATE, generated=True)

    worker_a, worker_b = FrechetDistance(embed), FrechetDistance(embed)
    worker_a.update(reference[:1], SAMPLE_RATE, generated=False)
    worker_a.update(generated[:4], SAMPLE_RATE, generated=True)
    worker_b.update(reference[1:], SAMPLE_RATE, generated=False)
    worker_b.update(generated[4:], SAMPLE_RATE, generated=True)
    worker_a.merge(worker_b)

    expected = whole.compute()
    assert expected > 0.1
    assert batched.compute() == pytest.approx(expected, rel=1e-9)
    assert worker_a.compute() == pytest.approx(expected, rel=1e-9)
    assert worker_a.num_reference == whole.num_reference


def test_fd_needs_two_samples_per_set() -> None:
    metric = FrechetDistance()
    metric.update_reference(_gaussian(10, 3, seed=7))
    metric.update_generated(_gaussian(1, 3, seed=8))
    with pytest.raises(ValueError, match="generated set holds 1"):
        metric.compute()
    with pytest.raises(ValueError, match="no embed_fn"):
        metric.update(_random_audio(1, seed=0), SAMPLE_RATE, generated=True)


# ---------------------------------------------------------------- KL divergence


def test_kl_is_zero_for_identical_distributions_and_positive_otherwise() -> None:
    logits = torch.randn(5, 10, generator=torch.Generator().manual_seed(9))
    metric = KLDivergence()
    metric.update(logits, logits.clone())
    assert metric.compute() == 0.0
    metric = KLDivergence()
    metric.update(logits, logits + torch.randn(5, 10, generator=torch.Generator().manual_seed(1)))
    assert metric.compute() > 1e-3


def test_kl_direction_is_generated_given_reference() -> None:
    generated = torch.tensor([[4.0, 0.0, 0.0]])  # peaked
    reference = torch.tensor([[0.0, 0.0, 0.0]])  # uniform
    p_g = torch.softmax(generated.double(), dim=-1)[0]
    p_r = torch.softmax(reference.double(), dim=-1)[0]
    forward = float((p_g * (p_g / p_r).log()).sum())
    backward = float((p_r * (p_r / p_g).log()).sum())
    metric = KLDivergence()
    metric.update(generated, reference)
    assert metric.compute() == pytest.approx(forward, rel=1e-12)
    assert abs(forward - backward) > 0.1
    swapped = KLDivergence()
    swapped.update(reference, generated)
    assert swapped.compute() == pytest.approx(backward, rel=1e-12)


def test_kl_is_batch_size_invariant_mergeable_and_pairs_by_id() -> None:
    generator = torch.Generator().manual_seed(10)
    generated, reference = torch.randn(7, 6, generator=generator), torch.randn(7, 6,
                                                                                generator=generator)
    whole = KLDivergence()
    whole.update(generated, reference)
    batched = KLDivergence()
    batched.update(generated[:3], reference[:3])
    batched.update(generated[3:], reference[3:])
    other = KLDivergence()
    other.update(generated[5:], reference[5:])
    merged = KLDivergence()
    merged.update(generated[:5], reference[:5])
    merged.merge(other)
    by_id = KLDivergence()
    ids = [f"item{i}" for i in range(7)]
    by_id.update_by_id(dict(zip(ids, generated, strict=True)),
                       dict(zip(reversed(ids), reference.flip(0), strict=True)))
    expected = whole.compute()
    for metric in (batched, merged, by_id):
        assert metric.compute() == pytest.approx(expected, rel=1e-12)
        assert metric.num_items == 7
    with pytest.raises(ValueError, match="not in both sets"):
        by_id.update_by_id({"a": generated[0]}, {"b": reference[0]})


# ---------------------------------------------------------------- CLAP score

EMBED_WIDTH = 8


class AlignedToyCLAP:
    """Text i -> a fixed random unit vector v_i; audio made for prompt i carries v_i in its
    first samples, so matching pairs are aligned and mismatched ones are not."""

    def __init__(self, prompts: list[str]) -> None:
        generator = torch.Generator().manual_seed(11)
        table = torch.nn.functional.normalize(torch.randn(len(prompts), EMBED_WIDTH,
                                                          generator=generator), dim=-1)
        self.vectors = dict(zip(prompts, table, strict=True))

    def audio_for(self, prompts: list[str]) -> torch.Tensor:
        audio = 0.01 * torch.randn(len(prompts), 1, 64, generator=torch.Generator().manual_seed(3))
        audio[:, 0, :EMBED_WIDTH] += torch.stack([self.vectors[p] for p in prompts])
        return audio

    def embed_audio(self, audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
        return audio[:, 0, :EMBED_WIDTH]

    def embed_text(self, prompts: list[str]) -> torch.Tensor:
        return torch.stack([self.vectors[p] for p in prompts])


def test_clap_score_prefers_matching_prompts() -> None:
    prompts = [f"prompt {i}" for i in range(6)]
    model = AlignedToyCLAP(prompts)
    audio = model.audio_for(prompts)
    matching = CLAPScore(model.embed_audio, model.embed_text)
    matching.update(audio, prompts, SAMPLE_RATE)
    mismatched = CLAPScore(model.embed_audio, model.embed_text)
    mismatched.update(audio, prompts[1:] + prompts[:1], SAMPLE_RATE)
    assert matching.compute() > 0.95
    assert matching.compute() > mismatched.compute() + 0.3


def test_clap_score_is_batch_size_invariant_and_mergeable() -> None:
    prompts = [f"prompt {i}" for i in range(5)]
    model = AlignedToyCLAP(prompts)
    audio = model.audio_for(prompts) + 0.3 * torch.randn(
        5, 1, 64, generator=torch.Generator().manual_seed(12))
    whole = CLAPScore(model.embed_audio, model.embed_text)
    whole.update(audio, prompts, SAMPLE_RATE)
    batched = CLAPScore(model.embed_audio, model.embed_text)
    batched.update(audio[:2], prompts[:2], SAMPLE_RATE)
    batched.update(audio[2:], prompts[2:], SAMPLE_RATE)
    merged = CLAPScore()
    merged.update_embeddings(model.embed_audio(audio[:4], SAMPLE_RATE),
                             model.embed_text(prompts[:4]))
    other = CLAPScore()
    other.update_embeddings(model.embed_audio(audio[4:], SAMPLE_RATE),
                            model.embed_text(prompts[4:]))
    merged.merge(other)
    for metric in (batched, merged):
        assert metric.compute() == pytest.approx(whole.compute(), rel=1e-12)
        assert metric.num_items == 5
    with pytest.raises(ValueError, match="B prompts"):
        whole.update(audio, prompts[:4], SAMPLE_RATE)


def test_chance_level_pairs_each_clip_with_the_other_prompts_only() -> None:
    # 4 prompts, each generated 3 times in a row, as the evaluation's prompt files are.
    distinct = [f"prompt {i}" for i in range(4)]
    prompts = [p for p in distinct for _ in range(3)]
    model = AlignedToyCLAP(distinct)
    audio = model.embed_audio(model.audio_for(prompts), SAMPLE_RATE)
    own = [distinct.index(p) for p in prompts]
    chance = CLAPScore()
    chance.update_other_prompts(audio, model.embed_text(distinct), own)
    table = torch.nn.functional.normalize(model.embed_text(distinct).double(), dim=-1)
    cosines = torch.nn.functional.normalize(audio.double(), dim=-1) @ table.T
    by_hand = [(cosines[b].sum() - cosines[b, own[b]]) / 3 for b in range(len(prompts))]
    assert chance.compute() == pytest.approx(float(sum(by_hand) / len(by_hand)), rel=1e-9)
    assert chance.num_items == len(prompts)
    matched = CLAPScore()
    scores = matched.update_embeddings(audio, model.embed_text(prompts))
    assert scores.shape == (len(prompts),)
    assert float(scores.mean()) == pytest.approx(matched.compute(), rel=1e-6)
    # Each clip with its neighbour's prompt is its own prompt 2 times in 3 here: that
    # "chance level" sits near the matched score and hides two thirds of the difference.
    neighbour = CLAPScore()
    neighbour.update_embeddings(audio, model.embed_text(prompts).roll(-1, dims=0))
    assert matched.compute() - chance.compute() > 0.5
    assert matched.compute() - neighbour.compute() < 0.5 * (matched.compute() - chance.compute())


def test_chance_level_refuses_a_single_prompt_and_bad_rows() -> None:
    audio = torch.randn(3, EMBED_WIDTH)
    with pytest.raises(ValueError, match="two distinct prompts"):
        CLAPScore().update_other_prompts(audio, torch.randn(1, EMBED_WIDTH), [0, 0, 0])
    with pytest.raises(ValueError, match=r"one prompt row in \[0, 2\) per clip"):
        CLAPScore().update_other_prompts(audio, torch.randn(2, EMBED_WIDTH), [0, 1, 2])
    with pytest.raises(ValueError, match="one prompt row"):
        CLAPScore().update_other_prompts(audio, torch.randn(2, EMBED_WIDTH), [0, 1])
    with pytest.raises(ValueError, match="one width E"):
        CLAPScore().update_other_prompts(audio, torch.randn(2, EMBED_WIDTH + 1), [0, 1, 0])
    with pytest.raises(ValueError, match="NaN or inf"):
        CLAPScore().update_other_prompts(audio, torch.full((2, EMBED_WIDTH), math.nan),
                                         [0, 1, 0])


# ---------------------------------------------------------------- structure

SECTION_S = 4.0


def _tone(frequencies: tuple[float, ...], seconds: float) -> torch.Tensor:
    t = torch.arange(int(seconds * SAMPLE_RATE), dtype=torch.float64) / SAMPLE_RATE
    return sum(torch.sin(2 * math.pi * f * t) for f in frequencies).float()


def _aba() -> torch.Tensor:
    part_a = _tone((261.63, 329.63, 392.0), SECTION_S)  # C major triad
    part_b = _tone((293.66, 369.99, 440.0 * 2 ** (1 / 12)), SECTION_S)  # D, F#, A#
    return torch.cat([part_a, part_b, part_a])[None]  # [1, S]


def test_chroma_finds_the_pitch_class_of_a_tone() -> None:
    chroma = chroma_features(_tone((440.0,), 1.0)[None], SAMPLE_RATE)
    assert chroma.shape[1] == 12
    assert (chroma.argmax(dim=1) == 9).all()  # A


def test_mfcc_shape_and_orthonormal_dct() -> None:
    mfcc = mfcc_features(_aba(), SAMPLE_RATE)
    assert mfcc.shape[1] == 20 and mfcc.shape[0] > 20
    assert torch.isfinite(mfcc).all()
    # a constant log-mel spectrum (silence) has energy only in coefficient 0
    silent = mfcc_features(torch.zeros(1, SAMPLE_RATE), SAMPLE_RATE)
    assert silent[:, 1:].abs().max() < 1e-4 * silent[:, 0].abs().min()


def test_self_similarity_shows_aba_structure_and_noise_does_not() -> None:
    features = chroma_features(_aba(), SAMPLE_RATE)
    ssm = self_similarity(features)
    num_frames = ssm.shape[0]
    assert ssm.shape == (num_frames, num_frames)
    assert torch.allclose(ssm.diagonal(), torch.ones(num_frames), atol=1e-5)
    third = num_frames // 3
    # A sections resemble each other more than A resembles B
    assert ssm[third // 2, 2 * third + third // 2] > ssm[third // 2, third + third // 2] + 0.5

    score = structure_score(ssm)
    assert score.num_boundaries >= 2
    assert score.block_contrast > 0.2
    frames_per_section = SECTION_S * SAMPLE_RATE / 2048
    for expected in (frames_per_section, 2 * frames_per_section):
        assert min(abs(b - expected) for b in score.boundaries) <= 2

    noise = torch.randn(1, int(3 * SECTION_S * SAMPLE_RATE),
                        generator=torch.Generator().manual_seed(4))
    noise_score = structure_score(self_similarity(chroma_features(noise, SAMPLE_RATE)))
    assert noise_score.block_contrast < 0.5 * score.block_contrast


def test_novelty_peaks_at_block_edges_of_an_ideal_ssm() -> None:
    labels = torch.tensor([0] * 10 + [1] * 10 + [0] * 10)
    ssm = (labels[:, None] == labels[None, :]).float() * 2 - 1
    novelty = novelty_curve(ssm, kernel_size=6)
    assert set(torch.topk(novelty, 2).indices.tolist()) == {10, 20}
    score = structure_score(ssm, kernel_size=6)
    assert score.boundaries == (10, 20)
    # within-block pairs are all 1; across pairs mix A-A (1) and A-B (-1)
    assert score.block_contrast == pytest.approx(1 - (-200 - 200 + 200) / 600)
    flat = structure_score(torch.ones(30, 30))
    assert flat.num_boundaries == 0 and flat.block_contrast == 0.0


def test_save_ssm_png_writes_a_square_image(tmp_path) -> None:
    ssm = torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    path = save_ssm_png(tmp_path / "ssm.png", ssm)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (3, 3)
    # A long matrix is pooled down to at most max_pixels a side.
    big = save_ssm_png(tmp_path / "big.png", torch.eye(10), max_pixels=4)
    assert struct.unpack(">II", big.read_bytes()[16:24]) == (4, 4)


# ---------------------------------------------------------------- prompt lists

SONG_DESCRIBER_CSV = (
    "caption_id,track_id,caption,is_valid_subset,familiarity,artist_id,album_id,path,duration\n"
    '1,104,"A calm piano piece, with soft strings, and a slow tempo.",True,1,12,34,'
    "00/104.2min.mp3,120.5\n"
    "2,105,Upbeat electronic dance track,False,0,13,35,00/105.2min.mp3,\n"
)


def test_reads_the_song_describer_csv(tmp_path) -> None:
    path = tmp_path / "song_describer.csv"
    path.write_text(SONG_DESCRIBER_CSV, encoding="utf-8")
    assert read_prompts(path) == [
        PromptItem("1", "A calm piano piece, with soft strings, and a slow tempo.", 120.5),
        PromptItem("2", "Upbeat electronic dance track", None),
    ]


def test_reads_plain_csv_and_jsonl(tmp_path) -> None:
    plain = tmp_path / "plain.csv"
    plain.write_text('prompt,duration_s\n"drums, bass",30\nambient pad,\n', encoding="utf-8")
    assert read_prompts(plain) == [PromptItem("0", "drums, bass", 30.0),
                                   PromptItem("1", "ambient pad", None)]
    lines = tmp_path / "prompts.jsonl"
    lines.write_text(json.dumps({"id": "x", "prompt": "jazz trio", "duration_s": 95}) + "\n\n"
                     + json.dumps({"caption": "lofi beat"}) + "\n", encoding="utf-8")
    assert read_prompts(lines) == [PromptItem("x", "jazz trio", 95.0),
                                   PromptItem("1", "lofi beat", None)]


def test_missing_prompt_column_names_the_columns_found(tmp_path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("track_id,text_description\n1,hello\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"found \['track_id', 'text_description'\]"):
        read_prompts(path)
    duplicate = tmp_path / "dup.csv"
    duplicate.write_text("id,prompt\na,one\na,two\n", encoding="utf-8")
    with pytest.raises(ValueError, match="duplicate ids"):
        read_prompts(duplicate)


def test_clap_embedders_adapt_longplays_clap(tiny_bert) -> None:
    text = HFTextEncoder(tiny_bert, max_length=16)
    torch.manual_seed(0)
    audio_encoder = CLAPAudioEncoder(sample_rate=16000, widths=(8, 16, 16, 16), norm_groups=4,
                                     embed_dim=20)
    model = CLAPModel(audio_encoder, text.model, text.tokenizer, embed_dim=24, max_length=16)
    prompts = ["a low hum", "a bright whistle"]
    audio = 0.1 * torch.randn(2, 2, 8192, generator=torch.Generator().manual_seed(5))
    score = CLAPScore(*clap_embedders(model))
    score.update(audio, prompts, 16000)
    with torch.no_grad():
        expected = CLAPScore.per_item(model.embed_audio(audio),
                                      model.embed_text(model.tokenize(prompts)))
    assert score.compute() == pytest.approx(float(expected.mean()), rel=1e-6)
    resampled = CLAPScore(*clap_embedders(model))
    resampled.update(audio[..., ::2].contiguous(), prompts, 8000)  # resampled to 16 kHz
    assert resampled.num_items == 2


# -- timing adherence ----------------------------------------------------------------------


def test_timing_adherence_measures_the_level_after_the_end() -> None:
    from longplay.evaluation import TimingAdherence, timing_adherence

    sr = 1000
    g = torch.Generator().manual_seed(0)
    ends_on_time = torch.randn(2, 10 * sr, generator=g) * 0.5
    ends_on_time[:, 4 * sr:] *= 0.001  # -60 dB after 4 s
    ignores_timing = torch.randn(2, 10 * sr, generator=g) * 0.5
    good = timing_adherence(ends_on_time, sr, 4.0)
    bad = timing_adherence(ignores_timing, sr, 4.0)
    assert good.relative_db == pytest.approx(-60, abs=1)
    assert abs(bad.relative_db) < 1
    assert good.content_db == pytest.approx(20 * math.log10(0.5), abs=0.2)
    # The guard skips the release right after the end.
    ringing = ends_on_time.clone()
    ringing[:, 4 * sr: 4 * sr + sr // 2] = 0.5
    assert timing_adherence(ringing, sr, 4.0, guard_s=1.0).relative_db < -50
    metric, other = TimingAdherence(), TimingAdherence()
    metric.update(torch.stack([ends_on_time]), sr, [4.0])
    other.update(torch.stack([ignores_timing]), sr, [4.0])
    metric.merge(other)
    assert metric.compute() == pytest.approx((good.relative_db + bad.relative_db) / 2)
    with pytest.raises(ValueError, match="must end inside the window"):
        timing_adherence(ends_on_time, sr, 9.5)
    with pytest.raises(ValueError, match="no generations"):
        TimingAdherence().compute()
