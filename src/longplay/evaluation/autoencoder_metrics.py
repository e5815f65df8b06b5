"""Reconstruction metrics of an audio autoencoder (Stable Audio 2.0, Table 5).

The paper reports the metrics of the Descript Audio Codec evaluation, i.e. the
``audiotools`` losses with their default settings. They are implemented here as
follows (reference x, estimate y, each channel of an item analysed as one signal):

STFT distance
    For window lengths (2048, 512) with hop = window / 4, a periodic Hann window
    and a centred STFT with reflect padding, let X = |STFT(x)| and Y = |STFT(y)|.
    The distance is the sum over both resolutions of
    ``L1(log10(clamp(X, 1e-5)^2), log10(clamp(Y, 1e-5)^2)) + L1(X, Y)``
    where L1 is the mean absolute difference over channels, bins and frames.

Mel distance
    The same with mel magnitudes ``M = filterbank @ |STFT|`` instead of X, with
    150 mel bands for the 2048 window and 80 for the 512 window (Slaney mel
    scale and area normalisation, f_min 0, f_max Nyquist):
    sum over both resolutions of
    ``L1(log10(clamp(Mx, 1e-5)^2), log10(clamp(My, 1e-5)^2)) + L1(Mx, My)``.

SI-SDR (dB)
    The channels of an item are concatenated into one signal, both signals are
    made zero-mean, ``alpha = (<y, x> + eps) / (<x, x> + eps)`` with eps = 1e-8,
    and ``SI-SDR = 10 log10(|alpha x|^2 / |alpha x - y|^2 + eps)``. It is computed
    in float64; the residual energy is floored at 1e-20 so that identical signals
    give a large finite value (about 200 dB for unit-energy audio) rather than inf.

Fidelity checks (defined exactly in :mod:`longplay.evaluation.fidelity`)
    Faults the three distances do not name: ``dc_offset`` (max over channels of
    |mean|; ``reference_dc_offset`` the same of the reference), ``added_tone_db`` (the
    level of the strongest tonal line of the estimate's long-term spectrum that the
    reference lacks, relative to the estimate's strongest bin; -120 dB when none),
    ``chroma_correlation`` (per-frame Pearson correlation of 12-bin chroma over the
    reference's non-silent frames), ``pitched_share_reference`` /
    ``pitched_share_estimate`` (share of YIN frames that are voiced) and
    ``pitch_agreement`` (share of the reference's voiced frames where the estimate is
    voiced within 50 cents).

Every metric is computed per item; dataset scores are means over items, with two
exceptions: ``worst_added_tone_db`` is the largest ``added_tone_db`` of any item (the
target is about the worst line), and ``chroma_correlation`` / ``pitch_agreement`` are
means over the items where they are defined (a silent reference has no chroma, one
without voiced frames no pitch to agree with), None when no item has one. Lower is
better for the two distances, DC offset and added tone; higher for the others.

Shape legend: B batch (items), C audio channels, S samples.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from longplay.audio.io import load_audio
from longplay.audio.spectral import mel_filterbank, stft_magnitude
from longplay.evaluation.fidelity import fidelity_scores

logger = logging.getLogger(__name__)

__all__ = [
    "AUDIO_EXTENSIONS",
    "ReconstructionMetrics",
    "ReconstructionScores",
    "compare_audio",
    "mel_distance",
    "si_sdr",
    "stft_distance",
]

STFT_WINDOW_LENGTHS = (2048, 512)
MEL_BANDS = (150, 80)
CLAMP_EPS = 1e-5
SI_SDR_EPS = 1e-8
_SI_SDR_NOISE_FLOOR = 1e-20
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


def _as_batch(reference: torch.Tensor, estimate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a pair of [C, S] or [B, C, S] tensors and return both as [B, C, S]."""
    if reference.shape != estimate.shape:
        if reference.shape[:-1] == estimate.shape[:-1] and reference.dim() in (2, 3):
            raise ValueError(
                f"estimate has {estimate.shape[-1]} samples but reference has "
                f"{reference.shape[-1]} (shapes {tuple(estimate.shape)} and "
                f"{tuple(reference.shape)}); trim both to the same length before scoring."
            )
        raise ValueError(
            f"reference and estimate shapes differ: reference {tuple(reference.shape)}, "
            f"estimate {tuple(estimate.shape)}; pass tensors of the same [C, S] or [B, C, S] "
            "shape."
        )
    if reference.dim() == 2:
        reference, estimate = reference.unsqueeze(0), estimate.unsqueeze(0)
    elif reference.dim() != 3:
        raise ValueError(
            f"expected [C, S] or [B, C, S] tensors, got shape {tuple(reference.shape)}."
        )
    if not (reference.is_floating_point() and estimate.is_floating_point()):
        raise ValueError(
            f"audio must be floating point, got {reference.dtype} and {estimate.dtype}."
        )
    dtype = torch.promote_types(torch.promote_types(reference.dtype, estimate.dtype), torch.float32)
    return reference.detach().to(dtype), estimate.detach().to(dtype)


def _spectral_l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-item log + linear L1 of magnitudes x, y: [B, C, K, T] -> [B]."""
    log_x = x.clamp(min=CLAMP_EPS).pow(2).log10()
    log_y = y.clamp(min=CLAMP_EPS).pow(2).log10()
    log_term = (log_x - log_y).abs().flatten(1).mean(dim=1)
    lin_term = (x - y).abs().flatten(1).mean(dim=1)
    return log_term + lin_term


def _stft_distance_per_item(reference: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """[B, C, S] pair -> [B] multi-resolution STFT distance."""
    total = torch.zeros(reference.shape[0], dtype=reference.dtype, device=reference.device)
    for window in STFT_WINDOW_LENGTHS:
        x = stft_magnitude(reference, window, window // 4)
        y = stft_magnitude(estimate, window, window // 4)
        total = total + _spectral_l1(x, y)
    return total


def _mel_distance_per_item(
    reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int
) -> torch.Tensor:
    """[B, C, S] pair -> [B] multi-resolution mel distance."""
    total = torch.zeros(reference.shape[0], dtype=reference.dtype, device=reference.device)
    for window, n_mels in zip(STFT_WINDOW_LENGTHS, MEL_BANDS, strict=True):
        fb = mel_filterbank(sample_rate, window, n_mels).to(reference)  # [M, F]
        x = fb @ stft_magnitude(reference, window, window // 4)  # [B, C, M, T]
        y = fb @ stft_magnitude(estimate, window, window // 4)
        total = total + _spectral_l1(x, y)
    return total


def _si_sdr_per_item(reference: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """[B, C, S] pair -> [B] SI-SDR in dB, channels concatenated per item."""
    ref = reference.flatten(1).to(torch.float64)
    est = estimate.flatten(1).to(torch.float64)
    ref = ref - ref.mean(dim=1, keepdim=True)
    est = est - est.mean(dim=1, keepdim=True)
    alpha = ((est * ref).sum(dim=1) + SI_SDR_EPS) / ((ref * ref).sum(dim=1) + SI_SDR_EPS)
    target = alpha.unsqueeze(1) * ref
    signal = target.pow(2).sum(dim=1)
    noise = (target - est).pow(2).sum(dim=1).clamp(min=_SI_SDR_NOISE_FLOOR)
    return 10.0 * torch.log10(signal / noise + SI_SDR_EPS)


def stft_distance(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """Multi-resolution STFT distance (see the module docstring), mean over items.

    Args:
        reference: [C, S] or [B, C, S] audio, S > 1024.
        estimate: same shape and sample rate as ``reference``.
    """
    ref, est = _as_batch(reference, estimate)
    return float(_stft_distance_per_item(ref, est).mean())


def mel_distance(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int) -> float:
    """Multi-resolution mel distance (see the module docstring), mean over items.

    Args:
        reference: [C, S] or [B, C, S] audio, S > 1024.
        estimate: same shape as ``reference``.
        sample_rate: sample rate of both signals in Hz (sets the mel filterbank).
    """
    _check_sample_rate(sample_rate)
    ref, est = _as_batch(reference, estimate)
    return float(_mel_distance_per_item(ref, est, sample_rate).mean())


def si_sdr(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """Scale-invariant SDR in dB (see the module docstring), mean over items.

    Args:
        reference: [C, S] or [B, C, S] audio.
        estimate: same shape as ``reference``.
    """
    ref, est = _as_batch(reference, estimate)
    return float(_si_sdr_per_item(ref, est).mean())


def _check_sample_rate(sample_rate: int) -> None:
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate}.")


@dataclass(frozen=True)
class ReconstructionScores:
    """Reconstruction metrics over ``num_items`` items (aggregation: module docstring).

    Shares are fractions in [0, 1]; ``chroma_correlation``,
    ``harmonic_detail_correlation`` and ``pitch_agreement`` are None when no item defines
    them.
    """

    stft_distance: float
    mel_distance: float
    si_sdr: float
    dc_offset: float
    reference_dc_offset: float
    added_tone_db: float
    worst_added_tone_db: float
    chroma_correlation: float | None
    harmonic_detail_correlation: float | None
    pitched_share_reference: float
    pitched_share_estimate: float
    pitch_agreement: float | None
    num_items: int

    def as_dict(self) -> dict[str, float | int]:
        """The scores as a plain dict (e.g. for JSON output)."""
        return asdict(self)


class _Mean:
    """Running sum and count of the defined (non-NaN) values of a per-item score."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def add(self, values: torch.Tensor) -> None:
        defined = values[~values.isnan()].double()
        self.total += float(defined.sum())
        self.count += int(defined.numel())

    def merge(self, other: _Mean) -> None:
        self.total += other.total
        self.count += other.count

    def mean(self) -> float | None:
        return self.total / self.count if self.count else None


_FIDELITY_MEANS = ("dc_offset", "reference_dc_offset", "added_tone_db", "chroma_correlation",
                   "harmonic_detail_correlation", "pitched_share_reference",
                   "pitched_share_estimate", "pitch_agreement")


class ReconstructionMetrics:
    """Accumulates per-item STFT distance, mel distance, SI-SDR and the fidelity checks.

    All updates of one accumulator must use the same sample rate (the mel distance
    depends on it).
    """

    def __init__(self) -> None:
        self._stft_sum = 0.0
        self._mel_sum = 0.0
        self._si_sdr_sum = 0.0
        self._fidelity = {name: _Mean() for name in _FIDELITY_MEANS}
        self._worst_added_tone_db = -math.inf
        self._count = 0
        self._sample_rate: int | None = None

    @property
    def num_items(self) -> int:
        """Number of items accumulated so far."""
        return self._count

    def _use_sample_rate(self, sample_rate: int | None) -> None:
        if sample_rate is None:
            return
        if self._sample_rate is None:
            self._sample_rate = sample_rate
        elif self._sample_rate != sample_rate:
            raise ValueError(
                f"this accumulator holds items at {self._sample_rate} Hz and cannot take items "
                f"at {sample_rate} Hz; resample the audio or use a separate accumulator."
            )

    def update(self, reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int) -> None:
        """Score a batch of items and add them to the running sums.

        Args:
            reference: [B, C, S] or [C, S] (one item) original audio, S > 1024.
            estimate: reconstruction of the same shape (trim both to equal length first).
            sample_rate: sample rate of both in Hz.
        """
        _check_sample_rate(sample_rate)
        ref, est = _as_batch(reference, estimate)
        self._use_sample_rate(sample_rate)
        self._stft_sum += float(_stft_distance_per_item(ref, est).double().sum())
        self._mel_sum += float(_mel_distance_per_item(ref, est, sample_rate).double().sum())
        self._si_sdr_sum += float(_si_sdr_per_item(ref, est).sum())
        fidelity = fidelity_scores(ref, est, sample_rate)
        for name, mean in self._fidelity.items():
            mean.add(getattr(fidelity, name))
        self._worst_added_tone_db = max(self._worst_added_tone_db,
                                        float(fidelity.added_tone_db.max()))
        self._count += int(ref.shape[0])

    def merge(self, other: ReconstructionMetrics) -> None:
        """Add the items accumulated by ``other`` (e.g. from another worker) to this one."""
        self._use_sample_rate(other._sample_rate)
        self._stft_sum += other._stft_sum
        self._mel_sum += other._mel_sum
        self._si_sdr_sum += other._si_sdr_sum
        for name, mean in self._fidelity.items():
            mean.merge(other._fidelity[name])
        self._worst_added_tone_db = max(self._worst_added_tone_db, other._worst_added_tone_db)
        self._count += other._count

    def compute(self) -> ReconstructionScores:
        """Means over all accumulated items."""
        if self._count == 0:
            raise ValueError("no items were scored; call update() before compute().")
        n = self._count
        means = {name: mean.mean() for name, mean in self._fidelity.items()}
        return ReconstructionScores(
            stft_distance=self._stft_sum / n,
            mel_distance=self._mel_sum / n,
            si_sdr=self._si_sdr_sum / n,
            dc_offset=means["dc_offset"],
            reference_dc_offset=means["reference_dc_offset"],
            added_tone_db=means["added_tone_db"],
            worst_added_tone_db=self._worst_added_tone_db,
            chroma_correlation=means["chroma_correlation"],
            harmonic_detail_correlation=means["harmonic_detail_correlation"],
            pitched_share_reference=means["pitched_share_reference"],
            pitched_share_estimate=means["pitched_share_estimate"],
            pitch_agreement=means["pitch_agreement"],
            num_items=n,
        )


def _audio_files_by_key(folder: Path) -> dict[Path, Path]:
    """Audio files under ``folder`` keyed by relative path without extension."""
    files: dict[Path, Path] = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in AUDIO_EXTENSIONS:
            continue
        key = path.relative_to(folder).with_suffix("")
        if key in files:
            raise ValueError(
                f"{folder}: {files[key].name} and {path.name} share the name {key}; keep one "
                "audio file per name so that references and estimates can be matched."
            )
        files[key] = path
    return files


def _missing_message(keys: list[Path], where: Path) -> str:
    shown = ", ".join(str(k) for k in keys[:10])
    more = f" and {len(keys) - 10} more" if len(keys) > 10 else ""
    return f"{len(keys)} file(s) have no counterpart in {where}: {shown}{more}"


def _pair_paths(reference: Path, estimate: Path) -> list[tuple[Path, Path]]:
    if reference.is_dir() != estimate.is_dir():
        raise ValueError(
            f"reference {reference} and estimate {estimate} must both be files or both be folders."
        )
    if not reference.is_dir():
        return [(reference, estimate)]
    refs = _audio_files_by_key(reference)
    ests = _audio_files_by_key(estimate)
    if not refs:
        raise ValueError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) found under {reference}.")
    problems = []
    no_estimate = sorted(set(refs) - set(ests))
    no_reference = sorted(set(ests) - set(refs))
    if no_estimate:
        problems.append(_missing_message(no_estimate, estimate))
    if no_reference:
        problems.append(_missing_message(no_reference, reference))
    if problems:
        raise ValueError(
            "reference and estimate folders do not match (files are paired by relative path, "
            "extension ignored): " + "; ".join(problems) + "."
        )
    return [(refs[key], ests[key]) for key in sorted(refs)]


def compare_audio(
    reference_path: str | os.PathLike[str],
    estimate_path: str | os.PathLike[str],
    *,
    sample_rate: int = 44100,
) -> ReconstructionScores:
    """Score reconstructions stored on disk against their originals.

    Args:
        reference_path: an audio file, or a folder of audio files (wav/flac/ogg/mp3,
            searched recursively).
        estimate_path: the matching file, or a folder with a file for every reference at
            the same relative path (the extension may differ, e.g. song.mp3 vs song.wav).
        sample_rate: both sides are loaded at this rate, as stereo.

    Each pair is trimmed to the shorter of the two lengths (a warning is logged when
    they differ by more than 1%) and scored as one item.

    Raises:
        ValueError: a file has no counterpart (up to 10 names are listed), the paths mix
            a file and a folder, or a folder holds no audio.
        AudioFileError: a file cannot be decoded.
    """
    _check_sample_rate(sample_rate)
    metrics = ReconstructionMetrics()
    for ref_file, est_file in _pair_paths(Path(reference_path), Path(estimate_path)):
        ref = load_audio(ref_file, sample_rate=sample_rate, channels=2).audio  # [2, S]
        est = load_audio(est_file, sample_rate=sample_rate, channels=2).audio  # [2, S']
        length = min(ref.shape[-1], est.shape[-1])
        if abs(ref.shape[-1] - est.shape[-1]) > 0.01 * max(ref.shape[-1], est.shape[-1]):
            logger.warning(
                "%s has %d samples but %s has %d at %d Hz (more than 1%% apart); scoring the "
                "first %d samples of each.",
                ref_file,
                ref.shape[-1],
                est_file,
                est.shape[-1],
                sample_rate,
                length,
            )
        metrics.update(ref[:, :length], est[:, :length], sample_rate)
        logger.debug("scored %s against %s", est_file, ref_file)
    return metrics.compute()
