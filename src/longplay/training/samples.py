"""A model's own generations, written as a latent folder.

Distribution matching (``longplay train distill`` with ``method: dmd``) needs a denoiser
of the distribution the student should reach. The teacher's guided denoiser is not one:
its stochastic sampler draws from a third distribution (docs/speed.md). Fine-tuning the
teacher on that sampler's own outputs gives one. :func:`sample_latent_folder` makes
those outputs: for each item it draws a training window of a latent folder for its
prompt and timing only, generates a window of the same length with the pipeline's
settings, and stores the generated latents, with the prompt as the item's caption, in a
latent folder (:mod:`longplay.data.latents`) that ``longplay train dit`` and ``longplay
train distill`` read like any other.

An item's conditioning is read back as it was generated: ``seconds_start`` 0 (the item
is one window, cropped at 0), ``seconds_total`` the source window's (stored as the
item's ``duration_s``) and the prompt (its metadata's ``caption``). Item k uses seed
``seed + k`` and the source window drawn at position k, so a run is reproducible and
resumes where it stopped (whole shards; an interrupted shard is generated again).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from longplay.data import LatentDataset, LatentFolderWriter, latent_folder_header
from longplay.pipelines import TextToMusicPipeline

logger = logging.getLogger(__name__)

__all__ = ["SAMPLE_KIND", "sample_latent_folder"]

SAMPLE_KIND = "model sample"
"""The ``latents`` header field of a folder of generations (an encoded folder says
"posterior sample")."""


def sample_latent_folder(
    pipe: TextToMusicPipeline,
    source: LatentDataset,
    out_dir: str | os.PathLike[str],
    *,
    count: int,
    seed: int = 0,
    shard_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
    **generation: Any,
) -> LatentFolderWriter:
    """Write ``count`` generations of ``pipe`` conditioned like ``source``'s windows.

    Args:
        pipe: the model that generates.
        source: training windows (its ``num_frames`` sets the generated window; its
            prompt builder and random crops give the prompts and ``seconds_total``).
        out_dir: the latent folder; one holding fewer items is continued.
        count: items the folder holds at the end.
        seed: item k's noise and sampler seed is ``seed + k``; recorded in the header,
            so a folder is continued only with the same seed.
        shard_size: items per shard (the unit of resumption).
        progress: ``progress(items_done, count)`` after each item.
        **generation: the pipeline's sampling settings (``num_inference_steps``,
            ``guidance_scale``, ``sampler``...; default the model's own).

    Returns:
        The closed writer (``entries``: every item of the folder).

    Raises:
        ValueError: ``count`` is not positive, a setting the function sets itself is
            given, an item of ``source`` gives no prompt, or ``out_dir`` holds latents of
            another VAE or seed.
    """
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive number of items, got {count!r}.")
    fixed = {"prompt", "latents", "seed", "generator", "seconds_start", "seconds_total",
             "duration_s", "num_outputs", "window"} & set(generation)
    if fixed:
        raise ValueError(f"{', '.join(sorted(fixed))}: set by each item's source window; "
                         "leave it out.")
    vae = pipe.model.vae
    if source.latent_dim != vae.latent_dim or abs(source.latent_rate - vae.latent_rate) > 1e-6:
        raise ValueError(f"the source latents ({source.latent_dim} channels at "
                         f"{source.latent_rate:.3f} Hz) are not this model's "
                         f"({vae.latent_dim} at {vae.latent_rate:.3f} Hz); give windows "
                         "encoded with the model's VAE.")
    probe = torch.Generator()
    unprompted = [e.path for e in source.entries
                  if source.prompt_builder is None
                  or not source.prompt_builder.build(e.metadata, probe.manual_seed(0)).strip()]
    if unprompted:
        raise ValueError(f"{len(unprompted)} item(s) of {source.root} give no prompt (no "
                         f"caption or descriptive field in their metadata), e.g. "
                         f"{unprompted[0]!r}; a generation needs one: give a folder whose "
                         "items all have metadata.")
    writer = LatentFolderWriter(out_dir, latent_folder_header(vae, seed, SAMPLE_KIND),
                                shard_size=shard_size)
    frames = source.num_frames
    start = writer.num_items
    for k in range(start, count):
        window = source.example(k % len(source), k)
        noise = torch.randn(1, vae.latent_dim, frames,
                            generator=torch.Generator().manual_seed(seed + k))
        out = pipe(window.prompt, duration_s=frames / vae.latent_rate, seconds_start=0.0,
                   seconds_total=window.seconds_total, seed=seed + k, latents=noise,
                   output_type="latent", **generation)
        settings = out.settings  # the pipeline refuses non-finite latents itself
        writer.add(out.latents[0, :, :frames], duration_s=window.seconds_total,
                   path=f"sample-{k:06d}",
                   num_samples=frames * vae.hop_length,
                   metadata={"caption": window.prompt, "sample_seed": seed + k,
                             "source_path": window.path,
                             "sampler": settings.sampler,
                             "steps": settings.num_inference_steps,
                             "guidance_scale": settings.guidance_scale})
        if progress is not None:
            progress(k + 1, count)
    writer.close()
    if start >= count:
        logger.info("%s already holds %d items", Path(out_dir), start)
    return writer
