"""Reading and writing weight files safely.

``.safetensors`` files are read with safetensors; ``.ckpt``/``.pt``/``.pth`` files
only with ``torch.load(weights_only=True)``, which refuses pickled code.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from longplay.atomic import atomic_output_path
from longplay.digests import update_with_file
from longplay.errors import CheckpointError, ConfigError

T = TypeVar("T")

TORCH_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
WEIGHT_SUFFIXES = (".safetensors", *TORCH_SUFFIXES)


SAT_SHARED_VAE_KEY = "vae_weights_from"
"""A longplay key of a Stable Audio Open ``model_config.json``: the folder (relative to
this one) of another model whose VAE this one shares. Its weight file then holds the
DiT and conditioner only, and the VAE's ``pretransform.model.`` weights are read from
that folder, whose ``model.pretransform`` config must be the same. The bundled few-step
variant uses it to share the demo model's VAE."""


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, or a CheckpointError naming the file."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def read_config(path: Path, parse: Callable[[dict[str, Any]], T]) -> T:
    """``parse`` applied to the JSON object in ``path``; a ConfigError becomes a
    CheckpointError that names the file."""
    try:
        return parse(read_json(path))
    except ConfigError as err:
        raise CheckpointError(f"{path}: {err}") from None


_UNSUPPORTED_GLOBAL = re.compile(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)")


def load_torch_file(path: str | Path, *, mmap: bool = False) -> Any:
    """The contents of a ``.ckpt``/``.pt`` file, read with ``torch.load(weights_only=True)``
    on the CPU (``mmap``: tensors memory-mapped, which checks a file without reading it).

    Raises:
        CheckpointError: the file does not exist, is damaged (empty, truncated, not a
            PyTorch file: a save or copy that was interrupted), or holds pickled objects
            other than tensors and plain data, which longplay never loads (unpickling
            them can run arbitrary code). The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist" if not path.exists()
                              else f"{path} is not a file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is damaged: it is empty (0 bytes), probably a save "
                              "or copy that was interrupted")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True,
                          mmap=mmap and zipfile.is_zipfile(path))
    except pickle.UnpicklingError as err:
        found = _UNSUPPORTED_GLOBAL.search(str(err))
        refers = f" (it refers to {found.group(1)})" if found else ""
        raise CheckpointError(
            f"{path} is unsafe: it holds pickled objects other than tensors and plain "
            f"data{refers}, and loading those can run arbitrary code, so longplay refuses "
            "it (it reads such files with torch.load weights_only=True only); use a "
            "checkpoint written by longplay, or weights in safetensors format"
        ) from None
    except (FileNotFoundError, PermissionError, MemoryError):
        raise
    except Exception as err:  # every way a damaged file can fail to parse
        reason = ("it ends too early" if isinstance(err, EOFError) else
                  "its zip archive is cut short or corrupt" if "zip archive" in str(err) else
                  f"it is not a readable PyTorch file: {type(err).__name__}")
        raise CheckpointError(f"{path} is damaged ({reason}; {size} bytes), probably a save "
                              "or copy that was interrupted") from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a weight file, keyed by name, on the CPU.

    A ``.ckpt`` holding ``{"state_dict": ...}`` (a training checkpoint) gives its
    state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weight file {path} does not exist" if not path.exists()
                              else f"{path} is not a file")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{path} is not a readable safetensors file ({err}); "
                                  "re-download or re-export it") from None
    if suffix in TORCH_SUFFIXES:
        obj = load_torch_file(path)
        if isinstance(obj, Mapping) and "state_dict" in obj:
            obj = obj["state_dict"]
        if not isinstance(obj, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
        ):
            raise CheckpointError(f"{path} does not hold a state dict (name -> tensor)")
        return dict(obj)
    raise CheckpointError(f"{path}: unknown weight file type {suffix!r} "
                          f"(expected one of {', '.join(WEIGHT_SUFFIXES)})")


def write_safetensors(path: str | Path, tensors: Mapping[str, torch.Tensor],
                      metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``tensors`` to ``path`` atomically (temp file + rename)."""
    path = Path(path)
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_output_path(path) as tmp:
        save_file(contiguous, str(tmp), metadata=dict(metadata) if metadata else None)
    return path


def read_safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file (empty if none)."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file ({err})") from None


MODEL_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".json", ".model",
                       ".txt")
"""The files that make a model: weights, configs, tokenizer files (read by
:func:`model_fingerprint`)."""


def shared_vae_folder(folder: Path) -> Path | None:
    """The model folder whose VAE weights the Stable Audio Open model folder ``folder``
    uses (``vae_weights_from`` in its ``model_config.json``, :data:`SAT_SHARED_VAE_KEY`),
    resolved; None when it names none (or has no config).

    Raises:
        CheckpointError: the key is not a relative folder path, the folder is not a model
            folder, or its VAE config differs from ``folder``'s (or it shares another's).
    """
    config_path = folder / "model_config.json"
    if not config_path.is_file():
        return None
    config = read_json(config_path)
    shared = config.get(SAT_SHARED_VAE_KEY)
    if shared is None:
        return None
    if not isinstance(shared, str) or not shared:
        raise CheckpointError(f"{config_path}: {SAT_SHARED_VAE_KEY} must be a folder path "
                              f"relative to {folder}, got {shared!r}")
    other = (folder / shared).resolve()
    if not (other / "model_config.json").is_file():
        raise CheckpointError(f"{folder} shares the VAE of {other} ({SAT_SHARED_VAE_KEY}), "
                              "which is not a model folder: put the model it was exported with "
                              "there")
    other_config = read_json(other / "model_config.json")
    mine, theirs = (c.get("model", {}).get("pretransform") for c in (config, other_config))
    if mine != theirs or other_config.get(SAT_SHARED_VAE_KEY) is not None:
        raise CheckpointError(f"{folder} shares the VAE of {other}, whose model.pretransform "
                              "config differs (or shares another's): the weights would not fit")
    return other


def model_fingerprint(path: str | Path) -> str:
    """SHA-256 of what a model is made of: the contents of a model file, or of every
    weight, config and tokenizer file under a model folder (with their names relative to
    it, in sorted order), and the weights of a model whose VAE it shares
    (``vae_weights_from``). Two folders holding the same model give the same fingerprint
    wherever they are; any changed weight changes it. Reads every byte once (seconds for
    a model of a few GB).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the folder's ``vae_weights_from`` is wrong
            (:func:`shared_vae_folder`).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: no model to fingerprint")
    if path.is_file():
        files = [(path.name, path)]
    else:
        files = sorted((p.relative_to(path).as_posix(), p) for p in path.rglob("*")
                       if p.is_file() and p.suffix.lower() in MODEL_FILE_SUFFIXES)
        other = shared_vae_folder(path)
        if other is not None:  # its VAE is part of it
            files += sorted((f"{SAT_SHARED_VAE_KEY}/{p.relative_to(other).as_posix()}", p)
                            for p in other.glob("model.*") if p.is_file())
    digest = hashlib.sha256()
    for name, file in files:
        digest.update(f"{name}\0{file.stat().st_size}\0".encode())
        update_with_file(digest, file)
    return digest.hexdigest()
