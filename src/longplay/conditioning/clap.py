"""The text-audio CLAP model of stage 2 (SYSTEM.md sections 1, 3 and 6).

The Stable Audio 2.0 paper conditions its DiT on the token features of the
next-to-last layer of a CLAP text tower; the audio tower gives one embedding per clip,
used for evaluation (the CLAP score: cosine similarity between a clip and its prompt).
Here the text tower is any Hugging Face encoder (RoBERTa in the paper) and the audio
tower a small CNN over a log-mel spectrogram; both are projected to one joint space
and trained with the symmetric contrastive loss of CLIP/CLAP.

The text tower is frozen by default: it then stays outside the state dict and the
parameters, and gets no gradient. With ``train_text=True`` it is a submodule
(state-dict keys ``text_model.*``) and trains with the rest.

Model folders (``clap_config.json``, weights, the text tower) are read and written by
:mod:`longplay.checkpoints.clap`.

Shape legend: B batch, C audio channels, S samples, M mel bands, T frames, L text
tokens, D text width, W CNN width, E embedding width.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from longplay.audio.spectral import mel_filterbank, stft_magnitude
from longplay.conditioning.text import tokenize_prompts
from longplay.conditioning.types import TokenBatch

__all__ = [
    "TEXT_MODEL_PREFIX",
    "CLAPAudioEncoder",
    "CLAPModel",
    "CLAPOutput",
    "clap_contrastive_loss",
]

TEXT_MODEL_PREFIX = "text_model."
"""State-dict prefix of a text tower trained along (``train_text=True``)."""
_LOG_EPS = 1e-5  # floor of the mel magnitudes before the log
_INIT_TEMPERATURE = 0.07  # CLIP's initial temperature: logit scale starts at 1 / 0.07
_MAX_LOGIT_SCALE = 100.0  # CLIP's cap on the logit scale


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


class ConvBlock(nn.Module):
    """Conv2d 3x3 -> GroupNorm -> GELU -> 2x2 average pooling.

    GroupNorm normalises each example on its own, so an embedding does not depend on
    the rest of the batch (BatchNorm's would).
    """

    def __init__(self, in_width: int, out_width: int, norm_groups: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_width, out_width, kernel_size=3, padding=1, bias=False)
        self.norm = nn.GroupNorm(norm_groups, out_width)
        self.act = nn.GELU()
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, W_in, M, T] -> [B, W_out, M // 2, T // 2]."""
        return self.pool(self.act(self.norm(self.conv(x))))


class CLAPAudioEncoder(nn.Module):
    """The audio tower: audio [B, C, S] -> embedding [B, E] (not normalised).

    Mono mix -> log-mel spectrogram log(mel + 1e-5) (Hann STFT, Slaney mel bands) ->
    one :class:`ConvBlock` per entry of ``widths`` -> mean + max over mel bands and
    frames -> Linear(widths[-1], embed_dim).

    Args:
        sample_rate: sample rate of the input audio in Hz.
        n_fft: STFT window length and FFT size.
        hop_length: samples between STFT frames.
        n_mels: mel bands M; each block halves them, so M >= 2 ** len(widths).
        widths: output width of each convolution block.
        norm_groups: GroupNorm groups; every width must be a multiple of it.
        embed_dim: width E of the output embedding.
    """

    def __init__(self, *, sample_rate: int = 44100, n_fft: int = 1024, hop_length: int = 512,
                 n_mels: int = 64, widths: Sequence[int] = (32, 64, 128, 256),
                 norm_groups: int = 8, embed_dim: int = 512) -> None:
        super().__init__()
        widths = tuple(widths)
        _check_positive(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length,
                        n_mels=n_mels, norm_groups=norm_groups, embed_dim=embed_dim)
        if not widths:
            raise ValueError("widths must name at least one convolution block")
        _check_positive(**{f"widths[{i}]": w for i, w in enumerate(widths)})
        if any(w % norm_groups for w in widths):
            raise ValueError(f"every width must be a multiple of norm_groups={norm_groups}, "
                             f"got widths={list(widths)}")
        if n_mels < 2 ** len(widths):
            raise ValueError(f"{len(widths)} blocks halve the mel bands {len(widths)} times: "
                             f"need n_mels >= {2 ** len(widths)}, got {n_mels}")
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.widths = widths
        self.norm_groups = norm_groups
        self.embed_dim = embed_dim
        # Derived from the arguments, so kept out of the state dict.
        self.register_buffer("mel_basis", mel_filterbank(sample_rate, n_fft, n_mels),
                             persistent=False)  # [M, F]
        self.blocks = nn.ModuleList(
            ConvBlock(w_in, w_out, norm_groups)
            for w_in, w_out in zip((1, *widths[:-1]), widths, strict=True)
        )
        self.proj = nn.Linear(widths[-1], embed_dim)

    @property
    def min_num_samples(self) -> int:
        """The shortest input: every block halves the frames, so T >= 2 ** len(widths)."""
        min_frames = 2 ** len(self.widths)
        return max(self.n_fft // 2 + 1, (min_frames - 1) * self.hop_length)

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, C, S] -> log-mel spectrogram [B, M, T] of the mono mix (float32)."""
        if audio.dim() != 3 or not audio.is_floating_point():
            raise ValueError(f"audio must be a floating tensor [B, C, S], got shape "
                             f"{tuple(audio.shape)} and dtype {audio.dtype}")
        if audio.shape[-1] < self.min_num_samples:
            raise ValueError(
                f"audio of {audio.shape[-1]} samples is too short for the CLAP audio encoder: "
                f"it needs at least {self.min_num_samples} samples "
                f"({self.min_num_samples / self.sample_rate:.3f} s at {self.sample_rate} Hz)")
        mono = audio.float().mean(dim=1)  # [B, S]
        magnitude = stft_magnitude(mono, self.n_fft, self.hop_length)  # [B, F, T]
        mel = self.mel_basis.float() @ magnitude  # [B, M, T]
        return torch.log(mel + _LOG_EPS)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, C, S] at ``sample_rate`` -> embedding [B, E]."""
        x = self.log_mel(audio)[:, None].to(self.proj.weight.dtype)  # [B, 1, M, T]
        for block in self.blocks:
            x = block(x)  # [B, W, M', T']
        pooled = x.mean(dim=(2, 3)) + x.amax(dim=(2, 3))  # [B, W]
        return self.proj(pooled)  # [B, E]


@dataclass(frozen=True)
class CLAPOutput:
    """Joint-space embeddings of paired audio and text.

    Attributes:
        audio_embeds: [B, E] L2-normalised audio embeddings.
        text_embeds: [B, E] L2-normalised text embeddings of the same pairs.
        logit_scale: scalar multiplier of the cosine similarities, exp of the learned log
            scale capped at 100.
    """

    audio_embeds: torch.Tensor
    text_embeds: torch.Tensor
    logit_scale: torch.Tensor

    @property
    def logits_per_audio(self) -> torch.Tensor:
        """[B_audio, B_text] scaled cosine similarities; transpose for text -> audio."""
        return self.logit_scale * self.audio_embeds @ self.text_embeds.T


class CLAPModel(nn.Module):
    """Audio and text towers projected to one joint embedding space.

    Args:
        audio_encoder: the audio tower.
        text_model: a Hugging Face encoder (e.g. ``HFTextEncoder(...).model``). The CLAP
            model takes it over: it sets its ``requires_grad`` (and, frozen, eval mode).
        tokenizer: the Hugging Face tokenizer of ``text_model``.
        embed_dim: width E of the joint space.
        text_layer: the ``hidden_states`` index whose token features are pooled into the
            text embedding; -2 (next-to-last layer) is the paper's conditioning layer, -1
            the last hidden state.
        max_length: tokens L per prompt in :meth:`tokenize`.
        train_text: train the text tower (a submodule, in the state dict) instead of
            keeping it frozen and out of the state dict.
    """

    def __init__(self, audio_encoder: CLAPAudioEncoder, text_model: nn.Module, tokenizer: Any,
                 *, embed_dim: int = 512, text_layer: int = -2, max_length: int = 77,
                 train_text: bool = False) -> None:
        super().__init__()
        _check_positive(embed_dim=embed_dim, max_length=max_length)
        text_config = text_model.config
        num_layers = int(text_config.num_hidden_layers)
        if isinstance(text_layer, bool) or not isinstance(text_layer, int) or not (
                -(num_layers + 1) <= text_layer <= num_layers):
            raise ValueError(f"text_layer={text_layer!r} is not a hidden-states index of a "
                             f"{num_layers}-layer text tower (valid: {-(num_layers + 1)} .. "
                             f"{num_layers})")
        self.embed_dim = embed_dim
        self.text_layer = text_layer
        self.max_length = max_length
        self.train_text = train_text
        self.text_dim = int(getattr(text_config, "d_model", None) or text_config.hidden_size)
        self.tokenizer = tokenizer
        self.audio_encoder = audio_encoder
        if train_text:
            self.text_model = text_model.requires_grad_(True)
        else:
            # Stored past nn.Module's registration: not a submodule, so outside the state
            # dict, parameters() and train()/eval(); _apply still moves it with the model.
            object.__setattr__(self, "text_model", text_model.eval().requires_grad_(False))
        self.text_proj = nn.Linear(self.text_dim, embed_dim)
        self.audio_proj = nn.Linear(audio_encoder.embed_dim, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / _INIT_TEMPERATURE)))

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True):
        # .to(), .cuda(), .half() reach submodules through _apply; the frozen text tower
        # is no submodule, so it is moved here.
        super()._apply(fn, recurse)
        if recurse and not self.train_text:
            self.text_model._apply(fn)
        return self

    @property
    def sample_rate(self) -> int:
        return self.audio_encoder.sample_rate

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    def tokenize(self, prompts: Sequence[str]) -> TokenBatch:
        """prompts -> input_ids [B, L], attention_mask [B, L] (L = max_length)."""
        return tokenize_prompts(self.tokenizer, prompts, self.max_length)

    def text_features(self, tokens: TokenBatch) -> torch.Tensor:
        """tokens -> hidden states [B, L, D] of ``text_layer`` (padding not zeroed)."""
        ids = tokens.input_ids.to(self.device)
        mask = tokens.attention_mask.to(self.device)
        with torch.set_grad_enabled(self.train_text and torch.is_grad_enabled()):
            out = self.text_model(input_ids=ids, attention_mask=mask,
                                  output_hidden_states=self.text_layer != -1)
        if self.text_layer == -1:  # as HFTextEncoder (T5's follows its final norm)
            return out.last_hidden_state
        return out.hidden_states[self.text_layer]

    def embed_text(self, tokens: TokenBatch) -> torch.Tensor:
        """tokens -> [B, E]: mask-weighted mean of the ``text_layer`` token features,
        projected and L2-normalised."""
        mask = tokens.attention_mask.to(self.device).bool()  # [B, L]
        if not mask.any(dim=1).all():
            raise ValueError("every prompt needs at least one token in its attention mask")
        hidden = self.text_features(tokens).to(self.text_proj.weight.dtype)  # [B, L, D]
        weights = mask[..., None].to(hidden.dtype)  # [B, L, 1]
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1)  # [B, D]
        return F.normalize(self.text_proj(pooled), dim=-1)  # [B, E]

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, C, S] at ``sample_rate`` -> [B, E], L2-normalised."""
        features = self.audio_encoder(audio.to(self.device))  # [B, E_audio]
        return F.normalize(self.audio_proj(features), dim=-1)  # [B, E]

    def forward(self, audio: torch.Tensor, tokens: TokenBatch) -> CLAPOutput:
        """audio [B, C, S] and the tokens of its B captions -> both embeddings [B, E]."""
        if audio.shape[0] != tokens.input_ids.shape[0]:
            raise ValueError(f"got {audio.shape[0]} audio clips but "
                             f"{tokens.input_ids.shape[0]} captions; CLAP needs pairs")
        logit_scale = self.logit_scale.clamp(max=math.log(_MAX_LOGIT_SCALE)).exp()
        return CLAPOutput(self.embed_audio(audio), self.embed_text(tokens), logit_scale)


def clap_contrastive_loss(output: CLAPOutput) -> torch.Tensor:
    """Symmetric InfoNCE of CLIP (Radford et al. 2021, Fig. 3) and CLAP (Elizalde et al.
    2023; Wu et al. 2023), a scalar.

    With a_i, t_i the normalised embeddings of pair i and s the logit scale,
    z_ij = s * <a_i, t_j> and

        L = 1/2 * [ -1/B sum_i log(exp z_ii / sum_j exp z_ij)      (audio -> text)
                    -1/B sum_j log(exp z_jj / sum_i exp z_ij) ]    (text -> audio)

    i.e. the mean of the cross-entropies of the rows and of the columns of z with the
    matching pair as the target. Unrelated embeddings give about log(B).
    """
    logits = output.logits_per_audio  # [B, B]
    if logits.dim() != 2 or logits.shape[0] != logits.shape[1] or logits.shape[0] == 0:
        raise ValueError(f"the contrastive loss needs B >= 1 audio-text pairs, got "
                         f"{tuple(output.audio_embeds.shape)} audio and "
                         f"{tuple(output.text_embeds.shape)} text embeddings")
    targets = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))
