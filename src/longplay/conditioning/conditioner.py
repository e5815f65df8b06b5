"""Assembly of the conditioning (SYSTEM.md section 3): text tokens and timing tokens
form the cross-attention context, concatenated timing embeddings the global condition.

Shape legend: B batch, L tokens, D conditioning width.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from longplay.conditioning.timing import TimingEmbedder
from longplay.conditioning.types import Conditioning, ConditioningTokens

TEXT = "text"


class Conditioner(nn.Module):
    """Learned parts of the conditioning and how they are arranged.

    Args:
        cond_dim: width D of every conditioning token.
        text_dim: width of the text encoder's features; a Linear(text_dim, cond_dim) with
            bias projects them when ``text_projection`` (required when the widths differ).
        timing: conditioner id -> (min_seconds, max_seconds), e.g. {"seconds_start": (0, 512)}.
        cross_attention_ids: ids in context order; "text" stands for the prompt.
        global_ids: ids whose embeddings are concatenated into the global condition.
    """

    def __init__(self, cond_dim: int, text_dim: int | None, text_projection: bool,
                 timing: Mapping[str, tuple[float, float]], cross_attention_ids: Sequence[str],
                 global_ids: Sequence[str]) -> None:
        super().__init__()
        known = set(timing) | ({TEXT} if text_dim is not None else set())
        for cid in (*cross_attention_ids, *global_ids):
            if cid not in known:
                raise ValueError(f"conditioning id {cid!r} has no conditioner (known: "
                                 f"{', '.join(sorted(known))})")
        if TEXT in global_ids:
            raise ValueError("the text can't be a global condition (it has many tokens)")
        if text_dim is not None and text_dim != cond_dim and not text_projection:
            raise ValueError(f"text features of width {text_dim} need a projection to "
                             f"cond_dim {cond_dim}")
        self.cond_dim = cond_dim
        self.text_dim = text_dim
        self.cross_attention_ids = tuple(cross_attention_ids)
        self.global_ids = tuple(global_ids)
        self.text_proj = (nn.Linear(text_dim, cond_dim) if text_dim is not None and text_projection
                          else None)
        self.timing = nn.ModuleDict({
            cid: TimingEmbedder(cond_dim, lo, hi) for cid, (lo, hi) in timing.items()})

    @property
    def timing_ids(self) -> tuple[str, ...]:
        return tuple(self.timing.keys())

    def project_text(self, features: ConditioningTokens) -> ConditioningTokens:
        """Text encoder features [B, L, text_dim] -> [B, L, D], padding positions zero."""
        tokens = features.tokens
        if self.text_proj is not None:
            tokens = self.text_proj(tokens.to(self.text_proj.weight.dtype))
        # Zero after the projection so that its bias does not leak into padding.
        return ConditioningTokens(tokens * features.mask[..., None].to(tokens.dtype),
                                  features.mask)

    def embed_timing(self, seconds: Mapping[str, torch.Tensor]) -> dict[str, ConditioningTokens]:
        """{id: seconds [B]} -> {id: tokens [B, 1, D]}; every timing id must be present."""
        missing = [cid for cid in self.timing if cid not in seconds]
        if missing:
            raise ValueError(f"missing timing value(s): {', '.join(missing)}")
        unknown = [cid for cid in seconds if cid not in self.timing]
        if unknown:
            raise ValueError(f"this model has no timing conditioner {', '.join(unknown)} "
                             f"(it has: {', '.join(self.timing) or 'none'})")
        return {cid: self.timing[cid](seconds[cid]) for cid in self.timing}

    def forward(self, text_features: ConditioningTokens | None,
                seconds: Mapping[str, torch.Tensor]) -> Conditioning:
        """Text features (raw encoder output, or None for a model without text) and timing
        values {id: [B]} -> Conditioning (cross_attn [B, L, D], global_cond [B, G])."""
        parts = self.embed_timing(seconds)
        if TEXT in self.cross_attention_ids:
            if text_features is None:
                raise ValueError("this model is conditioned on text: give text features")
            parts[TEXT] = self.project_text(text_features)
        batch = {p.tokens.shape[0] for p in parts.values()}
        if len(batch) != 1:
            raise ValueError(f"conditioning parts have different batch sizes: {sorted(batch)}")
        cross = [parts[cid] for cid in self.cross_attention_ids]
        cross_attn = torch.cat([p.tokens for p in cross], dim=1)  # [B, L, D]
        mask = torch.cat([p.mask for p in cross], dim=1)  # [B, L]
        global_cond = (torch.cat([parts[cid].tokens[:, 0] for cid in self.global_ids], dim=-1)
                       if self.global_ids else None)  # [B, G]
        return Conditioning(cross_attn, mask, global_cond)
