"""The diffusion transformer of Stable Audio (SYSTEM.md section 4): a backbone that
maps noisy latents, a diffusion time and the conditioning to the network output.
No schedule, no guidance, no dropout of the conditioning: those live in
``longplay.diffusion`` and ``longplay.training``.

Shape legend: B batch, D latent channels, T latent frames, N = T + 1 positions (the
prepended global token first), W width, L context tokens, C context width, H heads,
E head width.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from longplay.conditioning.types import Conditioning
from longplay.layers import (
    Compiler,
    FourierFeatures,
    TransientState,
    apply_rotary,
    rotary_angles,
)

TIMESTEP_FEATURES = 256
QK_NORM_EPS = 1e-6


def rotary_dim_for(head_dim: int) -> int:
    """Channels of each head that carry RoPE: max(head_dim // 2, 32), the reference rule
    (32 of 64 for Stable Audio Open; the whole head when head_dim is 32)."""
    rot = max(head_dim // 2, 32)
    if rot > head_dim:
        raise ValueError(f"head width {head_dim} is below the 32 rotary channels the reference "
                         "models use; choose width / num_heads >= 32")
    return rot


class LayerNorm(nn.Module):
    """LayerNorm with a learned gain and a fixed bias buffer (zeros unless loaded), as
    the reference's bias-less LayerNorm: the bias is never trained."""

    def __init__(self, width: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(width))
        self.register_buffer("bias", torch.zeros(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)


class MLPEmbedder(nn.Module):
    """Linear -> SiLU -> Linear."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, out_dim, bias=bias)
        self.fc2 = nn.Linear(out_dim, out_dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(x)))


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, N, H*E] -> [B, H, N, E]."""
    b, n, _ = x.shape
    return x.view(b, n, heads, -1).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, H, N, E] -> [B, N, H*E]."""
    b, h, n, e = x.shape
    return x.transpose(1, 2).reshape(b, n, h * e)


CPU_BF16_QUERY_CHUNK = 2048
"""On a CPU, bf16 attention over more queries than this, with at least
``CPU_BF16_CHUNK_MIN_HEADS`` batch items x heads, runs in chunks of this many queries:
PyTorch's fused CPU kernel slows down at long sequences in bf16 with many heads (6144
latents, batch 2 x 24 heads: 1.6x faster in chunks of 2048, exactly the same result;
with batch 2 x 4 heads, as in the demo model, chunks are 0.9x; fp32 and shorter
sequences gain nothing; benchmarks/attention.py)."""
CPU_BF16_CHUNK_MIN_HEADS = 32


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
          mask: torch.Tensor | None) -> torch.Tensor:
    n, chunk = q.shape[-2], CPU_BF16_QUERY_CHUNK
    if (q.device.type != "cpu" or q.dtype != torch.bfloat16 or n <= chunk
            or q.shape[0] * q.shape[1] < CPU_BF16_CHUNK_MIN_HEADS):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return torch.cat([F.scaled_dot_product_attention(q[..., i:i + chunk, :], k, v,
                                                     attn_mask=mask)
                      for i in range(0, n, chunk)], dim=-2)


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               mask: torch.Tensor | None, dtype: torch.dtype | None) -> torch.Tensor:
    """SDPA over q [B, H, N, E] and k, v [B, H, L, E] (mask [B, 1, 1, L] or None),
    computed in ``dtype`` when given (the result in q's dtype)."""
    if dtype is None or dtype == q.dtype:
        return _sdpa(q, k, v, mask)
    return _sdpa(q.to(dtype), k.to(dtype), v.to(dtype), mask).to(q.dtype)


class SelfAttention(nn.Module):
    """Multi-head self-attention with partial RoPE and optional q/k LayerNorm."""

    def __init__(self, width: int, num_heads: int, qk_norm: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = width // num_heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.out = nn.Linear(width, width, bias=False)
        self.q_norm = nn.LayerNorm(head_dim, eps=QK_NORM_EPS) if qk_norm else None
        self.k_norm = nn.LayerNorm(head_dim, eps=QK_NORM_EPS) if qk_norm else None
        self.attention_dtype: torch.dtype | None = None  # see DiffusionTransformer

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """x [B, N, W], cos/sin [N, R] -> [B, N, W]."""
        q, k, v = (_split_heads(p, self.num_heads) for p in self.qkv(x).chunk(3, dim=-1))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        return self.out(_merge_heads(_attention(q, k, v, None, self.attention_dtype)))


@dataclass(frozen=True)
class ContextKV:
    """Keys and values of one block's cross-attention: [B, H, L, E] each."""

    k: torch.Tensor
    v: torch.Tensor


class CrossAttention(nn.Module):
    """Grouped-query cross-attention: the context (width C) gives C / E key/value heads,
    each shared by H / (C / E) query heads."""

    def __init__(self, width: int, num_heads: int, context_dim: int, qk_norm: bool) -> None:
        super().__init__()
        head_dim = width // num_heads
        if context_dim % head_dim:
            raise ValueError(f"context width {context_dim} is not a multiple of the head width "
                             f"{head_dim}")
        self.num_heads = num_heads
        self.kv_heads = context_dim // head_dim
        if num_heads % self.kv_heads:
            raise ValueError(f"{num_heads} query heads can't share {self.kv_heads} key/value heads")
        self.q = nn.Linear(width, width, bias=False)
        self.kv = nn.Linear(context_dim, 2 * context_dim, bias=False)
        self.out = nn.Linear(width, width, bias=False)
        self.q_norm = nn.LayerNorm(head_dim, eps=QK_NORM_EPS) if qk_norm else None
        self.k_norm = nn.LayerNorm(head_dim, eps=QK_NORM_EPS) if qk_norm else None
        self.attention_dtype: torch.dtype | None = None  # see DiffusionTransformer

    def project_context(self, context: torch.Tensor) -> ContextKV:
        """context [B, L, C] -> keys and values [B, H, L, E], expanded to the query heads."""
        k, v = (_split_heads(p, self.kv_heads) for p in self.kv(context).chunk(2, dim=-1))
        if self.k_norm is not None:
            k = self.k_norm(k)
        repeat = self.num_heads // self.kv_heads
        if repeat > 1:  # kv head j serves query heads j*repeat .. j*repeat + repeat - 1
            k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
        return ContextKV(k, v)

    def forward(self, x: torch.Tensor, kv: ContextKV,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, N, W], kv from ``project_context``, mask [B, L] bool or None -> [B, N, W]."""
        q = _split_heads(self.q(x), self.num_heads)
        if self.q_norm is not None:
            q = self.q_norm(q)
        attn_mask = None if mask is None else mask[:, None, None, :]
        out = _attention(q, kv.k, kv.v, attn_mask, self.attention_dtype)
        return self.out(_merge_heads(out))


class SwiGLU(nn.Module):
    """Linear(W, 2*M) -> a * SiLU(gate) -> Linear(M, W), value half first."""

    def __init__(self, width: int, mult: int = 4) -> None:
        super().__init__()
        self.proj_in = nn.Linear(width, 2 * mult * width)
        self.proj_out = nn.Linear(mult * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.proj_in(x).chunk(2, dim=-1)
        return self.proj_out(a * F.silu(gate))


class DiTBlock(nn.Module):
    """Pre-norm block: self-attention, cross-attention, feed-forward, each residual."""

    def __init__(self, width: int, num_heads: int, context_dim: int, qk_norm: bool) -> None:
        super().__init__()
        self.self_norm = LayerNorm(width)
        self.self_attn = SelfAttention(width, num_heads, qk_norm)
        self.cross_norm = LayerNorm(width)
        self.cross_attn = CrossAttention(width, num_heads, context_dim, qk_norm)
        self.ff_norm = LayerNorm(width)
        self.ff = SwiGLU(width)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, kv: ContextKV,
                mask: torch.Tensor | None) -> torch.Tensor:
        """x [B, N, W] -> [B, N, W]."""
        x = x + self.self_attn(self.self_norm(x), cos, sin)
        x = x + self.cross_attn(self.cross_norm(x), kv, mask)
        return x + self.ff(self.ff_norm(x))


@dataclass(frozen=True)
class DiTContext:
    """What a DiT forward needs from the conditioning, computed once per generation.

    Attributes:
        kv: per block, the cross-attention keys and values [B, H, L, E].
        global_embed: [B, W] projected global condition, or None.
        mask: [B, L] cross-attention mask, or None when the model attends to every token.
        input_concat: [B, E, T] extra input channels (an inpainting model's), or None.
    """

    kv: tuple[ContextKV, ...]
    global_embed: torch.Tensor | None
    mask: torch.Tensor | None
    input_concat: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.kv[0].k.shape[0])


class DiffusionTransformer(nn.Module):
    """The Stable Audio DiT.

    ``forward(x, t, conditioning)`` returns the network output (v for the v-objective).
    The diffusion time t in [0, 1] and the projected global condition are summed into
    one token prepended to the sequence; the cross-attention context is projected by a
    small MLP (to ``width`` when ``project_cond_tokens``). For many forwards with the
    same conditioning (a sampling loop), call ``prepare_context`` once and pass its
    result: keys and values of every cross-attention are then not recomputed.
    """

    # Caches and compiled code belong to one user of the weights (see layers.sharing).
    TRANSIENT_STATE: ClassVar[TransientState] = {"_rope_cache": dict,
                                                 "_compiled_blocks": lambda: None}

    def __init__(self, io_channels: int = 64, width: int = 1536, depth: int = 24,
                 num_heads: int = 24, cond_token_dim: int = 768, global_cond_dim: int = 1536,
                 project_cond_tokens: bool = False, qk_norm: bool = False,
                 use_cross_attn_mask: bool = False, rope_base: float = 10000.0,
                 input_concat_dim: int = 0) -> None:
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {num_heads}")
        self.io_channels = io_channels
        self.input_concat_dim = input_concat_dim
        self.width = width
        self.num_heads = num_heads
        self.rotary_dim = rotary_dim_for(width // num_heads)
        self.rope_base = rope_base
        self.use_cross_attn_mask = use_cross_attn_mask
        self.gradient_checkpointing = False
        context_dim = width if project_cond_tokens else cond_token_dim

        self.timestep_features = FourierFeatures(TIMESTEP_FEATURES)
        self.timestep_embed = MLPEmbedder(TIMESTEP_FEATURES, width, bias=True)
        self.cond_embed = MLPEmbedder(cond_token_dim, context_dim, bias=False)
        self.global_embed = (MLPEmbedder(global_cond_dim, width, bias=False)
                             if global_cond_dim > 0 else None)
        in_channels = io_channels + input_concat_dim
        self.pre_conv = nn.Conv1d(in_channels, in_channels, 1, bias=False)
        self.project_in = nn.Linear(in_channels, width, bias=False)
        self.blocks = nn.ModuleList(
            DiTBlock(width, num_heads, context_dim, qk_norm) for _ in range(depth))
        self.project_out = nn.Linear(width, io_channels, bias=False)
        self.post_conv = nn.Conv1d(io_channels, io_channels, 1, bias=False)
        self._rope_cache: dict[tuple[int, torch.device, bool],
                               tuple[torch.Tensor, torch.Tensor]] = {}
        self._compiled_blocks: list[Callable[..., torch.Tensor]] | None = None
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Residual branches start at zero (attention and feed-forward outputs, the 1x1
        pre/post convolutions), then every parameter is halved, as the reference does."""
        for block in self.blocks:
            nn.init.zeros_(block.self_attn.out.weight)
            nn.init.zeros_(block.cross_attn.out.weight)
            nn.init.zeros_(block.ff.proj_out.weight)
            nn.init.zeros_(block.ff.proj_out.bias)
        nn.init.zeros_(self.pre_conv.weight)
        nn.init.zeros_(self.post_conv.weight)
        with torch.no_grad():
            for p in self.parameters():
                p.mul_(0.5)

    def set_attention_dtype(self, dtype: torch.dtype | None) -> DiffusionTransformer:
        """Compute the attention products (SDPA) in ``dtype``, e.g. bfloat16 around int8
        linear layers that work in float32 (``precision="int8"``); None: in the
        activations' dtype."""
        for module in self.modules():
            if isinstance(module, SelfAttention | CrossAttention):
                module.attention_dtype = dtype
        return self

    def compile_blocks(self, compiler: Compiler | None) -> DiffusionTransformer:
        """Run each block of inference (no gradients) through ``compiler`` (a
        :class:`~longplay.layers.Compiler`; the blocks share one compiled graph); None
        runs them eagerly again. Training always runs eagerly."""
        self._compiled_blocks = (None if compiler is None
                                 else [compiler.wrap(block) for block in self.blocks])
        return self

    def _rope(self, num_positions: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        # Tables made under inference_mode can't be saved for a backward pass: training
        # after inference gets its own.
        key = (num_positions, device, torch.is_inference_mode_enabled())
        if key not in self._rope_cache:
            angles = rotary_angles(num_positions, self.rotary_dim, self.rope_base, device)
            self._rope_cache = {key: (angles.cos(), angles.sin())}  # keep the latest length only
        return self._rope_cache[key]

    def prepare_context(self, conditioning: Conditioning) -> DiTContext:
        """Project the conditioning once: cross-attention keys/values of every block and the
        global embedding. Depends only on the conditioning, not on x or t."""
        concat = conditioning.input_concat
        if (concat is None) != (self.input_concat_dim == 0) or (
                concat is not None and concat.shape[1] != self.input_concat_dim):
            got = "none" if concat is None else f"{concat.shape[1]} channels"
            raise ValueError(f"this DiT takes {self.input_concat_dim} extra input channels "
                             f"(an inpainting model's mask and masked latents), got {got}")
        param = self.project_in.weight
        context = self.cond_embed(conditioning.cross_attn.to(param.dtype))  # [B, L, C]
        kv = tuple(block.cross_attn.project_context(context) for block in self.blocks)
        global_embed = None
        if self.global_embed is not None:
            if conditioning.global_cond is None:
                raise ValueError("this DiT needs a global condition (timing), got none")
            global_embed = self.global_embed(conditioning.global_cond.to(param.dtype))  # [B, W]
        mask = conditioning.cross_attn_mask if self.use_cross_attn_mask else None
        return DiTContext(kv, global_embed, mask,
                          None if concat is None else concat.to(param.dtype))

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                conditioning: Conditioning | DiTContext) -> torch.Tensor:
        """x [B, D, T], t [B] in [0, 1], conditioning (or its prepared context) -> [B, D, T]."""
        context = (conditioning if isinstance(conditioning, DiTContext)
                   else self.prepare_context(conditioning))
        if context.batch_size != x.shape[0] or t.shape != (x.shape[0],):
            raise ValueError(f"batch mismatch: x {tuple(x.shape)}, t {tuple(t.shape)}, "
                             f"conditioning batch {context.batch_size}")
        dtype = self.project_in.weight.dtype
        x = x.to(dtype)
        if context.input_concat is not None:
            if context.input_concat.shape[-1] != x.shape[-1]:
                raise ValueError(f"the extra input has {context.input_concat.shape[-1]} frames, "
                                 f"x {x.shape[-1]}")
            x = torch.cat([x, context.input_concat.to(dtype)], dim=1)  # [B, D + E, T]
        g = self.timestep_embed(self.timestep_features(t))  # [B, W]
        if context.global_embed is not None:
            g = g + context.global_embed
        h = x + self.pre_conv(x)  # [B, D (+ E), T]
        h = self.project_in(h.transpose(1, 2))  # [B, T, W]
        h = torch.cat([g[:, None].to(dtype), h], dim=1)  # [B, N, W]
        cos, sin = self._rope(h.shape[1], h.device)
        blocks = (self._compiled_blocks if self._compiled_blocks is not None
                  and not torch.is_grad_enabled() else self.blocks)
        for block, kv in zip(blocks, context.kv, strict=True):
            if self.gradient_checkpointing and self.training:
                h = torch.utils.checkpoint.checkpoint(block, h, cos, sin, kv, context.mask,
                                                      use_reentrant=False)
            else:
                h = block(h, cos, sin, kv, context.mask)
        out = self.project_out(h[:, 1:]).transpose(1, 2)  # [B, D, T]
        return out + self.post_conv(out)
