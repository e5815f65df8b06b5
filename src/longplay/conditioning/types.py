"""Typed conditioning results.

Shape legend: B batch, L tokens, D token width, G global width, E extra input channels,
T latent frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TokenBatch:
    """Tokenizer output: input_ids [B, L] int64 and attention_mask [B, L] bool."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor


@dataclass(frozen=True)
class ConditioningTokens:
    """What one conditioner produces: tokens [B, L, D] and their mask [B, L] (bool)."""

    tokens: torch.Tensor
    mask: torch.Tensor


@dataclass(frozen=True)
class Conditioning:
    """Everything the diffusion transformer is conditioned on.

    Attributes:
        cross_attn: [B, L, D] cross-attention context (text tokens, then timing tokens).
        cross_attn_mask: [B, L] bool, True for real tokens. The public Stable Audio models
            were trained attending to every position (padding tokens are zero vectors), so
            the DiT only applies this mask when its config asks for it.
        global_cond: [B, G] global condition (concatenated timing embeddings), or None.
        input_concat: [B, E, T] channels concatenated to the DiT's input (an inpainting
            model's mask and masked known latents), or None. Guidance's unconditional
            branch keeps them.
    """

    cross_attn: torch.Tensor
    cross_attn_mask: torch.Tensor
    global_cond: torch.Tensor | None
    input_concat: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.cross_attn.shape[0])

    def without_context(self) -> Conditioning:
        """The unconditional branch of classifier-free guidance: all cross-attention
        tokens zeroed (text and timing), the global condition kept."""
        return Conditioning(torch.zeros_like(self.cross_attn), self.cross_attn_mask,
                            self.global_cond, self.input_concat)

    def cat(self, other: Conditioning) -> Conditioning:
        """[self; other] along the batch (e.g. conditional then unconditional)."""
        if self.cross_attn.shape[1:] != other.cross_attn.shape[1:]:
            raise ValueError(f"cannot batch conditioning with context shapes "
                             f"{tuple(self.cross_attn.shape)} and {tuple(other.cross_attn.shape)}")
        glob = None
        if self.global_cond is not None and other.global_cond is not None:
            glob = torch.cat([self.global_cond, other.global_cond])
        elif (self.global_cond is None) != (other.global_cond is None):
            raise ValueError("cannot batch conditioning with and without a global condition")
        if (self.input_concat is None) != (other.input_concat is None):
            raise ValueError("cannot batch conditioning with and without input channels")
        concat = (None if self.input_concat is None
                  else torch.cat([self.input_concat, other.input_concat]))
        return Conditioning(torch.cat([self.cross_attn, other.cross_attn]),
                            torch.cat([self.cross_attn_mask, other.cross_attn_mask]), glob,
                            concat)

    def repeat(self, n: int) -> Conditioning:
        """Each item repeated n times consecutively (item i -> rows i*n .. i*n+n-1)."""
        glob = None if self.global_cond is None else self.global_cond.repeat_interleave(n, 0)
        concat = (None if self.input_concat is None
                  else self.input_concat.repeat_interleave(n, 0))
        return Conditioning(self.cross_attn.repeat_interleave(n, 0),
                            self.cross_attn_mask.repeat_interleave(n, 0), glob, concat)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Conditioning:
        glob = None if self.global_cond is None else self.global_cond.to(device, dtype)
        concat = None if self.input_concat is None else self.input_concat.to(device, dtype)
        return Conditioning(self.cross_attn.to(device, dtype), self.cross_attn_mask.to(device),
                            glob, concat)

    def with_input(self, input_concat: torch.Tensor | None) -> Conditioning:
        """The same conditioning with ``input_concat`` [B, E, T] as the extra input."""
        return Conditioning(self.cross_attn, self.cross_attn_mask, self.global_cond,
                            input_concat)
