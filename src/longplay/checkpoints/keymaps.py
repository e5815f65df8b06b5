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


@dataclass(frozen=True)
class KeyMap:
    """A bijection between module prefixes of two layouts."""

    to_own: dict[str, str]  # foreign prefix -> own prefix

    def own_key(self, foreign_key: str) -> str | None:
        """The longplay key for ``foreign_key``, or None when no row covers it."""
        module, _, param = foreign_key.rpartition(".")
        own = self.to_own.get(module)
        return None if own is None else f"{own}.{param}"

    def foreign_key(self, own_key: str) -> str | None:
        """The foreign key for the longplay key ``own_key`` (None when unmapped)."""
        module, _, param = own_key.rpartition(".")
        for foreign, own in self.to_own.items():
            if own == module:
                return f"{foreign}.{param}"
        return None


def _expand(template: str, num_blocks: int) -> Iterable[tuple[dict[str, int], str]]:
    blocks = range(num_blocks) if "{b" in template else (0,)
    units = range(NUM_RESIDUAL_UNITS) if "{r" in template else (0,)
    for b in blocks:
        for r in units:
            yield {"b": b, "r": r}, template


def vae_key_map(layout: str, num_blocks: int) -> KeyMap:
    """The module map from ``layout`` to longplay's names for a VAE with ``num_blocks``
    strided blocks (5 for Stable Audio Open)."""
    if layout not in LAYOUTS[1:]:
        raise ValueError(f"unknown checkpoint layout {layout!r}; known: {', '.join(LAYOUTS[1:])}")
    column = LAYOUTS.index(layout)
    to_own: dict[str, str] = {}
    for row in VAE_MODULE_TABLE:
        for idx, _ in _expand(row[0], num_blocks):
            fmt = {"b": idx["b"], "r": idx["r"], "b1": idx["b"] + 1, "r1": idx["r"] + 1,
                   "r2": idx["r"] + 2, "n1": num_blocks + 1, "n2": num_blocks + 2}
            to_own[row[column].format(**fmt)] = row[0].format(**fmt)
    return KeyMap(to_own=to_own)
