"""The pipeline on a CUDA device: the reference runs of the fixtures in fp32, bf16 close
to fp32, and a generation with ``compile=True``. These need a GPU and are skipped
without one; ``scripts/gpu_check.sh`` runs them (with the benchmarks) on a CUDA machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import SAO1_TINY, SAOS_TINY
from longplay.pipelines import TextToMusicPipeline

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA device (scripts/gpu_check.sh runs these)")

FIXTURE_SAMPLES = 32768
# The CPU tolerances of test_pipeline, a little wider for GPU kernels' other summation
# orders (TF32 is off in PyTorch by default for matmuls and convolutions are fp32).
LATENT_TOLERANCE = 1e-3
AUDIO_TOLERANCE = 1e-2

RUNS = [  # (model, sampler, latents key, audio key, recorded noises)
    (SAO1_TINY, "dpmpp-2m", "sample.latents_dpmpp2m", "sample.audio_dpmpp2m", None),
    (SAO1_TINY, "v-ddim", "sample.latents_euler", None, None),
    (SAOS_TINY, "pingpong", "sample.latents_pingpong", "sample.audio_pingpong",
     "sample.pingpong_noises"),
]


def reference_run(pipe: TextToMusicPipeline, folder: Path, sampler: str, noises: str | None):
    ref = load_file(str(folder / "reference.safetensors"))
    cond = json.loads((folder / "prompts.json").read_text())["sample.conditioning"][0]
    noise_fn = None if noises is None else (lambda i, x: ref[noises][i].to(x))
    out = pipe(cond["prompt"], duration_s=FIXTURE_SAMPLES / 44100,
               seconds_start=cond.get("seconds_start", 0.0), seconds_total=cond["seconds_total"],
               num_inference_steps=8, guidance_scale=7.0, sampler=sampler,
               latents=ref["sample.noise"], noise_fn=noise_fn, seed=0,
               # the VE schedule of the v models' runs (flows take no sigmas)
               **({} if folder == SAOS_TINY else {"sigma_min": 0.3, "sigma_max": 500.0}))
    return out, ref


@pytest.mark.parametrize("model,sampler,latents_key,audio_key,noises", RUNS,
                         ids=[f"{r[0].name}-{r[1]}" for r in RUNS])
def test_reference_runs_on_cuda_fp32(model, sampler, latents_key, audio_key, noises) -> None:
    pipe = TextToMusicPipeline.from_pretrained(model, device="cuda")
    out, ref = reference_run(pipe, model, sampler, noises)
    assert (out.latents - ref[latents_key]).abs().max() < LATENT_TOLERANCE
    if audio_key is not None:
        assert (out.audio - ref[audio_key]).abs().max() < AUDIO_TOLERANCE


@pytest.mark.parametrize("model,sampler,min_si_sdr", [(SAO1_TINY, "dpmpp-2m", 10.0),
                                                      (SAOS_TINY, "pingpong", 20.0)])
def test_bf16_on_cuda_stays_close_to_fp32(model, sampler, min_si_sdr) -> None:
    """The bounds of the CPU test (test_pipeline.test_bf16_stays_close_to_fp32)."""
    from longplay.evaluation import si_sdr

    fp32 = TextToMusicPipeline.from_pretrained(model, device="cuda")
    bf16 = TextToMusicPipeline.from_pretrained(model, device="cuda", precision="bf16")
    assert bf16.precision == "bf16"
    kwargs = dict(duration_s=1.0, num_inference_steps=8, sampler=sampler, seed=0)
    a, b = fp32("a calm piano", **kwargs), bf16("a calm piano", **kwargs)
    assert si_sdr(a.audio[0], b.audio[0]) > min_si_sdr


def test_a_compiled_generation_on_cuda_matches_eager() -> None:
    eager = TextToMusicPipeline.from_pretrained(SAO1_TINY, device="cuda", precision="bf16")
    compiled = TextToMusicPipeline.from_pretrained(SAO1_TINY, device="cuda", precision="bf16",
                                                   compile=True)
    kwargs = dict(duration_s=1.0, num_inference_steps=4, sampler="dpmpp-2m", seed=3)
    a, b = eager("a calm piano", **kwargs), compiled("a calm piano", **kwargs)
    assert compiled.compiled, "nothing was compiled (no Triton?)"
    assert torch.isfinite(b.audio).all()
    assert (a.latents - b.latents).abs().max() < 0.05 * a.latents.abs().max()
