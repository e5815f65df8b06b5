"""Shared test fixtures: paths to the reference fixtures copied into the repo."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from safetensors.torch import load_file

FIXTURES = Path(__file__).parent / "fixtures"
SAO1_TINY = FIXTURES / "sao1_tiny"
SAO1_TINY_DIFFUSERS = FIXTURES / "sao1_tiny_diffusers"
SAOS_TINY = FIXTURES / "saos_tiny"
REPO = Path(__file__).resolve().parent.parent


def load_script(relative: str) -> ModuleType:
    """A script of the repository ("benchmarks/few_step.py") as a fresh module, set up as
    when it runs: its folder first on sys.path (for sibling modules such as
    benchmarks/_report.py) and itself in sys.modules under its name (which dataclasses
    defined in it look up)."""
    path = REPO / relative
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[path.stem]
        raise
    return module


@pytest.fixture(scope="session")
def sao1_reference() -> dict[str, torch.Tensor]:
    """Reference tensors produced by stable-audio-tools 0.0.20 (see the fixture README)."""
    return load_file(str(SAO1_TINY / "reference.safetensors"))


@pytest.fixture(scope="session")
def saos_reference() -> dict[str, torch.Tensor]:
    """Reference tensors of the Stable Audio Open Small fixture."""
    return load_file(str(SAOS_TINY / "reference.safetensors"))


def make_tiny_bert(folder: Path, hidden_size: int = 32, num_layers: int = 3) -> Path:
    """A random BERT saved as a local Hugging Face folder (the T5 fixture's tokenizer
    stands in for its vocabulary): a stand-in for a sentence-transformer or CLAP tower."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=256, hidden_size=hidden_size, num_hidden_layers=num_layers,
                        num_attention_heads=2, intermediate_size=2 * hidden_size)
    BertModel(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(SAO1_TINY / "text_encoder" / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("bert"))


INSTALL_HINTS = ("apt-get install", "pip install", "corpus-deps", "browser-deps")


@pytest.fixture(scope="module")
def clap_folder(tmp_path_factory, tiny_bert) -> Path:
    """A random tiny CLAP (audio tower and projections, the tiny BERT as text tower)
    saved as a CLAP folder."""
    from longplay.checkpoints import save_clap
    from longplay.config import CLAPTrainConfig, TrainerConfig
    from longplay.training.clap import build_clap_for_training

    config = CLAPTrainConfig(text_encoder_path=str(tiny_bert), max_length=16, embed_dim=16,
                             audio_widths=(8, 16), n_mels=16, window_samples=8192,
                             trainer=TrainerConfig(seed=0))
    return save_clap(build_clap_for_training(config).eval(),
                     tmp_path_factory.mktemp("clap") / "clap")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI (CI set), a test skipped because a tool is not installed is a failure:
    .ci/run installs every tool, so such a skip means an install step is missing."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
        if any(hint in reason for hint in INSTALL_HINTS):
            report.outcome = "failed"
            report.longrepr = f"skipped in CI for a missing install: {reason}"
