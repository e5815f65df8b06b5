"""Embedding models for the distribution metrics, each loaded lazily from a local path.

Every embedder takes audio [B, C, S] at any sample rate, peak-normalises each item to
-1 dBFS (as the paper's tooling, stable-audio-metrics, does), resamples and mixes down
as its model expects, and returns what its metric needs:

- ``own_clap`` (longplay's CLAP, offline): clip embeddings [B, E] for the CLAP score
  and window embeddings [B, F, E] (10 s windows, 5 s hop) for a Fréchet distance;
- ``laion_clap``: LAION-CLAP through the PyTorch port in ``transformers``
  (``ClapModel``; a local folder such as ``laion/clap-htsat-unfused`` downloaded
  beforehand), 48 kHz mono, for the paper's CLAP score;
- ``openl3`` / ``passt``: FD_openl3 (mel256, music, 512-d, hop 0.5 s, L and R
  concatenated) and KL_passt (10 s windows, 5 s hop, logits averaged) through the
  optional PyTorch ports ``torchopenl3`` and ``hear21passt`` with a local checkpoint.

Shape legend: B items, C channels, S samples, F frames, E embedding width, K classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from longplay.audio.io import resample

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
    from longplay.conditioning import load_clap

    model = load_clap(folder)
    return ClapEmbedder("own CLAP", model.sample_rate, model.embed_audio,
                        lambda prompts: model.embed_text(model.tokenize(prompts)))


def _missing(what: str, install: str) -> ImportError:
    return ImportError(f"{what} needs an optional package that is not installed: {install}")


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


def openl3(checkpoint: str | Path | None = None):
    """OpenL3 frame embeddings for FD_openl3 through ``torchopenl3`` (a PyTorch port of
    the TensorFlow model); returns ``(audio [B, C, S], sample_rate) -> [B, F, 1024]``
    (512-d per channel, L and R concatenated, hop 0.5 s)."""
    try:
        import torchopenl3
    except ImportError:
        raise _missing("FD_openl3", "pip install torchopenl3 (and pass --openl3 with its "
                       "weights if they are not bundled)") from None

    model = torchopenl3.models.load_audio_embedding_model(
        input_repr="mel256", content_type="music", embedding_size=512)
    if checkpoint is not None:
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))

    def embed(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
        audio = peak_normalise(audio.float())
        per_channel = []
        for c in range(audio.shape[1]):
            emb, _ = torchopenl3.get_audio_embedding(
                [a.numpy() for a in audio[:, c]], sample_rate, model=model, hop_size=0.5,
                center=True, batch_size=16)
            per_channel.append(torch.stack([torch.as_tensor(e) for e in emb]))
        return torch.cat(per_channel, dim=-1)

    return embed


def passt(checkpoint: str | Path | None = None):
    """PaSST AudioSet logits for KL_passt through ``hear21passt``; returns
    ``(audio [B, C, S], sample_rate) -> [B, 527]`` (10 s windows at 32 kHz mono, 5 s hop,
    logits averaged over windows)."""
    try:
        from hear21passt.base import get_basic_model
    except ImportError:
        raise _missing("KL_passt", "pip install hear21passt (and pass --passt with a local "
                       "checkpoint)") from None
    model = get_basic_model(mode="logits", pretrained=checkpoint is None)
    if checkpoint is not None:
        model.net.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    model.eval()

    def logits(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
        audio = peak_normalise(audio.float()).mean(dim=1, keepdim=True)
        audio = resample(audio, sample_rate, 32000)[:, 0]  # [B, S]
        parts = windows(audio[:, None], 320000, 160000)[:, :, 0]  # [B, F, W]
        with torch.inference_mode():
            out = model(parts.flatten(0, 1)).view(parts.shape[0], parts.shape[1], -1)
        return out.mean(dim=1)

    return logits
