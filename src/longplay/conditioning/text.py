"""Text encoders behind one interface, loaded only from local paths.

Tokenizing is separate from encoding so that prompts can be tokenized once, cached,
or inspected. Encoders are frozen: their weights never enter longplay's state
dicts. A learned projection to the conditioning width, where a model has one,
belongs to the ``Conditioner``, not to the encoder.

Shape legend: B batch, L tokens, D encoder width.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch

from longplay.conditioning.packaged import resolve_text_encoder
from longplay.conditioning.types import ConditioningTokens, TokenBatch
from longplay.errors import TextEncoderError

logger = logging.getLogger(__name__)


class TextEncoder(Protocol):
    """What the conditioner needs from a text encoder."""

    max_length: int
    output_dim: int

    def tokenize(self, prompts: Sequence[str]) -> TokenBatch:
        """prompts -> input_ids [B, L], attention_mask [B, L] (L = max_length)."""
        ...

    def encode(self, tokens: TokenBatch) -> ConditioningTokens:
        """tokens -> features [B, L, D] (float32, padding positions zeroed), mask [B, L]."""
        ...


def _import_transformers():
    try:
        import transformers
    except ImportError as err:  # pragma: no cover - transformers is a core dependency
        raise TextEncoderError("text encoders need the 'transformers' package: "
                               "pip install transformers") from err
    return transformers


def tokenize_prompts(tokenizer, prompts: Sequence[str], max_length: int) -> TokenBatch:
    """Prompts -> input_ids [B, L], attention_mask [B, L] with a Hugging Face tokenizer,
    truncated and padded to ``max_length``."""
    if isinstance(prompts, str):
        raise TypeError("prompts must be a sequence of strings, not a single string")
    if not prompts:
        raise ValueError("no prompts to tokenize")
    encoded = tokenizer(list(prompts), truncation=True, max_length=max_length,
                        padding="max_length", return_tensors="pt")
    return TokenBatch(encoded["input_ids"].long(), encoded["attention_mask"].bool())


class HFTextEncoder:
    """Any Hugging Face encoder (T5 encoder, RoBERTa, BERT/sentence-transformer, the
    text tower of a CLAP model), giving the hidden states of one layer.

    ``path`` is a local folder, or the name of an encoder installed with its weights
    from the package registry (``PACKAGED_TEXT_ENCODERS``, e.g. ``all-MiniLM-L6-v2``).
    ``layer`` indexes ``hidden_states`` as transformers returns them: -1 is the last
    hidden state, -2 the next-to-last layer (the Stable Audio 2.0 paper's CLAP
    features). ``dtype`` is the precision the encoder runs in; features are returned
    in float32 either way.
    """

    def __init__(self, path: str | Path, *, max_length: int, layer: int = -1,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
                 tokenizer_path: str | Path | None = None) -> None:
        transformers = _import_transformers()
        self.path = resolve_text_encoder(path).path
        tokenizer_path = self.path if tokenizer_path is None else Path(tokenizer_path)
        self.max_length = int(max_length)
        self.layer = int(layer)
        self.dtype = dtype
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(tokenizer_path))
            config = transformers.AutoConfig.from_pretrained(str(self.path))
            if config.model_type == "t5":
                model = transformers.T5EncoderModel.from_pretrained(str(self.path), dtype=dtype)
            else:
                model = transformers.AutoModel.from_pretrained(str(self.path), dtype=dtype)
        except (OSError, ValueError) as err:
            raise TextEncoderError(
                f"could not load the text encoder at {self.path}: {err}") from err
        # A CLAP checkpoint holds both towers: keep the text one. The cast covers modules
        # transformers keeps in float32 on load (T5's feed-forward output), so that the
        # whole encoder runs in ``dtype`` as the reference runs it.
        model = getattr(model, "text_model", model)
        self.model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
        cfg = self.model.config
        self.output_dim = int(getattr(cfg, "d_model", None) or cfg.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def tokenize(self, prompts: Sequence[str]) -> TokenBatch:
        return tokenize_prompts(self.tokenizer, prompts, self.max_length)

    @torch.inference_mode()
    def encode(self, tokens: TokenBatch) -> ConditioningTokens:
        ids = tokens.input_ids.to(self.device)
        mask = tokens.attention_mask.to(self.device)
        out = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=self.layer != -1)
        hidden = out.last_hidden_state if self.layer == -1 else out.hidden_states[self.layer]
        features = hidden.float() * mask[..., None]  # [B, L, D]
        if not torch.isfinite(features).all():
            raise TextEncoderError(f"the text encoder at {self.path} produced NaN/inf features "
                                   f"(running in {self.dtype}); try dtype=torch.float32")
        return ConditioningTokens(features, mask)


def t5_encoder(path: str | Path, *, max_length: int, dtype: torch.dtype = torch.float16,
               device: torch.device | str = "cpu",
               tokenizer_path: str | Path | None = None) -> HFTextEncoder:
    """The T5 encoder of Stable Audio Open: last hidden state, by default in float16 as
    the reference runs it (the released model was trained with those features)."""
    return HFTextEncoder(path, max_length=max_length, layer=-1, dtype=dtype, device=device,
                         tokenizer_path=tokenizer_path)


def clap_text_encoder(path: str | Path, *, max_length: int = 77, layer: int = -2,
                      dtype: torch.dtype = torch.float32,
                      device: torch.device | str = "cpu") -> HFTextEncoder:
    """A CLAP text tower (RoBERTa), next-to-last layer by default, as in the paper."""
    return HFTextEncoder(path, max_length=max_length, layer=layer, dtype=dtype, device=device)
