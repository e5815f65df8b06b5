"""LoRA and DoRA adapters of the diffusion transformer, through peft.

An adapter is a folder in peft's format, so that peft itself loads it
(``PeftModel.from_pretrained(dit, folder)``) and it can be shared like any peft adapter:

- ``adapter_config.json``: peft's ``LoraConfig`` (rank, alpha, dropout, target modules,
  DoRA).
- ``adapter_model.safetensors``: the low-rank weights under peft's names
  (``base_model.model.blocks.0.self_attn.qkv.lora_A.weight``, ...). Its metadata also
  records the base the adapter was trained on: ``longplay.base_architecture`` (the DiT's
  config as JSON), ``longplay.base_dit_sha256`` (:func:`base_identity`) and
  ``longplay.base_model`` (the base's folder name, for people).

An adapter is applied to a DiT for the time of a block (:func:`adapters_applied`):
peft's layers wrap the targeted linear layers, each adapter with its own strength, and
are removed afterwards, leaving the base module as it was. :func:`merge_adapters` folds
them into the weights instead. peft is imported when an adapter is first used.

Shape legend: r rank, I/O a linear layer's input/output features.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from longplay.atomic import write_text_atomic
from longplay.checkpoints.files import (
    read_safetensors_metadata,
    read_state_dict,
    write_safetensors,
)
from longplay.errors import AdapterError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."

ATTENTION_TARGETS = ("self_attn.qkv", "self_attn.out", "cross_attn.q", "cross_attn.kv",
                     "cross_attn.out")
FEED_FORWARD_TARGETS = ("ff.proj_in", "ff.proj_out")
TARGET_PRESETS: dict[str, tuple[str, ...]] = {
    "attention": ATTENTION_TARGETS,
    "feed-forward": FEED_FORWARD_TARGETS,
    "all": ATTENTION_TARGETS + FEED_FORWARD_TARGETS,
}
"""Named sets of the transformer blocks' linear layers an adapter may target."""
KNOWN_TARGETS = TARGET_PRESETS["all"]

META_ARCHITECTURE = "longplay.base_architecture"
META_HASH = "longplay.base_dit_sha256"
META_BASE_NAME = "longplay.base_model"


# -- what an adapter targets ----------------------------------------------------------------

def is_adapter_key(key: str) -> bool:
    """Whether a parameter or state-dict name belongs to a peft LoRA/DoRA layer's adapter
    (``lora_A``, ``lora_B``, ``lora_magnitude_vector``) rather than to the base."""
    return ".lora_" in key


def resolve_targets(targets: str | Sequence[str]) -> tuple[str, ...]:
    """The block sub-layers named by a preset ("attention", "feed-forward", "all") or a
    list of them (``"self_attn.qkv"``, ``"ff.proj_in"``, ...)."""
    if isinstance(targets, str):
        if targets not in TARGET_PRESETS:
            raise AdapterError(f"unknown target preset {targets!r}: use one of "
                               f"{', '.join(TARGET_PRESETS)} or a list of "
                               f"{', '.join(KNOWN_TARGETS)}")
        return TARGET_PRESETS[targets]
    names = tuple(targets)
    unknown = [n for n in names if n not in KNOWN_TARGETS]
    if unknown or not names:
        raise AdapterError(f"unknown target modules {unknown or '[]'}: choose from "
                           f"{', '.join(KNOWN_TARGETS)} or a preset "
                           f"({', '.join(TARGET_PRESETS)})")
    return names


def target_pattern(targets: str | Sequence[str]) -> str:
    """peft's ``target_modules`` regex (matched against whole module names) for
    ``targets`` in every transformer block."""
    names = resolve_targets(targets)
    return r"blocks\.\d+\.(" + "|".join(re.escape(n) for n in names) + ")"


def lora_config(*, rank: int, alpha: float, dropout: float = 0.0,
                targets: str | Sequence[str] = "attention", dora: bool = False,
                base_name: str | None = None):
    """peft's ``LoraConfig`` for the DiT (B zero-initialised: a fresh adapter changes
    nothing)."""
    from peft import LoraConfig

    if rank < 1:
        raise AdapterError(f"rank must be >= 1, got {rank}")
    if not (math.isfinite(alpha) and alpha > 0):
        raise AdapterError(f"alpha must be > 0, got {alpha}")
    if not 0 <= dropout < 1:
        raise AdapterError(f"dropout must be in [0, 1), got {dropout}")
    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout,
                      target_modules=target_pattern(targets), use_dora=dora,
                      init_lora_weights=True, bias="none", base_model_name_or_path=base_name)


# -- which base an adapter belongs to -------------------------------------------------------

@dataclass(frozen=True)
class BaseIdentity:
    """The DiT an adapter was trained on: its architecture (canonical JSON of its config)
    and a SHA-256 of its weights rounded to bfloat16 (so that the same weights loaded in
    fp32, fp16 or bf16 give the same hash)."""

    architecture: str
    dit_sha256: str
    name: str = ""

    def metadata(self) -> dict[str, str]:
        return {META_ARCHITECTURE: self.architecture, META_HASH: self.dit_sha256,
                META_BASE_NAME: self.name}

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str]) -> BaseIdentity | None:
        if META_HASH not in meta or META_ARCHITECTURE not in meta:
            return None
        return cls(meta[META_ARCHITECTURE], meta[META_HASH], meta.get(META_BASE_NAME, ""))


def _base_state(dit: nn.Module) -> dict[str, torch.Tensor]:
    """The DiT's own weights under their plain names, also while adapters are applied."""
    state = {}
    for key, value in dit.state_dict().items():
        if is_adapter_key(key):
            continue
        state[key.replace(".base_layer.", ".")] = value
    return state


def base_identity(dit: nn.Module, architecture: Mapping, name: str = "") -> BaseIdentity:
    """The identity of ``dit`` (whose config, as a dict, is ``architecture``)."""
    digest = hashlib.sha256()
    for key, value in sorted(_base_state(dit).items()):
        if value.device.type == "meta":
            raise AdapterError("the DiT's weights are not loaded (meta tensors)")
        tensor = value.detach()
        if tensor.is_floating_point():
            tensor = tensor.to(torch.bfloat16).view(torch.int16)
        digest.update(f"{key}:{tuple(tensor.shape)}:".encode())
        digest.update(tensor.contiguous().cpu().numpy().tobytes())
    return BaseIdentity(json.dumps(dict(architecture), sort_keys=True), digest.hexdigest(), name)


# -- adapter files --------------------------------------------------------------------------

@dataclass(frozen=True)
class LoRAAdapter:
    """An adapter read from its folder: peft's config (as a dict), its weights under
    peft's names, and the base it was trained on (None for an adapter from elsewhere)."""

    path: Path
    config: dict
    state: dict[str, torch.Tensor] = field(repr=False)
    base: BaseIdentity | None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def rank(self) -> int:
        return int(self.config["r"])

    @property
    def num_parameters(self) -> int:
        return sum(t.numel() for t in self.state.values())

    def peft_config(self):
        from peft import LoraConfig

        return LoraConfig.from_peft_type(**self.config)

    def check_base(self, identity: BaseIdentity) -> None:
        """Raise unless this adapter was trained on the DiT ``identity`` describes."""
        if self.base is None:
            return  # an adapter without longplay's record: peft's own checks apply
        if self.base.architecture != identity.architecture:
            raise AdapterError(
                f"the adapter {self.path} was trained on another architecture "
                f"({_describe(self.base)}) than this model's ({_describe(identity)}): load it "
                "with the model it was trained on")
        if self.base.dit_sha256 != identity.dit_sha256:
            raise AdapterError(
                f"the adapter {self.path} was trained on other weights (base "
                f"{self.base.name or '?'}, DiT sha256 {self.base.dit_sha256[:12]}) than this "
                f"model's (DiT sha256 {identity.dit_sha256[:12]}): load it with the model it "
                "was trained on")


def _describe(identity: BaseIdentity) -> str:
    arch = json.loads(identity.architecture)
    keys = ("embed_dim", "depth", "num_heads")
    return ", ".join(f"{k} {arch[k]}" for k in keys if k in arch) or "unknown"


def peft_config_dict(config) -> dict:
    """peft's config as plain JSON data (what ``adapter_config.json`` holds)."""
    return json.loads(json.dumps(config.to_dict(), default=lambda v: sorted(v)
                                 if isinstance(v, set | frozenset) else str(v)))


def save_adapter(folder: str | Path, config, state: Mapping[str, torch.Tensor],
                 base: BaseIdentity | None) -> Path:
    """Write an adapter folder from peft's ``LoraConfig`` and the adapter's weights under
    peft's names (``get_peft_model_state_dict``); each file atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config_dict = peft_config_dict(config)
    metadata = {"format": "pt", **(base.metadata() if base is not None else {})}
    write_safetensors(folder / ADAPTER_WEIGHTS, dict(state), metadata)
    write_text_atomic(folder / ADAPTER_CONFIG, json.dumps(config_dict, indent=2,
                                                          sort_keys=True) + "\n")
    return folder


def load_adapter(path: str | Path) -> LoRAAdapter:
    """Read an adapter folder (or its ``adapter_model.safetensors``)."""
    path = Path(path)
    folder = path.parent if path.suffix == ".safetensors" else path
    if not folder.is_dir():
        raise AdapterError(f"no adapter at {path}: give an adapter folder (with "
                           f"{ADAPTER_CONFIG} and {ADAPTER_WEIGHTS})")
    missing = [n for n in (ADAPTER_CONFIG, ADAPTER_WEIGHTS) if not (folder / n).is_file()]
    if missing:
        raise AdapterError(f"{folder} is not an adapter folder: {', '.join(missing)} missing "
                           "(write one with `longplay export RUN -o FOLDER` from a "
                           "`longplay train lora` run)")
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AdapterError(f"{folder / ADAPTER_CONFIG} is not readable JSON: {err}") from None
    if not isinstance(config, dict) or config.get("peft_type") != "LORA":
        found = config.get("peft_type") if isinstance(config, dict) else type(config).__name__
        raise AdapterError(f"{folder / ADAPTER_CONFIG}: peft_type {found!r} is not supported; "
                           "longplay applies LoRA and DoRA adapters (peft_type 'LORA')")
    state = read_state_dict(folder / ADAPTER_WEIGHTS)
    bad = [k for k in state if not k.startswith(PEFT_PREFIX) or not is_adapter_key(k)]
    if bad or not state:
        raise AdapterError(f"{folder / ADAPTER_WEIGHTS} does not hold peft LoRA weights "
                           f"(unexpected key {bad[0] if bad else 'none at all'})")
    base = BaseIdentity.from_metadata(read_safetensors_metadata(folder / ADAPTER_WEIGHTS))
    return LoRAAdapter(folder, config, state, base)


def parse_adapter_argument(text: str) -> tuple[str, float]:
    """``PATH[:SCALE]`` (the command line's ``--lora``) as (path, scale); a path that
    itself holds a colon needs the scale (``PATH:1``)."""
    path, sep, scale = text.rpartition(":")
    if sep:
        try:
            value = float(scale)
        except ValueError:
            return text, 1.0  # a colon in the path, no scale
        if not math.isfinite(value):
            raise AdapterError(f"--lora {text!r}: the scale must be a finite number")
        if not path:
            raise AdapterError(f"--lora {text!r}: give the adapter folder before the scale")
        return path, value
    return text, 1.0


# -- applying and merging -------------------------------------------------------------------

def _check_targets(dit: nn.Module, adapter: LoRAAdapter) -> None:
    modules = dict(dit.named_modules())
    for key in adapter.state:
        module = key[len(PEFT_PREFIX):].split(".lora_")[0]
        found = modules.get(module)
        if found is None:
            raise AdapterError(f"the adapter {adapter.path} targets {module}, which this "
                               "model's DiT does not have: load it with the model it was "
                               "trained on")
        if type(found) is not nn.Linear:
            raise AdapterError(f"the adapter {adapter.path} targets {module}, which is a "
                               f"{type(found).__name__} here (int8?): apply adapters in fp32 "
                               "or bf16, or merge them into the model first (`longplay export "
                               "--merge-lora`)")


@contextmanager
def adapters_applied(dit: nn.Module, adapters: Sequence[tuple[LoRAAdapter, float]]
                     ) -> Iterator[nn.Module]:
    """``dit`` with ``adapters`` applied (each with its scale: the adapter's update times
    scale, and the updates of several adapters add up) for the time of the block; the DiT
    is its old self afterwards (same modules, weights, ``requires_grad`` flags and
    train/eval mode; peft's dropout is off inside the block).

    An adapter with scale 0 is left out. A DoRA adapter's scale weighs its low-rank
    direction update, while its learned magnitudes apply at any other scale (peft's
    DoRA), so for DoRA only 0 and 1 are exact "off" and "as trained"."""
    adapters = [(adapter, scale) for adapter, scale in adapters if scale != 0]
    if not adapters:
        yield dit
        return
    from peft import PeftModel, set_peft_model_state_dict
    from peft.tuners.lora import LoraLayer

    for adapter, _ in adapters:
        _check_targets(dit, adapter)
    flags = {name: p.requires_grad for name, p in dit.named_parameters()}
    training = dit.training
    model = None
    try:
        names = []
        for i, (adapter, _) in enumerate(adapters):
            name = f"adapter_{i}"
            if model is None:
                model = PeftModel(dit, adapter.peft_config(), adapter_name=name)
            else:
                model.add_adapter(name, adapter.peft_config())
            result = set_peft_model_state_dict(model, adapter.state, adapter_name=name)
            if result.unexpected_keys:
                raise AdapterError(f"the adapter {adapter.path} holds weights this model "
                                   f"does not use: {result.unexpected_keys[0]}")
            names.append(name)
        model.base_model.set_adapter(names)
        for module in dit.modules():
            if isinstance(module, LoraLayer):
                for name, (_, scale) in zip(names, adapters, strict=True):
                    if name in module.scaling:
                        module.set_scale(name, scale)
        dit.eval()
        yield dit
    finally:
        if model is not None:
            model.unload()
        for name, p in dit.named_parameters():
            p.requires_grad_(flags.get(name, p.requires_grad))
        dit.train(training)


def merge_adapters(dit: nn.Module, adapters: Sequence[tuple[LoRAAdapter, float]]) -> nn.Module:
    """Fold ``adapters`` (with their scales) into ``dit``'s weights, in place; returns it.
    The weights change: use a DiT no other model shares."""
    from peft.tuners.lora import LoraLayer

    with adapters_applied(dit, adapters):
        for module in dit.modules():
            if isinstance(module, LoraLayer):
                module.merge(adapter_names=list(module.scaling))
    return dit


def adapter_state(model, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    """The weights of adapter ``adapter_name`` of a ``PeftModel`` under peft's names (what
    :func:`save_adapter` writes), as copies."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(model, adapter_name=adapter_name)
    return {k: v.detach().clone() for k, v in state.items()}
