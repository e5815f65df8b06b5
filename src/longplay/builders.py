"""Configs become modules here, and only here: the VAE, the conditioner, the DiT, the
text encoders, the CLAP and whole text-to-audio models (:class:`DiffusionModel`).

Builders take a frozen config and plain arguments. Random initialisation is reproducible
through ``seed``: the module is built inside a forked random state seeded with it, so a
builder never changes (nor depends on) the caller's global random state. Without a seed
the initialisation draws from the global state as PyTorch modules do; the loaders build
on the ``meta`` device, where nothing is drawn.

Shape legend: B batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from longplay.autoencoder import AudioVAE, MultiScaleSTFTDiscriminator
from longplay.autoencoder.init import init_vae_for_training
from longplay.conditioning import CLAPAudioEncoder, CLAPModel, Conditioner, HFTextEncoder
from longplay.config import (
    INPAINT_IDS,
    CLAPConfig,
    ConditioningConfig,
    DiffusionModelConfig,
    DiTConfig,
    TextConditionerConfig,
    VAEConfig,
)
from longplay.config.training import VAE_INITS
from longplay.errors import CheckpointError
from longplay.transformer import DiffusionTransformer

__all__ = [
    "VAE_INITS",
    "DiffusionModel",
    "build_clap",
    "build_conditioner",
    "build_diffusion_model",
    "build_discriminator",
    "build_dit",
    "build_text_encoder",
    "build_vae",
    "seeded",
    "with_inpainting_input",
]


@dataclass
class DiffusionModel:
    """The learned parts of a text-to-audio model.

    Attributes:
        config: the architecture.
        vae: the audio autoencoder.
        conditioner: the timing embedders and the text projection.
        dit: the diffusion transformer.
        text_encoder: the frozen text encoder (None for a model without text, or when it
            was not loaded).
        source: where it was loaded from (a model folder or a checkpoint).
    """

    config: DiffusionModelConfig
    vae: AudioVAE
    conditioner: Conditioner
    dit: DiffusionTransformer
    text_encoder: HFTextEncoder | None
    source: Path


@contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run the block with the global random state seeded with ``seed``, restored after
    (a forked state, so the caller's random stream is untouched); None: no change."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def build_vae(config: VAEConfig, *, seed: int | None = None,
              init: str = "pytorch") -> AudioVAE:
    """An AudioVAE of the architecture of ``config``, initialised as ``init`` says (one
    of :data:`VAE_INITS`): PyTorch's layer defaults (as stable-audio-tools), or
    "variance_preserving", ``init_vae_for_training`` (the input reaches the latent from
    the first step; a spectral VAE keeps PyTorch's defaults, its LayerNorms pass the input
    on from the start). "pca" needs training audio and is refused here: the VAE trainer
    builds with "pytorch" and then fits it (``autoencoder.spectral.init_linear_paths``)."""
    if init not in VAE_INITS:
        raise ValueError(f"init must be one of {', '.join(VAE_INITS)}, got {init!r}")
    if init == "pca":
        raise ValueError("init 'pca' is fitted to training audio: build with init 'pytorch', "
                         "then call longplay.autoencoder.spectral.init_linear_paths (the VAE "
                         "trainer does this for a config with init: pca)")
    with seeded(seed):
        vae = AudioVAE(
            audio_channels=config.audio_channels, sample_rate=config.sample_rate,
            encoder_channels=config.encoder_channels, decoder_channels=config.decoder_channels,
            channel_mults=config.channel_mults, strides=config.strides,
            latent_dim=config.latent_dim, final_tanh=config.final_tanh,
            nearest_upsample=config.nearest_upsample, architecture=config.architecture,
            encoder_blocks=config.encoder_blocks, decoder_blocks=config.decoder_blocks)
        if init == "variance_preserving" and config.architecture == "oobleck":
            init_vae_for_training(vae)
    return vae


def build_discriminator(audio_channels: int, filters: int, *,
                        seed: int | None = None) -> MultiScaleSTFTDiscriminator:
    """The VAE's adversary: the multi-scale STFT discriminators (SYSTEM.md section 2)."""
    with seeded(seed):
        return MultiScaleSTFTDiscriminator(audio_channels, filters)


def build_conditioner(config: ConditioningConfig, *, seed: int | None = None) -> Conditioner:
    """The conditioner (timing embedders, text projection) of ``config``."""
    text = config.text
    with seeded(seed):
        return Conditioner(
            cond_dim=config.cond_dim,
            text_dim=None if text is None else text.feature_dim,
            text_projection=text is not None and text.projection,
            timing={cid: (t.min_seconds, t.max_seconds) for cid, t in config.timing},
            cross_attention_ids=config.cross_attention_ids,
            global_ids=config.global_ids,
        )


def build_dit(config: DiTConfig, *, seed: int | None = None) -> DiffusionTransformer:
    """The diffusion transformer of ``config``."""
    with seeded(seed):
        return DiffusionTransformer(
            io_channels=config.io_channels, width=config.width, depth=config.depth,
            num_heads=config.num_heads, cond_token_dim=config.cond_token_dim,
            global_cond_dim=config.global_cond_dim,
            project_cond_tokens=config.project_cond_tokens, qk_norm=config.qk_norm,
            use_cross_attn_mask=config.use_cross_attn_mask,
            input_concat_dim=config.input_concat_dim)


def build_text_encoder(text: TextConditionerConfig, path: Path, *,
                       device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                       tokenizer_path: Path | None = None) -> HFTextEncoder:
    """The frozen text encoder of ``text`` from the local folder ``path``.

    T5 runs in float16 when the model runs in float32, as in the reference (the public
    models were trained on those features); other encoders run in the model's dtype.
    Raises CheckpointError when the encoder's width is not the one the model expects.
    """
    enc_dtype = torch.float16 if text.kind == "t5" and dtype == torch.float32 else dtype
    encoder = HFTextEncoder(path, max_length=text.max_length, layer=text.layer, dtype=enc_dtype,
                            device=device, tokenizer_path=tokenizer_path)
    if encoder.output_dim != text.feature_dim:
        raise CheckpointError(f"the text encoder at {path} gives {encoder.output_dim}-wide "
                              f"features; the model expects {text.feature_dim} ({text.name})")
    return encoder


def build_diffusion_model(config: DiffusionModelConfig, *, vae: AudioVAE | None = None,
                          text_encoder: HFTextEncoder | None = None, seed: int | None = None,
                          source: Path = Path(".")) -> DiffusionModel:
    """A text-to-audio model of ``config`` with a fresh conditioner and DiT (and VAE,
    unless ``vae`` is given), e.g. to train from scratch."""
    with seeded(seed):
        vae = build_vae(config.vae) if vae is None else vae
        conditioner = build_conditioner(config.conditioning)
        dit = build_dit(config.dit)
    return DiffusionModel(config, vae.eval(), conditioner, dit, text_encoder, source)


def build_clap(config: CLAPConfig, text_encoder: HFTextEncoder, *, train_text: bool = False,
               seed: int | None = None) -> CLAPModel:
    """The CLAP model of ``config`` around ``text_encoder``'s tower (trained along when
    ``train_text``, else frozen and kept out of the state dict)."""
    audio = config.audio_encoder
    with seeded(seed):
        audio_encoder = CLAPAudioEncoder(
            sample_rate=config.sample_rate, n_fft=audio.n_fft, hop_length=audio.hop_length,
            n_mels=audio.n_mels, widths=audio.widths, norm_groups=audio.norm_groups,
            embed_dim=audio.embed_dim)
        return CLAPModel(audio_encoder, text_encoder.model, text_encoder.tokenizer,
                         embed_dim=config.embed_dim, text_layer=config.text_layer,
                         max_length=config.max_length, train_text=train_text)


def with_inpainting_input(model: DiffusionModel) -> DiffusionModel:
    """``model`` with a DiT that also takes an inpainting model's input (a keep mask and
    the masked latents, 1 + D channels concatenated to the latents), the weights of the
    new input channels zero: the new model computes exactly what ``model`` did, until
    training teaches it to use them. A model that has them is returned as it is."""
    if model.config.inpainting:
        return model
    config = model.config
    io = config.dit.io_channels
    config = replace(config, dit=replace(config.dit, input_concat_dim=1 + io),
                     conditioning=replace(config.conditioning, input_concat_ids=INPAINT_IDS))
    with torch.device("meta"):
        dit = build_dit(config.dit)
    state = dict(model.dit.state_dict())
    old_conv, old_in = state["pre_conv.weight"], state["project_in.weight"]  # [D, D, 1], [W, D]
    conv = old_conv.new_zeros(io + config.dit.input_concat_dim, io + config.dit.input_concat_dim,
                              1)
    conv[:io, :io] = old_conv
    project = old_in.new_zeros(old_in.shape[0], io + config.dit.input_concat_dim)
    project[:, :io] = old_in
    state["pre_conv.weight"], state["project_in.weight"] = conv, project
    dit.load_state_dict(state, strict=True, assign=True)
    dit.train(model.dit.training)
    return DiffusionModel(config, model.vae, model.conditioner, dit, model.text_encoder,
                          model.source)
