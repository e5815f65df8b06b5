"""How every benchmark ends: print its table, then save it (and its raw rows) atomically.

The scripts under ``benchmarks/`` import this module by name: run as
``python benchmarks/<name>.py``, their own folder is first on ``sys.path``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from longplay.atomic import write_json_atomic, write_text_atomic


def save_report(text: str, out: Path, data: Any = None) -> None:
    """Print ``text`` and write it to ``out`` (creating its folder); when ``data`` is given,
    write it as JSON next to it (``out`` with the suffix ``.json``). Each file appears
    complete under its name or not at all."""
    out = Path(out)
    print()
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, text)
    if data is not None:
        write_json_atomic(out.with_suffix(".json"), data)


def seconds(x: float) -> str:
    """A time for a table: one decimal from a second up, three significant digits below
    (a GPU's 10 s decode takes hundredths of a second; one decimal would print 0.0)."""
    return f"{x:.1f}" if x >= 1 else f"{x:.3g}"
