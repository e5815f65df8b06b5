"""The CLAP model folder (format version 1): reading and writing it.

Written by :func:`save_clap`::

    folder/
      clap_config.json    {"format_version": 1, "sample_rate": 44100, "embed_dim": 512,
                           "text_layer": -2, "max_length": 77,
                           "audio_encoder": {"n_fft": 1024, "hop_length": 512, "n_mels": 64,
                                             "widths": [32, 64, 128, 256],
                                             "norm_groups": 8, "embed_dim": 512}}
      model.safetensors   audio_encoder.*, audio_proj.*, text_proj.*, logit_scale
                          (never the text tower, even when it was trained)
      text_encoder/       the text tower as a Hugging Face folder (save_pretrained of the
                          transformers model and of its tokenizer)

``clap_config.json`` is :class:`~longplay.config.CLAPConfig`, read by the strict loader:
every field shown above is required and no other is allowed, except the optional
``"text_encoder": NAME``: a frozen text tower that installs as a package
(``PACKAGED_TEXT_ENCODERS``, e.g. "all-MiniLM-L6-v2") is then referenced by name and the
folder has no ``text_encoder/`` copy. The text tower is what the DiT reads as its text
conditioner: :func:`clap_text_encoder_for_conditioning`. ``train_text`` is a training
choice, not part of the model: pass it to :func:`load_clap`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from longplay.atomic import write_json_atomic
from longplay.builders import build_clap
from longplay.checkpoints.files import read_config, read_state_dict, write_safetensors
from longplay.conditioning import (
    PACKAGED_TEXT_ENCODERS,
    TEXT_MODEL_PREFIX,
    CLAPModel,
    HFTextEncoder,
    packaged_text_encoder_path,
)
from longplay.config import (
    CLAP_FORMAT_VERSION,
    CLAPAudioEncoderConfig,
    CLAPConfig,
    dataclass_from_dict,
    dataclass_to_dict,
)
from longplay.errors import CheckpointError

__all__ = [
    "CLAP_CONFIG_NAME",
    "CLAP_TEXT_ENCODER_DIR",
    "CLAP_WEIGHTS_NAME",
    "clap_config_of",
    "clap_text_encoder_for_conditioning",
    "load_clap",
    "read_clap_config",
    "save_clap",
]

CLAP_CONFIG_NAME = "clap_config.json"
CLAP_WEIGHTS_NAME = "model.safetensors"
CLAP_TEXT_ENCODER_DIR = "text_encoder"


def clap_config_of(model: CLAPModel, text_encoder: str | None = None) -> CLAPConfig:
    """The config that describes ``model`` (``text_encoder``: its packaged tower's name)."""
    audio = model.audio_encoder
    return CLAPConfig(
        format_version=CLAP_FORMAT_VERSION, sample_rate=audio.sample_rate,
        embed_dim=model.embed_dim, text_layer=model.text_layer, max_length=model.max_length,
        audio_encoder=CLAPAudioEncoderConfig(
            n_fft=audio.n_fft, hop_length=audio.hop_length, n_mels=audio.n_mels,
            widths=tuple(audio.widths), norm_groups=audio.norm_groups,
            embed_dim=audio.embed_dim),
        text_encoder=text_encoder)


def read_clap_config(folder: str | Path) -> tuple[CLAPConfig, Path]:
    """The strictly checked config of a CLAP model folder and the folder of its text
    tower (inside it, or the packaged encoder it names)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise CheckpointError(
            f"CLAP model folder {folder} does not exist" if not folder.exists()
            else f"{folder} is not a folder; a CLAP model is a folder written by save_clap")
    path = folder / CLAP_CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{folder} is not a CLAP model folder: {CLAP_CONFIG_NAME} is "
                              "missing (save_clap writes it)")
    config = read_config(path, lambda data: dataclass_from_dict(CLAPConfig, data, str(path)))
    if config.text_encoder is not None:
        text_path = packaged_text_encoder_path(config.text_encoder)
        if text_path is None:
            raise CheckpointError(f"{path}: text_encoder {config.text_encoder!r} is not a "
                                  f"packaged encoder ({', '.join(PACKAGED_TEXT_ENCODERS)})")
        return config, text_path
    text_dir = folder / CLAP_TEXT_ENCODER_DIR
    if not (text_dir / "config.json").is_file():
        raise CheckpointError(f"{folder} has no text tower: {text_dir}/config.json is missing "
                              "(save_clap writes the text tower there)")
    return config, text_dir


def save_clap(model: CLAPModel, folder: str | Path, *, text_encoder: str | None = None) -> Path:
    """Write ``model`` as a CLAP model folder (see the module docstring); returns it.

    ``text_encoder``: the name of the packaged encoder the (frozen) text tower came
    from; it is then referenced instead of copied. The text tower is written first and
    ``clap_config.json`` last, each weight and config file atomically, so a folder with
    a config is complete.
    """
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    if text_encoder is not None:
        if model.train_text:
            raise ValueError("a trained text tower must be saved with the model: leave "
                             "text_encoder unset")
        if packaged_text_encoder_path(text_encoder) is None:
            raise ValueError(f"text_encoder {text_encoder!r} is not a packaged encoder "
                             f"({', '.join(PACKAGED_TEXT_ENCODERS)})")
    else:
        text_dir = folder / CLAP_TEXT_ENCODER_DIR
        model.text_model.save_pretrained(text_dir)
        model.tokenizer.save_pretrained(text_dir)
    tensors = {name: tensor for name, tensor in model.state_dict().items()
               if not name.startswith(TEXT_MODEL_PREFIX)}
    write_safetensors(folder / CLAP_WEIGHTS_NAME, tensors,
                      metadata={"format": "longplay-clap",
                                "format_version": str(CLAP_FORMAT_VERSION)})
    config = dataclass_to_dict(clap_config_of(model, text_encoder))
    if text_encoder is None:
        del config["text_encoder"]
    write_json_atomic(folder / CLAP_CONFIG_NAME, config)
    return folder


def load_clap(folder: str | Path, device: torch.device | str = "cpu", *,
              train_text: bool = False) -> CLAPModel:
    """A CLAP model from a folder written by :func:`save_clap`, in eval mode.

    Strict: unknown or missing config fields, missing, unexpected or misshapen weights
    and NaN/inf weights raise ``CheckpointError`` (a ValueError) naming them. Loading
    leaves the global random state untouched.
    """
    folder = Path(folder).expanduser()
    config, text_path = read_clap_config(folder)
    weights_path = folder / CLAP_WEIGHTS_NAME
    state = read_state_dict(weights_path)
    text_encoder = HFTextEncoder(text_path, max_length=config.max_length,
                                 layer=config.text_layer)
    # The fresh initialisation is overwritten below; a forked random state (seed 0) keeps
    # it from consuming the caller's random stream.
    try:
        model = build_clap(config, text_encoder, train_text=train_text, seed=0)
    except ValueError as err:
        raise CheckpointError(f"{folder / CLAP_CONFIG_NAME}: {err}") from None
    expected = {name: tensor for name, tensor in model.state_dict().items()
                if not name.startswith(TEXT_MODEL_PREFIX)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = ([f"missing weight(s): {', '.join(missing)}"] if missing else []) + (
            [f"unexpected weight(s): {', '.join(unexpected)}"] if unexpected else [])
        raise CheckpointError(f"{weights_path} does not match its {CLAP_CONFIG_NAME}: "
                              + "; ".join(parts))
    for name, tensor in expected.items():
        if state[name].shape != tensor.shape:
            raise CheckpointError(f"{weights_path}: weight {name} has shape "
                                  f"{tuple(state[name].shape)}, the config implies "
                                  f"{tuple(tensor.shape)}")
        if state[name].is_floating_point() and not torch.isfinite(state[name]).all():
            raise CheckpointError(f"{weights_path}: weight {name} holds NaN/inf values")
    model.load_state_dict(state, strict=False)  # checked above; the text tower is not here
    return model.to(device).eval()


def clap_text_encoder_for_conditioning(folder: str | Path, max_length: int | None = None, *,
                                       dtype: torch.dtype = torch.float32,
                                       device: torch.device | str = "cpu") -> HFTextEncoder:
    """The text tower of a CLAP model folder as the DiT's text conditioner: token
    features [B, L, D] of the CLAP's ``text_layer`` (the paper's next-to-last layer),
    padding zeroed. ``max_length`` defaults to the CLAP's (77 in the paper)."""
    config, text_path = read_clap_config(folder)
    return HFTextEncoder(text_path,
                         max_length=config.max_length if max_length is None else max_length,
                         layer=config.text_layer, dtype=dtype, device=device)
