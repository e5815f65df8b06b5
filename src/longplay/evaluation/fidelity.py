"""Fidelity checks of a reconstruction that the spectral distances do not report.

A reconstruction can score a moderate STFT distance and still add a DC offset, add
tonal lines that the input does not have, or lose the pitch of the music. These checks
name each fault on its own (reference x, estimate y, both [B, C, S] at one sample rate):

DC offset
    Per item, ``max over channels of |mean over samples|``, of the estimate
    (``dc_offset``) and of the reference (``reference_dc_offset``, so that a DC in the
    input is not blamed on the model).

Added tone (dB)
    The long-term average spectrum of a signal is the Welch average of |STFT|^2 over
    frames and channels: periodic Hann window of n = 8192 samples (the largest power of
    two <= S for shorter signals), hop n / 2, no padding; P_x and P_y, in dB
    ``10 log10(max(P, 1e-30))``. A bin k of the estimate is an *added tonal line* when

    - it lies at or above 20 Hz and at least 16 bins from both ends of the spectrum;
    - it is a local peak: P_y[k] > P_y[k - 1] and P_y[k] >= P_y[k + 1];
    - it stands out: P_y[k] is more than 10 dB above the median of P_y over k +- 16 bins;
    - it is absent from the reference: P_y[k] is more than 10 dB above the largest P_x
      over k +- 2 bins (the Hann main lobe, so a line the reference has at a slightly
      different bin is not counted);
    - it is audible: above -100 dBFS, on the scale where a bin-centred sine of amplitude
      A reads 20 log10(A), i.e. ``P + 10 log10(16 / n^2)`` (so rounding noise of a
      silent or constant estimate is no line).

    The score is the level of the strongest added line relative to the strongest bin of
    P_y at or above 20 Hz, in dB; -120 dB (``ADDED_TONE_FLOOR_DB``) when there is none
    or it is weaker. Both spectra are compared at their absolute level (a reconstruction
    10 dB louder than its input adds every line). A pure tone reconstructed exactly
    scores -120 dB; lines added 30 dB below the music's strongest bin score about -30 dB.

Chroma correlation
    Each signal's channel mean is analysed with a centred STFT (periodic Hann, n = 4096
    or the largest power of two <= S, hop n / 2, reflect padding). The power |X|^2 of
    each bin with centre frequency f in [55 Hz, min(5 kHz, Nyquist)] is added to pitch
    class ``(round(12 log2(f / 440)) + 9) mod 12`` (A4 = 440 Hz, C = 0), as
    :func:`longplay.evaluation.structure.chroma_features` does, giving a 12-vector per
    frame. Per frame the score is the Pearson correlation of the reference's and the
    estimate's vectors (0 when either is constant). The item's score is the mean over the
    frames where the reference is not silent: its band mean square
    ``2 sum(|X|^2) / (n sum(w^2))`` (Parseval, bins of the band only) is above 1e-10
    (-100 dBFS) and within 40 dB of its loudest frame. 1 for identical audio; near 0 for
    a comb or noise in place of a melody. Undefined (NaN per item) when the reference
    has no such frame, e.g. digital silence.

Harmonic detail correlation
    Which bins of the magnitude spectrum are loud, apart from the spectral envelope:
    each signal's channel mean is analysed with a centred STFT (periodic Hann, n = 2048
    or the largest power of two <= S, hop n / 4, reflect padding); its log-magnitude
    ``log(|X| + 1e-5)`` minus its moving average over 9 bins along frequency (the
    envelope; at the edges the mean of the bins inside) is the *detail*. The score is the
    Pearson correlation of the reference's and the estimate's detail over the bins with
    centre frequency in [100 Hz, 2 kHz] and the frames where the reference is not silent
    (its mean square in that band above -100 dBFS and within 40 dB of its loudest frame,
    as for chroma). 1 for identical audio; near 0 for a reconstruction with the right
    envelope and the partials in the wrong bins (or none). Undefined (NaN per item) when
    the reference has no such frame.

Pitched frames and pitch agreement
    :func:`yin_pitch` tracks f0 with YIN (de Cheveigne & Kawahara 2002, steps 2-5) on
    the channel mean resampled to 16 kHz: integration window W = 704 samples (44 ms),
    hop 352 (22 ms), lags from floor(16000 / 2000 Hz) to ceil(16000 / 50 Hz); a frame is
    voiced when the cumulative mean normalised difference d'(tau) (eq. 8) falls below
    0.15 at some lag in that range and the frame's RMS (mean removed, over W) is above
    -70 dBFS and within 40 dB of the signal's loudest frame. Its period is the first
    local minimum of d' after the first lag below the threshold (step 4), refined by
    parabolic interpolation (step 5). ``pitched_share`` is the share of all frames that
    are voiced (reference and estimate each); ``pitch_agreement`` is the share of the
    reference's voiced frames where the estimate is voiced with an f0 within 50 cents of
    the reference's. Undefined (NaN per item) when the reference has no voiced frame.

The STFTs run in float32, everything else in float64, on the tensors' device (the
resampling for YIN on the CPU); 30 s of stereo 44.1 kHz take about a second on one busy
CPU core. The analysis sizes are in samples and were chosen for 44.1/48 kHz audio.

Shape legend: B batch (items), C audio channels, S samples, F frequency bins, T frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from longplay.audio.io import resample
from longplay.audio.spectral import stft_magnitude

__all__ = [
    "ADDED_TONE_FLOOR_DB",
    "FidelityScores",
    "PitchTrack",
    "added_tone_db",
    "chroma_correlation",
    "dc_offset",
    "fidelity_scores",
    "yin_pitch",
]

MIN_NUM_SAMPLES = 1025

ADDED_TONE_FLOOR_DB = -120.0
LTAS_WINDOW = 8192
LTAS_MIN_HZ = 20.0
PEAK_NEIGHBOURHOOD_BINS = 16
PEAK_PROMINENCE_DB = 10.0
PEAK_ABSENCE_DB = 10.0
MAIN_LOBE_BINS = 2
LINE_MIN_DBFS = -100.0
_POWER_FLOOR = 1e-30

CHROMA_WINDOW = 4096
CHROMA_MIN_HZ = 55.0
CHROMA_MAX_HZ = 5000.0
DETAIL_WINDOW = 2048
DETAIL_MIN_HZ = 100.0
DETAIL_MAX_HZ = 2000.0
DETAIL_ENVELOPE_BINS = 9
DETAIL_FLOOR = 1e-5
SILENCE_MEAN_SQUARE = 1e-10  # -100 dBFS
SILENCE_RANGE_DB = 40.0
_A4_HZ = 440.0
_A_PITCH_CLASS = 9

YIN_SAMPLE_RATE = 16000
YIN_WINDOW = 704  # W, 44 ms at 16 kHz (W + 320 lags = one 1024-point FFT)
YIN_HOP = 352
YIN_F0_MIN_HZ = 50.0
YIN_F0_MAX_HZ = 2000.0
YIN_THRESHOLD = 0.15
PITCH_GATE_DBFS = -70.0
PITCH_TOLERANCE_CENTS = 50.0


def _as_items(audio: torch.Tensor, name: str) -> torch.Tensor:
    """[C, S] or [B, C, S] floating audio -> [B, C, S] float64."""
    if audio.dim() == 2:
        audio = audio.unsqueeze(0)
    if audio.dim() != 3 or not audio.is_floating_point():
        raise ValueError(f"{name} must be floating audio [C, S] or [B, C, S], got shape "
                         f"{tuple(audio.shape)} and dtype {audio.dtype}.")
    if audio.shape[-1] < MIN_NUM_SAMPLES:
        raise ValueError(f"{name} has {audio.shape[-1]} samples, too short for the fidelity "
                         f"checks; they need at least {MIN_NUM_SAMPLES}. Score longer audio.")
    return audio.detach().to(torch.float64)


def _as_pair(reference: torch.Tensor, estimate: torch.Tensor,
             sample_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate}.")
    if reference.shape != estimate.shape:
        raise ValueError(f"reference and estimate shapes differ: {tuple(reference.shape)} and "
                         f"{tuple(estimate.shape)}; trim both to the same [C, S] or [B, C, S].")
    return _as_items(reference, "reference"), _as_items(estimate, "estimate")


def _window_length(num_samples: int, longest: int) -> int:
    """``longest``, or the largest power of two <= num_samples for shorter signals."""
    return min(longest, 1 << (num_samples.bit_length() - 1))


def _dc_per_item(audio: torch.Tensor) -> torch.Tensor:
    """[B, C, S] -> [B] largest |mean| over channels."""
    return audio.mean(dim=-1).abs().amax(dim=-1)


def dc_offset(audio: torch.Tensor) -> float:
    """DC offset (see the module docstring) of audio [C, S] or [B, C, S], mean over items."""
    return float(_dc_per_item(_as_items(audio, "audio")).mean())


def _ltas_db(audio: torch.Tensor, n_fft: int) -> torch.Tensor:
    """[B, C, S] -> [B, F] long-term average spectrum in dB (Welch, hop n_fft / 2)."""
    magnitude = stft_magnitude(audio.float(), n_fft, n_fft // 2, center=False)  # [B, C, F, T]
    power = magnitude.double().pow(2).mean(dim=(1, 3))
    return 10.0 * power.clamp(min=_POWER_FLOOR).log10()


def _added_tone_per_item(reference: torch.Tensor, estimate: torch.Tensor,
                         sample_rate: int) -> torch.Tensor:
    """[B, C, S] pair -> [B] level of the strongest added tonal line in dB."""
    n_fft = _window_length(reference.shape[-1], LTAS_WINDOW)
    ref_db, est_db = _ltas_db(reference, n_fft), _ltas_db(estimate, n_fft)  # [B, F]
    num_bins, n = est_db.shape[-1], PEAK_NEIGHBOURHOOD_BINS
    first = max(n, math.ceil(LTAS_MIN_HZ * n_fft / sample_rate))
    if first >= num_bins - n - 1:
        raise ValueError(f"{n_fft}-point spectra at {sample_rate} Hz have no bins to search "
                         "for tonal lines; score longer audio or a higher sample rate.")
    centre = est_db[:, first:num_bins - n]  # candidates k, [B, K]
    peak = (centre > est_db[:, first - 1:num_bins - n - 1]) & (
        centre >= est_db[:, first + 1:num_bins - n + 1])
    neighbourhood = est_db.unfold(-1, 2 * n + 1, 1)[:, first - n:]  # [B, K, 2n + 1]
    prominent = centre - neighbourhood.median(dim=-1).values > PEAK_PROMINENCE_DB
    lobe = F.max_pool1d(ref_db.unsqueeze(1), 2 * MAIN_LOBE_BINS + 1, stride=1,
                        padding=MAIN_LOBE_BINS).squeeze(1)[:, first:num_bins - n]
    audible = centre + 10.0 * math.log10(16.0 / n_fft**2) > LINE_MIN_DBFS
    added = peak & prominent & (centre - lobe > PEAK_ABSENCE_DB) & audible
    strongest = est_db[:, first:].amax(dim=-1, keepdim=True)  # [B, 1]
    level = torch.where(added, centre - strongest, torch.full_like(centre, -math.inf))
    return level.amax(dim=-1).clamp(min=ADDED_TONE_FLOOR_DB)


def added_tone_db(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int) -> float:
    """Level of the strongest tonal line of the estimate absent from the reference (dB).

    See the module docstring for the definition; -120 dB when there is none.

    Args:
        reference: [C, S] or [B, C, S] audio, S > 1024.
        estimate: same shape as ``reference``.
        sample_rate: of both, in Hz.

    Returns:
        The mean over items.
    """
    ref, est = _as_pair(reference, estimate, sample_rate)
    return float(_added_tone_per_item(ref, est, sample_rate).mean())


def _band_bins(n_fft: int, sample_rate: int, low_hz: float, high_hz: float,
               like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre frequencies [F] of an n_fft-point STFT's bins and the mask of those in
    [low_hz, min(high_hz, Nyquist)], on ``like``'s device and in its dtype.

    Raises:
        ValueError: no bin lies in the band (an unusual sample rate).
    """
    freqs = torch.arange(n_fft // 2 + 1, dtype=like.dtype, device=like.device) * (
        sample_rate / n_fft)
    band = (freqs >= low_hz) & (freqs <= min(high_hz, sample_rate / 2))
    if not band.any():
        raise ValueError(f"no {n_fft}-point STFT bin lies in [{low_hz}, {high_hz}] "
                         f"Hz at {sample_rate} Hz; score audio at a usual sample rate.")
    return freqs, band


def _band_mean_square(power: torch.Tensor, band: torch.Tensor, n_fft: int) -> torch.Tensor:
    """[B, F, T] |X|^2 of a periodic-Hann STFT -> [B, T] the mean square of the signal in
    the band's bins (Parseval)."""
    window_energy = 3.0 * n_fft / 8.0  # sum of the squared periodic Hann window
    return 2.0 * (band.to(power.dtype) @ power) / (n_fft * window_energy)


def _correlation(dot: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """Pearson correlations from the dot products and norm products of centred vectors;
    0 where either vector is constant."""
    return torch.where(norms > 0, dot / norms.clamp(min=1e-300), torch.zeros_like(norms))


def _mean_of_scored(per_item: torch.Tensor, band: str, what: str) -> float:
    """The mean of the items a score is defined for (not NaN: the reference sounds)."""
    if per_item.isnan().all():
        raise ValueError(f"the reference is silent (no frame above -100 dBFS in {band}), so "
                         f"there is no {what} to compare; score audio with content.")
    return float(per_item.nanmean())


def _chroma(mono: torch.Tensor, sample_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, S] -> chroma [B, T, 12] (band power per class) and band mean square [B, T]."""
    n_fft = _window_length(mono.shape[-1], CHROMA_WINDOW)
    power = stft_magnitude(mono.float(), n_fft, n_fft // 2).double().pow(2)  # [B, F, T]
    freqs, used = _band_bins(n_fft, sample_rate, CHROMA_MIN_HZ, CHROMA_MAX_HZ, mono)
    safe = torch.where(used, freqs, torch.full_like(freqs, _A4_HZ))
    classes = (torch.round(12 * torch.log2(safe / _A4_HZ)).long() + _A_PITCH_CLASS) % 12
    folding = F.one_hot(classes, 12).to(power.dtype).T * used  # [12, F], 0 outside the band
    return (folding @ power).transpose(1, 2), _band_mean_square(power, used, n_fft)


def _audible(mean_square: torch.Tensor, floor: float, range_db: float) -> torch.Tensor:
    """[B, T] mean squares -> frames above ``floor`` and within range_db of the loudest."""
    loudest = mean_square.amax(dim=-1, keepdim=True)
    return (mean_square > floor) & (mean_square >= loudest * 10.0 ** (-range_db / 10.0))


def _harmonic_detail_per_item(reference: torch.Tensor, estimate: torch.Tensor,
                              sample_rate: int) -> torch.Tensor:
    """[B, C, S] pair -> [B] correlation of the log-magnitude detail (NaN: silent reference)."""
    n_fft = _window_length(reference.shape[-1], DETAIL_WINDOW)
    _, band = _band_bins(n_fft, sample_rate, DETAIL_MIN_HZ, DETAIL_MAX_HZ, reference)

    def magnitude(audio: torch.Tensor) -> torch.Tensor:  # [B, F, T]
        return stft_magnitude(audio.mean(dim=1).float(), n_fft, n_fft // 4).double()

    def detail(magnitude: torch.Tensor) -> torch.Tensor:  # [B, F_band, T]
        log = (magnitude + DETAIL_FLOOR).log()
        b, f, t = log.shape
        rows = log.transpose(1, 2).reshape(b * t, 1, f)
        envelope = F.avg_pool1d(rows, DETAIL_ENVELOPE_BINS, 1, DETAIL_ENVELOPE_BINS // 2,
                                count_include_pad=False).reshape(b, t, f).transpose(1, 2)
        return (log - envelope)[:, band]

    ref_magnitude = magnitude(reference)
    ref, est = detail(ref_magnitude), detail(magnitude(estimate))
    ref_ms = _band_mean_square(ref_magnitude.pow(2), band, n_fft)
    frames = _audible(ref_ms, SILENCE_MEAN_SQUARE, SILENCE_RANGE_DB)[:, None].to(ref.dtype)
    count = frames.sum(dim=(1, 2)) * ref.shape[1]

    def centred(x: torch.Tensor) -> torch.Tensor:
        mean = (x * frames).sum(dim=(1, 2), keepdim=True) / count.clamp(min=1)[:, None, None]
        return (x - mean) * frames

    ref, est = centred(ref), centred(est)
    norms = ref.pow(2).sum(dim=(1, 2)).sqrt() * est.pow(2).sum(dim=(1, 2)).sqrt()
    corr = _correlation((ref * est).sum(dim=(1, 2)), norms)
    return torch.where(count > 0, corr, torch.full_like(corr, math.nan))


def harmonic_detail_correlation(reference: torch.Tensor, estimate: torch.Tensor,
                                sample_rate: int) -> float:
    """Correlation of the log-magnitude spectra's detail around their envelope, 100 Hz to
    2 kHz (see the module docstring): whether the partials are in the right bins.

    Args:
        reference: [C, S] or [B, C, S] audio, S > 1024.
        estimate: same shape as ``reference``.
        sample_rate: of both, in Hz.

    Returns:
        The mean over the items whose reference is not silent.

    Raises:
        ValueError: every reference is silent in the band.
    """
    ref, est = _as_pair(reference, estimate, sample_rate)
    return _mean_of_scored(_harmonic_detail_per_item(ref, est, sample_rate), "100 Hz-2 kHz",
                           "harmonic detail")


def _chroma_correlation_per_item(reference: torch.Tensor, estimate: torch.Tensor,
                                 sample_rate: int) -> torch.Tensor:
    """[B, C, S] pair -> [B] mean per-frame chroma correlation (NaN: silent reference)."""
    ref, ref_ms = _chroma(reference.mean(dim=1), sample_rate)
    est, _ = _chroma(estimate.mean(dim=1), sample_rate)
    ref = ref - ref.mean(dim=-1, keepdim=True)
    est = est - est.mean(dim=-1, keepdim=True)
    norms = ref.norm(dim=-1) * est.norm(dim=-1)  # [B, T]
    corr = _correlation((ref * est).sum(dim=-1), norms)
    scored = _audible(ref_ms, SILENCE_MEAN_SQUARE, SILENCE_RANGE_DB).to(corr.dtype)
    count = scored.sum(dim=-1)
    return torch.where(count > 0, (corr * scored).sum(dim=-1) / count.clamp(min=1),
                       torch.full_like(count, math.nan))


def chroma_correlation(reference: torch.Tensor, estimate: torch.Tensor,
                       sample_rate: int) -> float:
    """Mean per-frame Pearson correlation of 12-bin chroma (see the module docstring).

    Args:
        reference: [C, S] or [B, C, S] audio, S > 1024.
        estimate: same shape as ``reference``.
        sample_rate: of both, in Hz.

    Returns:
        The mean over the items whose reference is not silent.

    Raises:
        ValueError: every reference is silent (no frame above -100 dBFS), so there is no
            chroma to compare.
    """
    ref, est = _as_pair(reference, estimate, sample_rate)
    return _mean_of_scored(_chroma_correlation_per_item(ref, est, sample_rate), "55 Hz-5 kHz",
                           "chroma")


@dataclass(frozen=True)
class PitchTrack:
    """YIN result for B items over T frames of ``hop_s`` seconds (frame t starts at t * hop_s).

    Attributes:
        f0_hz: [B, T] fundamental frequency in Hz, 0 where unvoiced.
        voiced: [B, T] bool.
        hop_s: seconds between frames.
        sounding: [B, T] bool, the frames that pass the loudness gate (RMS above -70 dBFS
            and within 40 dB of the item's loudest frame); every voiced frame sounds.
    """

    f0_hz: torch.Tensor
    voiced: torch.Tensor
    hop_s: float
    sounding: torch.Tensor


def _yin_frames(mono: torch.Tensor, tau_max: int) -> torch.Tensor:
    """[B, S] at the YIN rate -> [B, T, W + tau_max] frames, zero-padded at the end."""
    need = YIN_WINDOW + tau_max
    num_frames = max(1, 1 + (mono.shape[-1] - need) // YIN_HOP)
    padded = F.pad(mono, (0, max(0, (num_frames - 1) * YIN_HOP + need - mono.shape[-1])))
    return padded.unfold(-1, need, YIN_HOP)[:, :num_frames]


def _cmnd(frames: torch.Tensor, tau_max: int) -> torch.Tensor:
    """[B, T, W + tau_max] frames -> [B, T, tau_max + 1] YIN's d'(tau), eqs. 6-8."""
    size = 1 << (frames.shape[-1] - 1).bit_length()
    head = frames[..., :YIN_WINDOW]
    # r(tau) = sum_{j < W} x_j x_{j + tau}, by FFT (size >= W + tau_max: no wrap-around)
    cross = torch.fft.irfft(torch.fft.rfft(head, size).conj() * torch.fft.rfft(frames, size),
                            size)[..., :tau_max + 1]
    energy = F.pad(frames.pow(2).cumsum(dim=-1), (1, 0))  # [B, T, W + tau_max + 1]
    lags = torch.arange(tau_max + 1, device=frames.device)
    shifted = energy[..., lags + YIN_WINDOW] - energy[..., lags]  # sum_{j < W} x_{j + tau}^2
    diff = (energy[..., YIN_WINDOW:YIN_WINDOW + 1] + shifted - 2.0 * cross).clamp(min=0.0)
    diff[..., 0] = 0.0  # eq. 6
    running = diff.cumsum(dim=-1)  # sum_{j <= tau} d(j)
    mean = running / lags.clamp(min=1)
    cmnd = torch.where(mean > 0, diff / mean.clamp(min=1e-300), torch.ones_like(diff))
    cmnd[..., 0] = 1.0  # eq. 8
    return cmnd


def yin_pitch(audio: torch.Tensor, sample_rate: int, *, threshold: float = YIN_THRESHOLD,
              f0_min_hz: float = YIN_F0_MIN_HZ, f0_max_hz: float = YIN_F0_MAX_HZ) -> PitchTrack:
    """Frame-wise f0 and voicing with YIN (de Cheveigne & Kawahara 2002).

    The channel mean is resampled to 16 kHz and analysed in frames of 44 ms every 22 ms;
    see the module docstring for the voicing rule.

    Args:
        audio: [C, S] or [B, C, S] floating audio.
        sample_rate: its rate in Hz.
        threshold: absolute threshold on d'(tau) (step 4).
        f0_min_hz, f0_max_hz: the f0 search range, within 0 < f0_min < f0_max < 8 kHz.
    """
    x = _as_items(audio, "audio")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate}.")
    if not 0.0 < f0_min_hz < f0_max_hz < YIN_SAMPLE_RATE / 2:
        raise ValueError(f"need 0 < f0_min_hz < f0_max_hz < {YIN_SAMPLE_RATE // 2}, got "
                         f"f0_min_hz={f0_min_hz}, f0_max_hz={f0_max_hz}.")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}.")
    mono = resample(x.mean(dim=1).cpu(), sample_rate, YIN_SAMPLE_RATE).to(x.device)  # [B, S']
    tau_min = max(2, math.floor(YIN_SAMPLE_RATE / f0_max_hz))
    tau_max = math.ceil(YIN_SAMPLE_RATE / f0_min_hz)
    frames = _yin_frames(mono, tau_max)  # [B, T, W + tau_max]
    cmnd = _cmnd(frames, tau_max)  # [B, T, tau_max + 1]
    lags = torch.arange(tau_max + 1, device=x.device)
    in_range = lags >= tau_min
    below = (cmnd < threshold) & in_range
    first = torch.where(below.any(dim=-1), below.int().argmax(dim=-1), tau_max)  # [B, T]
    # step 4: walk from the first lag below the threshold down to its local minimum
    rising = F.pad(cmnd[..., 1:] >= cmnd[..., :-1], (0, 1), value=True)  # d'(tau+1) >= d'(tau)
    stop = rising & (lags >= first.unsqueeze(-1))
    best = stop.int().argmax(dim=-1)  # [B, T]
    # step 5: parabolic interpolation of d' around the minimum
    inner = best.clamp(1, tau_max - 1).unsqueeze(-1)
    left, mid, right = (cmnd.gather(-1, inner + k).squeeze(-1) for k in (-1, 0, 1))
    curvature = left - 2.0 * mid + right
    shift = torch.where(curvature > 0, 0.5 * (left - right) / curvature.clamp(min=1e-300),
                        torch.zeros_like(curvature)).clamp(-0.5, 0.5)
    shift = torch.where((best > tau_min) & (best < tau_max), shift, torch.zeros_like(shift))
    period = best.to(cmnd.dtype) + shift
    head = frames[..., :YIN_WINDOW]
    ac_mean_square = head.var(dim=-1, correction=0)
    loud = _audible(ac_mean_square, 10.0 ** (PITCH_GATE_DBFS / 10.0), SILENCE_RANGE_DB)
    voiced = below.any(dim=-1) & loud
    f0 = torch.where(voiced, YIN_SAMPLE_RATE / period.clamp(min=1.0), torch.zeros_like(period))
    return PitchTrack(f0_hz=f0, voiced=voiced, hop_s=YIN_HOP / YIN_SAMPLE_RATE,
                      sounding=loud)


def _pitch_per_item(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[B, C, S] pair -> [B] pitched shares of both and pitch agreement (NaN: none voiced)."""
    ref, est = yin_pitch(reference, sample_rate), yin_pitch(estimate, sample_rate)
    cents = 1200.0 * torch.log2(est.f0_hz.clamp(min=1e-9) / ref.f0_hz.clamp(min=1e-9))
    agree = (est.voiced & ref.voiced & (cents.abs() < PITCH_TOLERANCE_CENTS)).to(cents.dtype)
    voiced = ref.voiced.to(cents.dtype).sum(dim=-1)
    agreement = torch.where(voiced > 0, agree.sum(dim=-1) / voiced.clamp(min=1),
                            torch.full_like(voiced, math.nan))
    return (ref.voiced.to(cents.dtype).mean(dim=-1), est.voiced.to(cents.dtype).mean(dim=-1),
            agreement)


@dataclass(frozen=True)
class FidelityScores:
    """Per-item fidelity checks of B items, each [B] float64 (definitions: module docstring).

    ``chroma_correlation`` and ``harmonic_detail_correlation`` are NaN for an item whose
    reference is silent and
    ``pitch_agreement`` for one whose reference has no voiced frame.
    """

    dc_offset: torch.Tensor
    reference_dc_offset: torch.Tensor
    added_tone_db: torch.Tensor
    chroma_correlation: torch.Tensor
    harmonic_detail_correlation: torch.Tensor
    pitched_share_reference: torch.Tensor
    pitched_share_estimate: torch.Tensor
    pitch_agreement: torch.Tensor


def fidelity_scores(reference: torch.Tensor, estimate: torch.Tensor,
                    sample_rate: int) -> FidelityScores:
    """All fidelity checks per item.

    Args:
        reference: [C, S] or [B, C, S] audio, S > 1024.
        estimate: its reconstruction, same shape.
        sample_rate: of both, in Hz.
    """
    ref, est = _as_pair(reference, estimate, sample_rate)
    share_ref, share_est, agreement = _pitch_per_item(ref, est, sample_rate)
    return FidelityScores(
        dc_offset=_dc_per_item(est),
        reference_dc_offset=_dc_per_item(ref),
        added_tone_db=_added_tone_per_item(ref, est, sample_rate),
        chroma_correlation=_chroma_correlation_per_item(ref, est, sample_rate),
        harmonic_detail_correlation=_harmonic_detail_per_item(ref, est, sample_rate),
        pitched_share_reference=share_ref,
        pitched_share_estimate=share_est,
        pitch_agreement=agreement,
    )
