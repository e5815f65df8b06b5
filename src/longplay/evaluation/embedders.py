"""Embedding models for the distribution metrics, each loaded lazily from a local path.

Every embedder takes audio [B, C, S] at any sample rate, peak-normalises it to -1 dBFS
(as the paper's tooling, stable-audio-metrics, does), resamples and mixes down as its
model expects, and returns what its metric needs:

- ``own_clap`` (longplay's CLAP, offline): clip embeddings [B, E] for the CLAP score
  and window embeddings [B, F, E] (10 s windows, 5 s hop) for a Fréchet distance;
- ``laion_clap``: LAION-CLAP through the PyTorch port in ``transformers``
  (``ClapModel``; a local folder such as ``laion/clap-htsat-unfused`` downloaded
  beforehand), 48 kHz mono, for the paper's CLAP score;
- ``openl3``: frame embeddings [B, F, 1024] for FD_openl3;
- ``passt``: AudioSet logits [B, 527] for KL_passt.

FD_openl3 and KL_passt follow stable-audio-metrics (``src/openl3_fd.py`` with
``channels=2``, ``openl3_hop_size=0.5``; ``src/passt_kld.py`` with ``collect='mean'``):

- OpenL3: the item (both channels together) is peak-normalised, resampled to 48 kHz,
  and each channel is embedded on its own with OpenL3 mel256 / music / 512-d, 1 s
  frames every 0.5 s centred as openl3 does (the signal is padded by 0.5 s at the start
  and zero-padded to a whole hop at the end: F = 1 + ceil((S / 48000 - 0.5) / 0.5)
  frames, one for clips of up to 0.5 s). Frame f of the item is [left 512 | right 512]
  = 1024 values. A mono item is embedded once and its embedding used for both halves
  (stable-audio-metrics duplicates mono to stereo); more than two channels are an error.
- PaSST: the item is mixed to mono, resampled to 32 kHz and peak-normalised; windows of
  10 s start every 5 s at 0, 5, 10, ... s while the start is before the end minus 5 s
  (at least one window); a window shorter than 10 s is zero-padded to 10 s unless it
  holds at most 1.5 s (15 %) of audio, when it is used as it is (that happens only for
  clips of at most 1.5 s). The logits of the windows are averaged; the softmax and the
  KL(generated || reference) are taken by ``distribution_metrics.KLDivergence``
  (stable-audio-metrics adds 1e-6 to the reference probabilities: ``eps=1e-6``).

Both models come from PyTorch ports on PyPI, which are installed WITHOUT their declared
dependencies (``make eval-deps``, run by ``make install``): their requirements name
torchaudio, timm and thereby torchvision, which would replace the CPU build of torch.
What the code used here imports is in the ``eval`` extra of pyproject.toml.

- ``torchopenl3`` 1.0.1 (the PyTorch port of the TensorFlow ``openl3``, whose weights
  were converted from the original model; chosen because the original needs
  TensorFlow): the model class ``torchopenl3.models.PytorchOpenl3`` (its kapre-style
  STFT and mel filters are buffers that the checkpoint overwrites) and
  ``torchopenl3.get_audio_embedding`` for the framing. Its import needs librosa, julius,
  resampy and six; the resampling of those packages is not used (the audio reaches it
  at 48 kHz). Weights: ``torchopenl3_mel256_music_512.pth.tar`` (a state dict), which
  ``torchopenl3.core.get_model_path("mel256", "music", 512)`` names and the package
  would download; here it is read only from the path given.
- ``hear21passt`` 0.0.26 (the PaSST authors' own PyTorch package): only the network
  ``hear21passt.models.passt.get_model(arch="passt_s_swa_p16_128_ap476")``, the model
  of ``hear21passt.base.get_basic_model`` that stable-audio-metrics uses, with its
  ``checkpoint_filter_fn``. Its spectrogram front end (``AugmentMelSTFT``) imports
  torchaudio, so :class:`PasstMel` is a copy of its evaluation path (pre-emphasis,
  STFT 1024 / window 800 / hop 320, 128 Kaldi mel bands 0 to 15 kHz, log, (x + 4.5) / 5)
  with the Kaldi mel banks of ``torchaudio.compliance.kaldi.get_mel_banks`` written out
  in :func:`kaldi_mel_banks`. The network module imports timm only to download
  checkpoints and timm needs torchvision; when timm cannot be imported, a placeholder
  that refuses to download stands in for it while that module is imported. Weights:
  ``passt-s-f128-p16-s10-ap.476-swa.pt`` (a state dict of the network) from the URL in
  ``hear21passt.models.passt.default_cfgs``.

Shape legend: B items, C channels, S samples, F frames, E embedding width, K classes,
N windows, M mel bands, T spectrogram frames.
"""

from __future__ import annotations

import contextlib
import io
import math
import sys
import types
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from longplay.audio import resample
from longplay.checkpoints import load_clap

PEAK_DBFS = -1.0


def peak_normalise(audio: torch.Tensor, dbfs: float = PEAK_DBFS) -> torch.Tensor:
    """audio [B, C, S] with each item scaled so that its peak is ``dbfs`` (silent items
    are left as they are)."""
    peak = audio.abs().flatten(1).amax(dim=1).clamp(min=1e-12)  # [B]
    target = 10 ** (dbfs / 20)
    return audio * (target / peak).view(-1, 1, 1)


def windows(audio: torch.Tensor, size: int, hop: int) -> torch.Tensor:
    """[B, C, S] -> [B, F, C, size]: windows of ``size`` samples every ``hop`` (a clip
    shorter than one window is zero-padded to it)."""
    if audio.shape[-1] < size:
        audio = torch.nn.functional.pad(audio, (0, size - audio.shape[-1]))
    count = 1 + (audio.shape[-1] - size) // hop
    return torch.stack([audio[..., i * hop: i * hop + size] for i in range(count)], dim=1)


@dataclass
class ClapEmbedder:
    """Clip and window embeddings plus text embeddings of a CLAP-like model."""

    name: str
    sample_rate: int
    _audio: Any  # (audio [N, C, S] at sample_rate) -> [N, E]
    _text: Any  # (prompts) -> [N, E]
    window_s: float = 10.0
    hop_s: float = 5.0

    def _prepare(self, audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
        audio = peak_normalise(audio.float())
        if sample_rate != self.sample_rate:
            audio = resample(audio, sample_rate, self.sample_rate)
        return audio

    def embed_audio(self, audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """[B, C, S] -> [B, E]: one embedding per clip."""
        with torch.inference_mode():
            return self._audio(self._prepare(audio, sample_rate)).float()

    def embed_windows(self, audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """[B, C, S] -> [B, F, E]: one embedding per window (for a Fréchet distance)."""
        audio = self._prepare(audio, sample_rate)
        parts = windows(audio, round(self.window_s * self.sample_rate),
                        round(self.hop_s * self.sample_rate))  # [B, F, C, W]
        b, f = parts.shape[:2]
        with torch.inference_mode():
            flat = self._audio(parts.flatten(0, 1)).float()  # [B * F, E]
        return flat.view(b, f, -1)

    def embed_text(self, prompts: Sequence[str]) -> torch.Tensor:
        with torch.inference_mode():
            return self._text(list(prompts)).float()


def own_clap(folder: str | Path) -> ClapEmbedder:
    """longplay's CLAP from a folder written by ``save_clap`` / ``longplay export``."""
    model = load_clap(folder)
    return ClapEmbedder("own CLAP", model.sample_rate, model.embed_audio,
                        lambda prompts: model.embed_text(model.tokenize(prompts)))


def _missing(what: str, install: str, cause: BaseException | None = None) -> ImportError:
    detail = f" ({cause})" if cause is not None else ""
    return ImportError(f"{what} needs an optional package that is not installed{detail}: "
                       f"{install}")


def laion_clap(folder: str | Path) -> ClapEmbedder:
    """LAION-CLAP (``transformers.ClapModel``) from a local Hugging Face folder, e.g. a
    download of ``laion/clap-htsat-unfused`` or ``laion/larger_clap_music``."""
    try:
        from transformers import ClapModel, ClapProcessor
    except ImportError:  # pragma: no cover - transformers is a dependency
        raise _missing("LAION-CLAP", "pip install transformers") from None
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"no LAION-CLAP model in {folder}: download a Hugging Face CLAP folder (e.g. "
            "laion/clap-htsat-unfused: config.json, weights, tokenizer and "
            "preprocessor_config.json) and pass its path")
    model = ClapModel.from_pretrained(str(folder)).eval()
    processor = ClapProcessor.from_pretrained(str(folder))
    rate = int(processor.feature_extractor.sampling_rate)

    def features(out: Any) -> torch.Tensor:
        # transformers 4 returns the projected embedding, 5 an output whose
        # pooler_output is that embedding.
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def audio_fn(audio: torch.Tensor) -> torch.Tensor:
        mono = audio.mean(dim=1)  # [N, S]
        inputs = processor(audio=[m.numpy() for m in mono], sampling_rate=rate,
                           return_tensors="pt")
        return features(model.get_audio_features(**{k: v for k, v in inputs.items()
                                                    if k in ("input_features", "is_longer")}))

    def text_fn(prompts: list[str]) -> torch.Tensor:
        inputs = processor(text=prompts, return_tensors="pt", padding=True)
        return features(model.get_text_features(input_ids=inputs["input_ids"],
                                                attention_mask=inputs["attention_mask"]))

    return ClapEmbedder("LAION-CLAP", rate, audio_fn, text_fn)


# -- FD_openl3 and KL_passt: PyTorch ports of the paper's pretrained models ----------------

EVAL_INSTALL = ("make eval-deps, or by hand: pip install 'longplay[eval]' && "
                "pip install --no-deps torchopenl3==1.0.1 hear21passt==0.0.26")

OPENL3_SAMPLE_RATE = 48000
OPENL3_HOP_S = 0.5
OPENL3_WIDTH = 512  # per channel; the item's frame is [left | right], 1024 values
OPENL3_FILE = "torchopenl3_mel256_music_512.pth.tar"

PASST_SAMPLE_RATE = 32000
PASST_WINDOW_S = 10.0
PASST_HOP_S = 5.0
PASST_MIN_FILL = 0.15  # a window with at most this share of audio is not zero-padded
PASST_ARCH = "passt_s_swa_p16_128_ap476"
PASST_FILE = "passt-s-f128-p16-s10-ap.476-swa.pt"
PASST_CLASSES = 527

AudioFn = Callable[[torch.Tensor, int], torch.Tensor]


def _weights_file(path: str | Path | None, expected: str, what: str, url: str,
                  option: str) -> Path:
    """The local weights file: ``path`` itself, or ``path / expected`` for a folder."""
    where = f"download {expected} from {url} and pass its path (or its folder) with {option}"
    if path is None:
        raise FileNotFoundError(f"{what} needs its weights file: {where}")
    path = Path(path).expanduser()
    file = path / expected if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no {what} weights at {file}: {where}")
    return file


def _read_state_dict(file: Path, what: str) -> dict[str, torch.Tensor]:
    """The state dict in ``file``: a plain one, or one under "state_dict" / "model"."""
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{file} is not a PyTorch checkpoint that can be read safely "
                         f"({type(error).__name__}: {str(error)[:200]}); {what} expects a "
                         "state dict") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{file} holds a {type(state).__name__}, not the state dict of {what}")
    return state


def _load_state_dict(module: torch.nn.Module, state: dict[str, torch.Tensor], file: Path,
                     what: str, *, prefix: str = "",
                     convert: Callable[[dict], dict] | None = None) -> None:
    """Load ``state`` (read from ``file``) into ``module``, strictly; keys under ``prefix``
    lose it (and the others are dropped) when there are any."""
    if prefix and any(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    try:
        if convert is not None:
            state = convert(state)
        module.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as error:
        raise ValueError(f"{file} does not hold the weights of {what}: "
                         f"{type(error).__name__}: {str(error)[:500]}") from None


def openl3(checkpoint: str | Path | None, *, batch_size: int = 16) -> AudioFn:
    """FD_openl3 frame embeddings through ``torchopenl3`` (see the module docstring).

    Args:
        checkpoint: ``torchopenl3_mel256_music_512.pth.tar`` or a folder that holds it.
        batch_size: 1 s frames per forward pass.

    Returns:
        ``(audio [B, C, S], sample_rate) -> [B, F, 1024]`` float32 (C is 1 or 2): per
        frame the 512-d embedding of the left channel, then that of the right one.
    """
    try:
        import torchopenl3
        from torchopenl3.core import get_model_path
        from torchopenl3.models import PytorchOpenl3
    except ImportError as error:
        raise _missing("FD_openl3", f"torchopenl3 ({EVAL_INSTALL})", error) from None
    file = _weights_file(checkpoint, OPENL3_FILE, "OpenL3 (torchopenl3 mel256/music/512)",
                         get_model_path("mel256", "music", OPENL3_WIDTH), "--openl3")
    what = "torchopenl3's mel256/music/512 model"
    state = _read_state_dict(file, what)
    with warnings.catch_warnings():
        # librosa warns of empty bands in the 256-band mel basis, a buffer that the
        # checkpoint replaces.
        warnings.simplefilter("ignore")
        model = PytorchOpenl3(content_type="music", input_repr="mel256",
                              embedding_size=OPENL3_WIDTH)
    _load_state_dict(model, state, file, what)
    model.eval()

    def embed(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
        if audio.dim() != 3 or audio.shape[1] not in (1, 2):
            raise ValueError("OpenL3 embeds audio [B, C, S] with C = 1 or 2 channels, got "
                             f"shape {tuple(audio.shape)}")
        b, c = audio.shape[:2]
        audio = resample(peak_normalise(audio.detach().float().cpu()), sample_rate,
                         OPENL3_SAMPLE_RATE)
        with torch.inference_mode():
            # [B * C, S] at 48 kHz -> [B * C, F, 512], framed as openl3 frames.
            frames, _ = torchopenl3.get_audio_embedding(
                audio.reshape(b * c, -1).contiguous(), OPENL3_SAMPLE_RATE, model=model,
                center=True, hop_size=OPENL3_HOP_S, batch_size=batch_size, verbose=False)
        frames = frames.float().view(b, c, -1, OPENL3_WIDTH)  # [B, C, F, 512]
        return torch.cat([frames[:, 0], frames[:, -1]], dim=-1)  # [B, F, 1024]

    return embed


def kaldi_mel_banks(num_bins: int, n_fft: int, sample_rate: float, low_freq: float,
                    high_freq: float) -> torch.Tensor:
    """Triangular mel filters [num_bins, n_fft // 2] (float32) on the Kaldi mel scale
    1127 ln(1 + f / 700), equally spaced between ``low_freq`` and ``high_freq``: the
    ``bins`` of ``torchaudio.compliance.kaldi.get_mel_banks`` without VTLN warping
    (``vtln_warp_factor=1``), which hear21passt's front end uses."""
    if not 0.0 <= low_freq < high_freq <= sample_rate / 2:
        raise ValueError(f"need 0 <= low_freq < high_freq <= Nyquist, got {low_freq}, "
                         f"{high_freq} at {sample_rate} Hz")
    fft_bin_width = sample_rate / n_fft
    mel_low = 1127.0 * math.log(1.0 + low_freq / 700.0)
    mel_high = 1127.0 * math.log(1.0 + high_freq / 700.0)
    delta = (mel_high - mel_low) / (num_bins + 1)  # the outer bands reach past the ends
    band = torch.arange(num_bins).unsqueeze(1)  # [num_bins, 1]
    left = mel_low + band * delta
    center = mel_low + (band + 1.0) * delta
    right = mel_low + (band + 2.0) * delta
    mel = 1127.0 * (1.0 + fft_bin_width * torch.arange(n_fft / 2) / 700.0).log()
    mel = mel.unsqueeze(0)  # [1, n_fft // 2]
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    return torch.max(torch.zeros(1), torch.min(up, down))


class PasstMel(torch.nn.Module):
    """hear21passt's spectrogram front end (``AugmentMelSTFT`` as ``get_basic_model``
    configures it) in evaluation mode: waveform [N, S] at 32 kHz -> [N, 128, T] with
    T = 1 + (S - 1) // 320 (1000 frames for 10 s).

    Pre-emphasis y[n] = x[n + 1] - 0.97 x[n], a centred STFT (reflect padding) of 1024
    points with a symmetric Hann window of 800 and hop 320, power spectrum, 128 Kaldi mel
    bands from 0 to 15 kHz (sr / 2 - 1000: the middle of the package's fmax
    augmentation range) with a zero weight for the Nyquist bin, ln(mel + 1e-5), then
    (x + 4.5) / 5.
    """

    def __init__(self, n_mels: int = 128, sample_rate: int = PASST_SAMPLE_RATE,
                 win_length: int = 800, hop: int = 320, n_fft: int = 1024,
                 fmin: float = 0.0, fmax: float | None = None) -> None:
        super().__init__()
        self.n_fft, self.hop, self.win_length = n_fft, hop, win_length
        fmax = sample_rate // 2 - 1000 if fmax is None else fmax
        self.register_buffer("window", torch.hann_window(win_length, periodic=False),
                             persistent=False)
        self.register_buffer("preemphasis", torch.tensor([[[-0.97, 1.0]]]), persistent=False)
        banks = kaldi_mel_banks(n_mels, n_fft, sample_rate, fmin, fmax)  # [M, n_fft // 2]
        self.register_buffer("mel_basis", F.pad(banks, (0, 1)), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = F.conv1d(audio.unsqueeze(1), self.preemphasis).squeeze(1)  # [N, S - 1]
        spec = torch.stft(x, self.n_fft, hop_length=self.hop, win_length=self.win_length,
                          window=self.window, center=True, normalized=False,
                          return_complex=True)  # [N, n_fft // 2 + 1, T]
        power = torch.view_as_real(spec).pow(2).sum(dim=-1)
        mel = torch.matmul(self.mel_basis, power)  # [N, M, T]
        return ((mel + 1e-5).log() + 4.5) / 5.0


def passt_windows(audio: torch.Tensor, size: int, hop: int,
                  min_fill: float = PASST_MIN_FILL) -> torch.Tensor:
    """[B, S] -> [B, N, W]: stable-audio-metrics' PaSST analysis windows.

    Windows of ``size`` samples start at 0, hop, 2 hop, ... while the start is before
    S - hop (at least one window); windows are zero-padded to ``size``, except that a
    clip of at most ``min_fill * size`` samples is one window as it is (W = S). With
    hop >= min_fill * size every other window holds more than that, so all of them are
    padded.
    """
    s = audio.shape[-1]
    if s <= min_fill * size:
        return audio[:, None]
    starts = range(0, max(hop, s - hop), hop)
    return torch.stack([F.pad(audio[:, i: i + size], (0, max(0, i + size - s)))
                        for i in starts], dim=1)


def _refuse_download(url: str, *args: Any, **kwargs: Any) -> str:
    raise RuntimeError(f"longplay loads PaSST weights from a local file, not from {url}")


@contextlib.contextmanager
def _timm_placeholder() -> Iterator[None]:
    """hear21passt's helpers import timm's ``download_cached_file`` at import time, only to
    download checkpoints; timm itself needs torchvision. When timm cannot be imported, a
    placeholder module that refuses to download stands in while the block runs."""
    try:
        import timm.models._hub  # noqa: F401
    except ImportError:
        pass
    else:
        yield
        return
    names = ("timm", "timm.models", "timm.models._hub")
    saved = {name: sys.modules.get(name) for name in names}
    placeholders = {name: types.ModuleType(name) for name in names}
    placeholders["timm.models._hub"].download_cached_file = _refuse_download  # type: ignore[attr-defined]
    sys.modules.update(placeholders)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def passt(checkpoint: str | Path | None, *, batch_size: int = 4) -> AudioFn:
    """KL_passt logits through ``hear21passt`` (see the module docstring).

    Args:
        checkpoint: ``passt-s-f128-p16-s10-ap.476-swa.pt`` (the network's state dict; a
            ``PasstBasicWrapper`` state dict with ``net.`` keys works too) or a folder
            that holds it.
        batch_size: 10 s windows per forward pass.

    Returns:
        ``(audio [B, C, S], sample_rate) -> [B, 527]`` float32: the AudioSet logits of the
        windows of each item, averaged (the softmax comes after the average).
    """
    try:
        with _timm_placeholder():
            from hear21passt.models import passt as network
    except ImportError as error:
        raise _missing("KL_passt", f"hear21passt ({EVAL_INSTALL})", error) from None
    file = _weights_file(checkpoint, PASST_FILE, "PaSST (hear21passt, passt-s swa, AudioSet)",
                         network.default_cfgs[PASST_ARCH]["url"], "--passt")
    what = f"hear21passt's {PASST_ARCH}"
    state = _read_state_dict(file, what)
    with contextlib.redirect_stdout(io.StringIO()):  # the port prints the whole model
        net = network.get_model(arch=PASST_ARCH, pretrained=False, n_classes=PASST_CLASSES,
                                in_channels=1, fstride=10, tstride=10, input_fdim=128,
                                input_tdim=998)
    _load_state_dict(net, state, file, what, prefix="net.",
                     convert=lambda state: network.checkpoint_filter_fn(state, net))
    net.eval()
    network.first_RUN = False  # otherwise its first forward pass prints tensor shapes
    mel = PasstMel()
    size = round(PASST_WINDOW_S * PASST_SAMPLE_RATE)
    hop = round(PASST_HOP_S * PASST_SAMPLE_RATE)

    def logits(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
        if audio.dim() != 3:
            raise ValueError(f"PaSST takes audio [B, C, S], got shape {tuple(audio.shape)}")
        mono = audio.detach().float().cpu().mean(dim=1, keepdim=True)  # [B, 1, S]
        mono = peak_normalise(resample(mono, sample_rate, PASST_SAMPLE_RATE))[:, 0]
        parts = passt_windows(mono, size, hop)  # [B, N, W]
        b, n = parts.shape[:2]
        out = []
        with torch.inference_mode(), warnings.catch_warnings():
            # PatchEmbed warns that 1000 frames are not its nominal 998 (both give
            # 99 patches in time).
            warnings.simplefilter("ignore")
            for chunk in parts.flatten(0, 1).split(batch_size):
                out.append(net(mel(chunk).unsqueeze(1))[0])  # [n, 527]
        return torch.cat(out).float().view(b, n, -1).mean(dim=1)

    return logits
