"""The audio VAE: encode audio to a Gaussian latent, decode latents to audio,
both in overlapping chunks for long inputs (SYSTEM.md section 2).

Shape legend: B batch, C audio channels, S samples, D latent channels, T latent frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from longplay.autoencoder.blocks import OobleckDecoder, OobleckEncoder
from longplay.autoencoder.distribution import LatentDistribution
from longplay.autoencoder.spectral import SpectralDecoder, SpectralEncoder
from longplay.layers import Compiler, TransientState, WeightNormedConv

ProgressFn = Callable[[int, int], None]
"""Called as ``progress(chunks_done, chunks_total)`` after each chunk."""

DEFAULT_CHUNK_FRAMES = 128
"""Latent frames per chunk (about 6 s of audio): peak memory grows with this, not
with the duration."""

DEFAULT_CONTEXT_FRAMES = 16
"""Latent frames of context decoded on each side of a chunk and then discarded.

The decoder's receptive field is about 9 latent frames on each side and the
encoder's about 8, so 16 frames make chunked processing equal to whole-signal
processing up to float rounding (SYSTEM.md: about 16 latents are needed)."""


DECODE_MEMORY_BUDGET = 1.5 * 2**30
"""Bytes of activations a decode may use by default (``auto_chunk_frames``): with the
full-size VAE's weights this keeps a 4m45s decode under 3 GiB of peak RSS."""

def available_memory_bytes(device: torch.device | str = "cpu") -> int | None:
    """Free memory of ``device``: for a CUDA device what the driver reports free, else
    MemAvailable from /proc/meminfo (Linux); None where neither is known."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@dataclass(frozen=True)
class DecodePlan:
    """Items per decoder call and latent frames per chunk (None: whole)."""

    batch_size: int
    chunk_frames: int | None


def _chunk_spans(num_frames: int, chunk_frames: int | None,
                 context_frames: int) -> list[tuple[int, int, int, int]]:
    """(start, end, ctx_start, ctx_end) in latent frames for each chunk.

    Each chunk produces frames [start, end) and is computed from the input frames
    [ctx_start, ctx_end), its context clipped to the signal.
    """
    if chunk_frames is None or num_frames <= chunk_frames:
        return [(0, num_frames, 0, num_frames)]
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1 (or None for no chunking), got {chunk_frames}")
    if context_frames < 0:
        raise ValueError(f"context_frames must be >= 0, got {context_frames}")
    spans = []
    for start in range(0, num_frames, chunk_frames):
        end = min(start + chunk_frames, num_frames)
        spans.append((start, end, max(0, start - context_frames),
                      min(num_frames, end + context_frames)))
    return spans


class AudioVAE(nn.Module):
    """The audio VAE: 44.1 kHz audio <-> a 64-channel latent at sample_rate / 2048, with
    the Oobleck encoder and decoder (the paper's) or the spectral ones
    (:mod:`longplay.autoencoder.spectral`).

    ``encode`` and ``decode`` work in chunks of ``chunk_frames`` latent frames with
    ``context_frames`` of context on each side, so memory depends on the chunk size
    and not on the duration; inputs of at most ``chunk_frames`` are processed whole.
    Call them under ``torch.inference_mode()`` for inference.
    """

    # A compiled decoder belongs to one user of the weights (see layers.sharing).
    TRANSIENT_STATE: ClassVar[TransientState] = {"_compiled_decoder": lambda: None}

    def __init__(self, audio_channels: int = 2, sample_rate: int = 44100,
                 encoder_channels: int = 128, decoder_channels: int = 128,
                 channel_mults: tuple[int, ...] = (1, 2, 4, 8, 16),
                 strides: tuple[int, ...] = (2, 4, 4, 8, 8), latent_dim: int = 64,
                 final_tanh: bool = False, nearest_upsample: bool = False,
                 architecture: str = "oobleck",
                 encoder_blocks: tuple[int, ...] | None = None,
                 decoder_blocks: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.audio_channels = audio_channels
        self.sample_rate = sample_rate
        self.latent_dim = latent_dim
        self.architecture = architecture
        self.hop_length = math.prod(strides)
        if architecture == "spectral":
            self.encoder = SpectralEncoder(audio_channels, encoder_channels, channel_mults,
                                           strides, encoder_blocks, latent_dim)
            self.decoder = SpectralDecoder(audio_channels, decoder_channels, channel_mults,
                                           strides, decoder_blocks, latent_dim)
        elif architecture == "oobleck":
            self.encoder = OobleckEncoder(audio_channels, encoder_channels, channel_mults,
                                          strides, latent_dim)
            self.decoder = OobleckDecoder(audio_channels, decoder_channels, channel_mults,
                                          strides, latent_dim, final_tanh, nearest_upsample)
        else:
            raise ValueError(f"unknown VAE architecture {architecture!r}; known: oobleck, "
                             "spectral")
        self._compiled_decoder: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def latent_rate(self) -> float:
        """Latent frames per second."""
        return self.sample_rate / self.hop_length

    def _parameter(self) -> torch.Tensor:
        """A parameter of the VAE: its device and dtype are the VAE's."""
        return next(self.parameters())

    def set_conv_dtype(self, dtype: torch.dtype | None) -> AudioVAE:
        """Run the convolutions of inference (no gradients) in ``dtype``, e.g.
        ``torch.bfloat16`` on CPUs with AVX512-BF16 (about 1.5-2x faster decodes,
        benchmarks/vae_decode.py); activations, the Snake nonlinearities and the output
        keep the weights' dtype. None (the default) runs them in the input's dtype.
        Training (gradients on) is not affected."""
        for module in self.modules():
            if isinstance(module, WeightNormedConv):
                module.compute_dtype = dtype
        return self

    def compile_decoder(self, compiler: Compiler | None) -> AudioVAE:
        """Run the decoder of inference (no gradients) through ``compiler``, a
        :class:`~longplay.layers.Compiler` such as ``Compiler("the VAE decoder", "cpu")``;
        None runs it eagerly again. The time axis is marked dynamic, so one compilation
        serves every chunk length of a batch size. The folded convolution weights are
        handed over on each call, so a change of the weights between calls is seen.
        Gradients always run eagerly."""
        self._compiled_decoder = None if compiler is None else compiler.wrap(self.decoder)
        return self

    @contextmanager
    def _decoder_weights_pinned(self, dtype: torch.dtype) -> Iterator[None]:
        """While a compiled decoder runs: its folded weights fixed once for the decode
        (the compiled graph cannot trace the fold cache's version check)."""
        if self._compiled_decoder is None or torch.is_grad_enabled():
            yield
            return
        convs = [m for m in self.decoder.modules() if isinstance(m, WeightNormedConv)]
        for conv in convs:
            conv.pin_folded(dtype)
        try:
            yield
        finally:
            for conv in convs:
                conv.unpin_folded()

    def _decode_piece(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [B, D, T'] -> audio [B, C, T' * hop], compiled when set up."""
        if self._compiled_decoder is None or torch.is_grad_enabled():
            return self.decoder(latents)
        # One compiled graph for every chunk: contiguous whatever the chunk's offset, and
        # the length dynamic (a dynamic batch size trips the CPU backend's shape solver).
        latents = latents.contiguous()
        torch._dynamo.maybe_mark_dynamic(latents, 2)
        return self._compiled_decoder(latents)

    def decode_bytes_per_frame(self, batch: int = 1,
                               dtype: torch.dtype = torch.float32) -> float:
        """Estimated peak activation bytes of decoding one latent frame."""
        itemsize = torch.empty((), dtype=dtype).element_size()
        return self.decoder.bytes_per_latent_frame(itemsize) * batch

    def auto_chunk_frames(self, num_frames: int, *, batch: int = 1,
                          dtype: torch.dtype = torch.float32,
                          budget_bytes: float | None = None,
                          context_frames: int = DEFAULT_CONTEXT_FRAMES) -> int | None:
        """The largest decode chunk (in latent frames) whose activations fit in
        ``budget_bytes``: by default the smaller of ``DECODE_MEMORY_BUDGET`` and half the
        memory available now on the VAE's device. None (no chunking) when the whole input
        fits. Larger chunks are faster (less context decoded twice); smaller ones use less memory.
        Never below 2 * ``context_frames``, where the overlap would dominate."""
        if budget_bytes is None:
            available = available_memory_bytes(self._parameter().device)
            budget_bytes = DECODE_MEMORY_BUDGET if available is None else min(
                DECODE_MEMORY_BUDGET, 0.5 * available)
        frames = int(budget_bytes // self.decode_bytes_per_frame(batch, dtype))
        if frames >= num_frames:
            return None
        return max(2 * context_frames, frames - 2 * context_frames)

    def auto_decode_plan(self, num_frames: int, *, batch: int = 1,
                         dtype: torch.dtype = torch.float32,
                         budget_bytes: float | None = None,
                         context_frames: int = DEFAULT_CONTEXT_FRAMES) -> DecodePlan:
        """How to decode ``batch`` items of ``num_frames`` within the memory budget (see
        :meth:`auto_chunk_frames`): all items at once where their chunks stay at least
        ``4 * context_frames`` long (or none is needed), else fewer items per call, down
        to one at a time, so that a large batch is decoded in efficient chunks within
        the budget instead of many small, overlapping ones beyond it."""
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        for items in range(batch, 0, -1):
            chunk = self.auto_chunk_frames(num_frames, batch=items, dtype=dtype,
                                           budget_bytes=budget_bytes,
                                           context_frames=context_frames)
            if chunk is None or chunk >= 4 * context_frames or items == 1:
                return DecodePlan(items, chunk)
        raise AssertionError("unreachable")

    @property
    def conv_dtype(self) -> torch.dtype | None:
        """The dtype set by :meth:`set_conv_dtype` (None: the input's)."""
        return next((m.compute_dtype for m in self.modules() if isinstance(m, WeightNormedConv)),
                    None)

    def encode(self, audio: torch.Tensor, *, pad: bool = True,
               chunk_frames: int | None = DEFAULT_CHUNK_FRAMES,
               context_frames: int = DEFAULT_CONTEXT_FRAMES,
               progress: ProgressFn | None = None) -> LatentDistribution:
        """audio [B, C, S] -> posterior over latents [B, D, T].

        With ``pad`` (the default) the audio is zero-padded to a multiple of the hop,
        so T = ceil(S / hop) and every sample is represented; ``pad=False`` drops the
        trailing partial frame, T = floor(S / hop), as the reference implementations do.
        """
        if audio.dim() != 3 or audio.shape[1] != self.audio_channels:
            raise ValueError(f"audio must be [B, {self.audio_channels}, S], got "
                             f"{tuple(audio.shape)}")
        hop = self.hop_length
        num_samples = audio.shape[-1]
        if pad and num_samples % hop:
            audio = F.pad(audio, (0, hop - num_samples % hop))
        num_frames = audio.shape[-1] // hop
        if num_frames == 0:
            raise ValueError(f"audio of {num_samples} samples is shorter than one latent frame "
                             f"({hop} samples); pass pad=True or a longer input")
        spans = _chunk_spans(num_frames, chunk_frames, context_frames)
        # Trailing samples short of a frame still reach the last frame through the
        # convolutions' context, as in the reference, so the last chunk keeps them.
        if len(spans) == 1:
            h = self.encoder(audio)
            if progress is not None:
                progress(1, 1)
            return LatentDistribution.from_encoder_output(h)
        h = audio.new_empty(audio.shape[0], 2 * self.latent_dim, num_frames)  # [B, 2D, T]
        for i, (start, end, ctx_start, ctx_end) in enumerate(spans):
            stop = ctx_end * hop if ctx_end < num_frames else audio.shape[-1]
            piece = self.encoder(audio[..., ctx_start * hop: stop])
            h[..., start:end] = piece[..., start - ctx_start: end - ctx_start]
            if progress is not None:
                progress(i + 1, len(spans))
        return LatentDistribution.from_encoder_output(h)

    def decode(self, latents: torch.Tensor, *, num_samples: int | None = None,
               chunk_frames: int | None = DEFAULT_CHUNK_FRAMES,
               context_frames: int = DEFAULT_CONTEXT_FRAMES,
               batch_size: int | None = None,
               progress: ProgressFn | None = None) -> torch.Tensor:
        """latents [B, D, T] -> audio [B, C, T * hop], cut to ``num_samples`` if given.
        ``batch_size`` items go through the decoder at a time (default all B)."""
        if latents.dim() != 3 or latents.shape[1] != self.latent_dim:
            raise ValueError(f"latents must be [B, {self.latent_dim}, T], got "
                             f"{tuple(latents.shape)}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 (or None for all), got {batch_size}")
        hop = self.hop_length
        num_frames = latents.shape[-1]
        if num_samples is not None and not 0 < num_samples <= num_frames * hop:
            raise ValueError(f"num_samples={num_samples} is outside (0, {num_frames * hop}] for "
                             f"{num_frames} latent frames")
        total = latents.shape[0]
        if batch_size is not None and batch_size < total:
            parts = range(0, total, batch_size)
            length = num_frames * hop if num_samples is None else num_samples
            audio = latents.new_empty(total, self.audio_channels, length)
            for k, first in enumerate(parts):
                def part_progress(done: int, n: int, k: int = k) -> None:
                    if progress is not None:
                        progress(k * n + done, len(parts) * n)

                audio[first:first + batch_size] = self.decode(
                    latents[first:first + batch_size], num_samples=num_samples,
                    chunk_frames=chunk_frames, context_frames=context_frames,
                    progress=part_progress)
            return audio
        spans = _chunk_spans(num_frames, chunk_frames, context_frames)
        with self._decoder_weights_pinned(latents.dtype):
            if len(spans) == 1:
                audio = self._decode_piece(latents)
                if progress is not None:
                    progress(1, 1)
            else:
                audio = latents.new_empty(total, self.audio_channels, num_frames * hop)
                for i, (start, end, ctx_start, ctx_end) in enumerate(spans):
                    piece = self._decode_piece(latents[..., ctx_start:ctx_end])  # [B, C, N']
                    audio[..., start * hop: end * hop] = piece[
                        ..., (start - ctx_start) * hop: (end - ctx_start) * hop]
                    del piece
                    if progress is not None:
                        progress(i + 1, len(spans))
        return audio if num_samples is None else audio[..., :num_samples]

    @torch.no_grad()
    def silence_latent(self) -> torch.Tensor:
        """[D] the posterior mean of digital silence, away from the edges: what a latent
        sequence holds where its audio is silent (the padding of a window whose piece ends
        before it). Not zero in general: the encoder's biases shape it."""
        frames = 2 * DEFAULT_CONTEXT_FRAMES + 1
        param = self._parameter()
        silence = torch.zeros(1, self.audio_channels, frames * self.hop_length,
                              device=param.device, dtype=param.dtype)
        return self.encode(silence, chunk_frames=None).mean[0, :, frames // 2].float()

    def reconstruct(self, audio: torch.Tensor, *, sample: bool = False,
                    generator: torch.Generator | None = None,
                    chunk_frames: int | None = DEFAULT_CHUNK_FRAMES,
                    context_frames: int = DEFAULT_CONTEXT_FRAMES) -> torch.Tensor:
        """audio [B, C, S] -> decoded audio [B, C, S]: encode (padded), then decode the
        posterior mean (or a sample) and cut back to the input length."""
        dist = self.encode(audio, chunk_frames=chunk_frames, context_frames=context_frames)
        latents = dist.sample(generator) if sample else dist.mode()
        return self.decode(latents, num_samples=audio.shape[-1], chunk_frames=chunk_frames,
                           context_frames=context_frames)
