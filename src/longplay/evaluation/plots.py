"""Axes for the report's pictures: tick marks, numbers and axis labels around an RGB
image, drawn with a built-in 3x5 pixel font (no imaging or plotting dependency; the
PNG writer is :func:`longplay.audio.images.write_png`).

Shape legend: H image height, W image width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["FONT_SCALE", "MARK_COLOUR", "MIN_PLOT_PIXELS", "text_bitmap", "tick_values",
           "with_axes"]

# Each glyph: five rows of three pixels, top to bottom ("1" = ink).
_GLYPHS = {
    "0": "111 101 101 101 111", "1": "010 110 010 010 111", "2": "111 001 111 100 111",
    "3": "111 001 111 001 111", "4": "101 101 111 001 001", "5": "111 100 111 001 111",
    "6": "111 100 111 101 111", "7": "111 001 001 010 010", "8": "111 101 111 101 111",
    "9": "111 101 111 001 111", ".": "000 000 000 000 010", "-": "000 000 111 000 000",
    " ": "000 000 000 000 000", "(": "001 010 010 010 001", ")": "100 010 010 010 100",
    "/": "001 001 010 100 100", ":": "000 010 000 010 000",
    "A": "010 101 111 101 101", "B": "110 101 110 101 110", "C": "011 100 100 100 011",
    "D": "110 101 101 101 110", "E": "111 100 110 100 111", "F": "111 100 110 100 100",
    "G": "011 100 101 101 011", "H": "101 101 111 101 101", "I": "111 010 010 010 111",
    "J": "001 001 001 101 010", "K": "101 101 110 101 101", "L": "100 100 100 100 111",
    "M": "101 111 111 101 101", "N": "110 101 101 101 101", "O": "010 101 101 101 010",
    "P": "110 101 110 100 100", "Q": "010 101 101 110 011", "R": "110 101 110 101 101",
    "S": "011 100 010 001 110", "T": "111 010 010 010 010", "U": "101 101 101 101 111",
    "V": "101 101 101 101 010", "W": "101 101 111 111 101", "X": "101 101 010 101 101",
    "Y": "101 101 010 010 010", "Z": "111 001 010 100 111",
}
_GLYPH_WIDTH, _GLYPH_HEIGHT = 3, 5
FONT_SCALE = 2
"""Screen pixels per font pixel: glyphs are 6 x 10 pixels."""
MIN_PLOT_PIXELS = 256
"""A picture smaller than this (a short clip's matrix) is enlarged by whole pixels."""

_PAPER = np.array([255, 255, 255], dtype=np.uint8)
_INK = np.array([0, 0, 0], dtype=np.uint8)
MARK_COLOUR = (0, 200, 255)
"""The dashed lines of ``x_marks``."""
_TICK = 4  # tick mark length
_GAP = 3  # between a tick and its number, and around labels


def text_bitmap(text: str, scale: int = FONT_SCALE) -> np.ndarray:
    """``text`` (letters shown upper case) as a bool bitmap [5 * scale, (4 n - 1) * scale].

    Raises:
        ValueError: a character the font lacks.
    """
    missing = sorted({c for c in text.upper() if c not in _GLYPHS})
    if missing:
        raise ValueError(f"the plot font has no {''.join(missing)!r}; it draws digits, A-Z "
                         f"and {''.join(c for c in _GLYPHS if not c.isalnum())!r}")
    columns = []
    for i, char in enumerate(text.upper()):
        rows = _GLYPHS[char].split()
        glyph = np.array([[c == "1" for c in row] for row in rows], dtype=bool)  # [5, 3]
        if i:
            columns.append(np.zeros((_GLYPH_HEIGHT, 1), dtype=bool))
        columns.append(glyph)
    bitmap = np.concatenate(columns, axis=1) if columns else np.zeros((_GLYPH_HEIGHT, 0), bool)
    return bitmap.repeat(scale, axis=0).repeat(scale, axis=1)


def tick_values(low: float, high: float, max_ticks: int = 6) -> list[float]:
    """Round values (1, 2 or 5 times a power of ten apart) within [low, high], at most
    ``max_ticks`` + 1 of them."""
    lo, hi = min(low, high), max(low, high)
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / max_ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step - 1e-9)
    values = [k * step for k in range(first, math.floor(hi / step + 1e-9) + 1)]
    digits = max(0, -math.floor(math.log10(step)))
    return [round(v, digits) for v in values]


def _label(value: float) -> str:
    return f"{value:.6g}"


def _stamp(canvas: np.ndarray, bitmap: np.ndarray, top: int, left: int) -> None:
    """Ink ``bitmap`` onto ``canvas`` [H, W, 3] with its top-left corner at (top, left)."""
    height, width = bitmap.shape
    canvas[top:top + height, left:left + width][bitmap] = _INK


def with_axes(image: np.ndarray, *, x_extent: tuple[float, float], x_label: str,
              y_extent: tuple[float, float] | None = None, y_label: str = "",
              x_marks: Sequence[float] = ()) -> np.ndarray:
    """``image`` [H, W, 3] uint8 on a white margin with a bottom and a left axis.

    Args:
        x_extent: the values at the image's left and right edges (e.g. 0 and the length in
            seconds); the bottom axis gets round-valued ticks with their numbers.
        x_label: written under the bottom axis, e.g. "time (s)".
        y_extent: the values at the image's top and bottom edges (a self-similarity matrix:
            0 at the top), or None for a left axis with a label and no ticks.
        y_label: written up the left side.
        x_marks: x values drawn as dashed vertical lines over the image (e.g. where a
            requested piece should end).

    Returns:
        RGB uint8 [H', W', 3], larger than ``image``: it is enlarged by whole pixels to at
        least :data:`MIN_PLOT_PIXELS` a side first, then framed.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or not image.size:
        raise ValueError(f"expected an RGB uint8 image [H, W, 3], got {image.dtype} "
                         f"{image.shape}")
    factor = max(1, math.ceil(MIN_PLOT_PIXELS / max(image.shape[0], image.shape[1])))
    image = image.repeat(factor, axis=0).repeat(factor, axis=1)
    height, width = image.shape[:2]
    glyph_h = _GLYPH_HEIGHT * FONT_SCALE

    def x_pixel(value: float) -> int:
        left, right = x_extent
        return round((value - left) / (right - left) * (width - 1))

    def y_pixel(value: float) -> int:
        top, bottom = y_extent
        return round((value - top) / (bottom - top) * (height - 1))

    x_ticks = [(x_pixel(v), text_bitmap(_label(v))) for v in tick_values(*x_extent)]
    y_ticks = ([] if y_extent is None else
               [(y_pixel(v), text_bitmap(_label(v))) for v in tick_values(*y_extent)])
    y_title = np.rot90(text_bitmap(y_label)) if y_label else np.zeros((0, 0), dtype=bool)
    if y_title.shape[0] > height:  # a long label beside a low picture: the small font
        y_title = np.rot90(text_bitmap(y_label, scale=1))
    x_title = text_bitmap(x_label)
    number_w = max((b.shape[1] for _, b in y_ticks), default=0)
    left = _GAP + y_title.shape[1] + _GAP + number_w + (_GAP + _TICK if y_ticks else 0) + 1
    overhang = max((b.shape[1] for _, b in x_ticks), default=0) // 2
    top = max(_GAP, glyph_h // 2 + 1 if y_ticks else _GAP)
    right = overhang + _GAP
    bottom = 1 + _TICK + _GAP + glyph_h + 2 * _GAP + glyph_h + _GAP
    canvas = np.empty((top + height + bottom, left + width + right, 3), dtype=np.uint8)
    canvas[:] = _PAPER
    canvas[top:top + height, left:left + width] = image
    for value in x_marks:
        column = left + x_pixel(value)
        if left <= column < left + width:
            dashes = (np.arange(height) // 6) % 2 == 0
            canvas[top:top + height, column][dashes] = MARK_COLOUR
    axis_row, axis_col = top + height, left - 1
    canvas[axis_row, axis_col:left + width] = _INK
    canvas[top:axis_row + 1, axis_col] = _INK
    for column, bitmap in x_ticks:
        column += left
        canvas[axis_row + 1:axis_row + 1 + _TICK, column] = _INK
        start = min(max(column - bitmap.shape[1] // 2, 0), canvas.shape[1] - bitmap.shape[1])
        _stamp(canvas, bitmap, axis_row + 1 + _TICK + _GAP, start)
    for row, bitmap in y_ticks:
        row += top
        canvas[row, axis_col - _TICK:axis_col] = _INK
        _stamp(canvas, bitmap, max(row - glyph_h // 2, 0),
               axis_col - _TICK - _GAP - bitmap.shape[1])
    label_top = axis_row + 1 + _TICK + _GAP + glyph_h + 2 * _GAP
    _stamp(canvas, x_title, label_top, left + (width - x_title.shape[1]) // 2)
    if y_title.size:
        _stamp(canvas, y_title, top + max((height - y_title.shape[0]) // 2, 0), _GAP)
    return canvas
