"""The diffusion package stands alone: it works on any callable network."""

from __future__ import annotations

import ast
from pathlib import Path

import longplay.diffusion as diffusion

PACKAGE = Path(diffusion.__file__).parent
ALLOWED_TOP_LEVEL = {"__future__", "collections", "dataclasses", "math", "typing", "torch"}


def test_diffusion_imports_only_torch_the_stdlib_and_itself() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level > 0:  # relative: inside longplay.diffusion
                    continue
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in ALLOWED_TOP_LEVEL, f"{path.name} imports {name}"


def test_public_names_are_exported() -> None:
    for name in diffusion.__all__:
        assert hasattr(diffusion, name), name
    assert {"sample_v_ddim", "VDenoiser", "guided", "SAMPLERS", "logsnr_shift_t_grid"} <= set(
        diffusion.__all__
    )
