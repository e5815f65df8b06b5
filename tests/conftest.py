"""Shared test fixtures: paths to the reference fixtures copied into the repo."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

FIXTURES = Path(__file__).parent / "fixtures"
SAO1_TINY = FIXTURES / "sao1_tiny"
SAO1_TINY_DIFFUSERS = FIXTURES / "sao1_tiny_diffusers"
SAOS_TINY = FIXTURES / "saos_tiny"


@pytest.fixture(scope="session")
def sao1_reference() -> dict[str, torch.Tensor]:
    """Reference tensors produced by stable-audio-tools 0.0.20 (see the fixture README)."""
    return load_file(str(SAO1_TINY / "reference.safetensors"))


@pytest.fixture(scope="session")
def saos_reference() -> dict[str, torch.Tensor]:
    """Reference tensors of the Stable Audio Open Small fixture."""
    return load_file(str(SAOS_TINY / "reference.safetensors"))
