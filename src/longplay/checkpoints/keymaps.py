"""Key mapping between longplay's own state-dict names and the public checkpoint
layouts (stable-audio-tools and Hugging Face diffusers).

Each table row maps one module (a key prefix) in the three layouts; the
parameter names under it (``weight_g``, ``weight_v``, ``bias``, ``alpha``,
``beta``) are the same everywhere. Placeholders: ``{b}`` strided block (0-based,
in longplay's order), ``{r}`` residual unit (0, 1, 2), ``{b1}`` = b + 1,
``{r1}`` = r + 1, ``{r2}`` = r + 2, ``{n1}`` = number of blocks + 1, ``{n2}`` =
number of blocks + 2.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

# (longplay, stable-audio-tools, diffusers)
VAE_MODULE_TABLE: tuple[tuple[str, str, str], ...] = (
    # encoder: stem conv, strided blocks, final Snake, head conv
    ("encoder.stem", "encoder.layers.0", "encoder.conv1"),
    ("encoder.blocks.{b}.res_units.{r}.act1", "encoder.layers.{b1}.layers.{r}.layers.0",
     "encoder.block.{b}.res_unit{r1}.snake1"),
    ("encoder.blocks.{b}.res_units.{r}.conv1", "encoder.layers.{b1}.layers.{r}.layers.1",
     "encoder.block.{b}.res_unit{r1}.conv1"),
    ("encoder.blocks.{b}.res_units.{r}.act2", "encoder.layers.{b1}.layers.{r}.layers.2",
     "encoder.block.{b}.res_unit{r1}.snake2"),
    ("encoder.blocks.{b}.res_units.{r}.conv2", "encoder.layers.{b1}.layers.{r}.layers.3",
     "encoder.block.{b}.res_unit{r1}.conv2"),
    ("encoder.blocks.{b}.act", "encoder.layers.{b1}.layers.3", "encoder.block.{b}.snake1"),
    ("encoder.blocks.{b}.downsample", "encoder.layers.{b1}.layers.4", "encoder.block.{b}.conv1"),
    ("encoder.act", "encoder.layers.{n1}", "encoder.snake1"),
    ("encoder.head", "encoder.layers.{n2}", "encoder.conv2"),
    # decoder: stem conv, upsampling blocks, final Snake, head conv (no bias)
    ("decoder.stem", "decoder.layers.0", "decoder.conv1"),
    ("decoder.blocks.{b}.act", "decoder.layers.{b1}.layers.0", "decoder.block.{b}.snake1"),
    ("decoder.blocks.{b}.upsample", "decoder.layers.{b1}.layers.1", "decoder.block.{b}.conv_t1"),
    ("decoder.blocks.{b}.res_units.{r}.act1", "decoder.layers.{b1}.layers.{r2}.layers.0",
     "decoder.block.{b}.res_unit{r1}.snake1"),
    ("decoder.blocks.{b}.res_units.{r}.conv1", "decoder.layers.{b1}.layers.{r2}.layers.1",
     "decoder.block.{b}.res_unit{r1}.conv1"),
    ("decoder.blocks.{b}.res_units.{r}.act2", "decoder.layers.{b1}.layers.{r2}.layers.2",
     "decoder.block.{b}.res_unit{r1}.snake2"),
    ("decoder.blocks.{b}.res_units.{r}.conv2", "decoder.layers.{b1}.layers.{r2}.layers.3",
     "decoder.block.{b}.res_unit{r1}.conv2"),
    ("decoder.act", "decoder.layers.{n1}", "decoder.snake1"),
    ("decoder.head", "decoder.layers.{n2}", "decoder.conv2"),
)

LAYOUTS = ("longplay", "stable-audio-tools", "diffusers")
NUM_RESIDUAL_UNITS = 3

# With ``use_nearest_upsample`` stable-audio-tools' upsampling is Sequential(Upsample,
# WNConv1d): its conv sits one level deeper. diffusers has no such decoder.
VAE_NEAREST_UPSAMPLE_ROW = ("decoder.blocks.{b}.upsample", "decoder.layers.{b1}.layers.1.1")


@dataclass(frozen=True)
class KeyMap:
    """A bijection between module prefixes of two layouts."""

    to_own: dict[str, str]  # foreign prefix -> own prefix

    @cached_property
    def to_foreign(self) -> dict[str, str]:
        return {own: foreign for foreign, own in self.to_own.items()}

    def own_key(self, foreign_key: str) -> str | None:
        """The longplay key for ``foreign_key``, or None when no row covers it."""
        module, _, param = foreign_key.rpartition(".")
        own = self.to_own.get(module)
        return None if own is None else f"{own}.{param}"

    def foreign_key(self, own_key: str) -> str | None:
        """The foreign key for the longplay key ``own_key`` (None when unmapped)."""
        module, _, param = own_key.rpartition(".")
        foreign = self.to_foreign.get(module)
        return None if foreign is None else f"{foreign}.{param}"


def _expand(template: str, num_blocks: int) -> Iterable[tuple[dict[str, int], str]]:
    blocks = range(num_blocks) if "{b" in template else (0,)
    units = range(NUM_RESIDUAL_UNITS) if "{r" in template else (0,)
    for b in blocks:
        for r in units:
            yield {"b": b, "r": r}, template


def vae_key_map(layout: str, num_blocks: int, *, nearest_upsample: bool = False) -> KeyMap:
    """The module map from ``layout`` to longplay's names for a VAE with ``num_blocks``
    strided blocks (5 for Stable Audio Open), whose decoder upsamples by transposed
    convolutions or, with ``nearest_upsample``, by repetition and a convolution."""
    if layout not in LAYOUTS[1:]:
        raise ValueError(f"unknown checkpoint layout {layout!r}; known: {', '.join(LAYOUTS[1:])}")
    if nearest_upsample and layout == "diffusers":
        raise ValueError("diffusers' AutoencoderOobleck has no nearest upsampling; save a VAE "
                         "with nearest_upsample in the stable-audio-tools layout")
    column = LAYOUTS.index(layout)
    table = VAE_MODULE_TABLE
    if nearest_upsample:
        table = tuple((*VAE_NEAREST_UPSAMPLE_ROW, "") if row[0] == VAE_NEAREST_UPSAMPLE_ROW[0]
                      else row for row in VAE_MODULE_TABLE)
    to_own: dict[str, str] = {}
    for row in table:
        for idx, _ in _expand(row[0], num_blocks):
            fmt = {"b": idx["b"], "r": idx["r"], "b1": idx["b"] + 1, "r1": idx["r"] + 1,
                   "r2": idx["r"] + 2, "n1": num_blocks + 1, "n2": num_blocks + 2}
            to_own[row[column].format(**fmt)] = row[0].format(**fmt)
    return KeyMap(to_own=to_own)


# The diffusion transformer: (longplay, stable-audio-tools under "model.model.", diffusers
# "transformer/"). "{i}" is the block index. Rows whose diffusers entry is a tuple are
# fused in longplay and stable-audio-tools and split in diffusers (concatenated along
# the output dimension in the order given).
DIT_MODULE_TABLE: tuple[tuple[str, str, str | tuple[str, ...]], ...] = (
    ("timestep_features", "timestep_features", "time_proj"),
    ("timestep_embed.fc1", "to_timestep_embed.0", "timestep_proj.0"),
    ("timestep_embed.fc2", "to_timestep_embed.2", "timestep_proj.2"),
    ("cond_embed.fc1", "to_cond_embed.0", "cross_attention_proj.0"),
    ("cond_embed.fc2", "to_cond_embed.2", "cross_attention_proj.2"),
    ("global_embed.fc1", "to_global_embed.0", "global_proj.0"),
    ("global_embed.fc2", "to_global_embed.2", "global_proj.2"),
    ("pre_conv", "preprocess_conv", "preprocess_conv"),
    ("post_conv", "postprocess_conv", "postprocess_conv"),
    ("project_in", "transformer.project_in", "proj_in"),
    ("project_out", "transformer.project_out", "proj_out"),
    ("blocks.{i}.self_norm", "transformer.layers.{i}.pre_norm", "transformer_blocks.{i}.norm1"),
    ("blocks.{i}.self_attn.qkv", "transformer.layers.{i}.self_attn.to_qkv",
     ("transformer_blocks.{i}.attn1.to_q", "transformer_blocks.{i}.attn1.to_k",
      "transformer_blocks.{i}.attn1.to_v")),
    ("blocks.{i}.self_attn.out", "transformer.layers.{i}.self_attn.to_out",
     "transformer_blocks.{i}.attn1.to_out.0"),
    ("blocks.{i}.self_attn.q_norm", "transformer.layers.{i}.self_attn.q_norm",
     "transformer_blocks.{i}.attn1.norm_q"),
    ("blocks.{i}.self_attn.k_norm", "transformer.layers.{i}.self_attn.k_norm",
     "transformer_blocks.{i}.attn1.norm_k"),
    ("blocks.{i}.cross_norm", "transformer.layers.{i}.cross_attend_norm",
     "transformer_blocks.{i}.norm2"),
    ("blocks.{i}.cross_attn.q", "transformer.layers.{i}.cross_attn.to_q",
     "transformer_blocks.{i}.attn2.to_q"),
    ("blocks.{i}.cross_attn.kv", "transformer.layers.{i}.cross_attn.to_kv",
     ("transformer_blocks.{i}.attn2.to_k", "transformer_blocks.{i}.attn2.to_v")),
    ("blocks.{i}.cross_attn.out", "transformer.layers.{i}.cross_attn.to_out",
     "transformer_blocks.{i}.attn2.to_out.0"),
    ("blocks.{i}.cross_attn.q_norm", "transformer.layers.{i}.cross_attn.q_norm",
     "transformer_blocks.{i}.attn2.norm_q"),
    ("blocks.{i}.cross_attn.k_norm", "transformer.layers.{i}.cross_attn.k_norm",
     "transformer_blocks.{i}.attn2.norm_k"),
    ("blocks.{i}.ff_norm", "transformer.layers.{i}.ff_norm", "transformer_blocks.{i}.norm3"),
    ("blocks.{i}.ff.proj_in", "transformer.layers.{i}.ff.ff.0.proj",
     "transformer_blocks.{i}.ff.net.0.proj"),
    ("blocks.{i}.ff.proj_out", "transformer.layers.{i}.ff.ff.2", "transformer_blocks.{i}.ff.net.2"),
)

# stable-audio-tools' transformer LayerNorm names its gain and bias gamma and beta.
SAT_PARAM_RENAMES = {"gamma": "weight", "beta": "bias"}


def dit_module_rows(depth: int) -> list[tuple[str, str, str | tuple[str, ...]]]:
    """The DIT_MODULE_TABLE with "{i}" expanded for blocks 0 .. depth-1."""
    rows = []
    for own, sat, diffusers in DIT_MODULE_TABLE:
        for i in range(depth) if "{i}" in own else (None,):
            fmt = {} if i is None else {"i": i}
            split = (tuple(d.format(**fmt) for d in diffusers) if isinstance(diffusers, tuple)
                     else diffusers.format(**fmt))
            rows.append((own.format(**fmt), sat.format(**fmt), split))
    return rows


def conditioner_module_rows(text_id: str, timing_ids: tuple[str, ...],
                            has_text_projection: bool) -> list[tuple[str, str, str]]:
    """(longplay, stable-audio-tools under "conditioner.conditioners.", diffusers
    "projection_model/") rows of the conditioner."""
    diffusers_timing = {"seconds_start": "start_number_conditioner",
                        "seconds_total": "end_number_conditioner"}
    rows = []
    if has_text_projection:
        rows.append(("text_proj", f"{text_id}.proj_out", "text_projection"))
    for cid in timing_ids:
        d = diffusers_timing.get(cid, cid)
        rows.append((f"timing.{cid}.frequencies", f"{cid}.embedder.embedding.0.weights",
                     f"{d}.time_positional_embedding.0.weights"))
        rows.append((f"timing.{cid}.proj", f"{cid}.embedder.embedding.1",
                     f"{d}.time_positional_embedding.1"))
    return rows
