"""Diffusion machinery for audio latents [B, D, T]: schedules, training objectives,
denoiser preconditioning, samplers, classifier-free guidance, and the registry of
objectives (:mod:`.registry`) that says which of them go together.

Works on any callable network ``model(x [B, D, T], t [B]) -> [B, D, T]``; nothing here depends
on the transformer, the conditioning or the checkpoints.
"""

from .denoisers import Denoiser, ModelFn, RFDenoiser, VDenoiser
from .guidance import CFGModel, cfg_model, guided
from .inpainting import (
    InpaintingModel,
    inpainting_start,
    sample_with_resampling,
    soft_keep_mask,
)
from .looping import CircularModel
from .objectives import (
    DiffusionTrainingSample,
    diffusion_loss,
    rf_from_denoised,
    rf_objective_sample,
    rf_to_denoised,
    rf_to_noise,
    sample_training_noise,
    sample_training_t,
    v_from_denoised,
    v_objective_sample,
    v_to_denoised,
    v_to_noise,
)
from .registry import OBJECTIVES, Objective, SamplingDefaults, SamplingStart, get_objective
from .samplers import (
    SAMPLERS,
    NoiseFn,
    SamplerFn,
    SamplerKind,
    SamplerSpec,
    SamplerStep,
    StepCallback,
    get_sampler,
    sample_dpmpp_2m,
    sample_dpmpp_2m_sde,
    sample_dpmpp_3m_sde,
    sample_euler,
    sample_pingpong,
    sample_rf_dpmpp,
    sample_rf_euler,
    sample_v_ddim,
)
from .schedules import (
    alpha_sigma,
    log_linear_sigmas,
    logsnr_shift_t_grid,
    rf_t_grid,
    sigma_to_t,
    t_to_sigma,
)

__all__ = [
    "OBJECTIVES",
    "SAMPLERS",
    "CFGModel",
    "CircularModel",
    "Denoiser",
    "DiffusionTrainingSample",
    "InpaintingModel",
    "ModelFn",
    "NoiseFn",
    "Objective",
    "RFDenoiser",
    "SamplerFn",
    "SamplerKind",
    "SamplerSpec",
    "SamplerStep",
    "SamplingDefaults",
    "SamplingStart",
    "StepCallback",
    "VDenoiser",
    "alpha_sigma",
    "cfg_model",
    "diffusion_loss",
    "get_objective",
    "get_sampler",
    "guided",
    "inpainting_start",
    "log_linear_sigmas",
    "logsnr_shift_t_grid",
    "rf_from_denoised",
    "rf_objective_sample",
    "rf_t_grid",
    "rf_to_denoised",
    "rf_to_noise",
    "sample_dpmpp_2m",
    "sample_dpmpp_2m_sde",
    "sample_dpmpp_3m_sde",
    "sample_euler",
    "sample_pingpong",
    "sample_rf_dpmpp",
    "sample_rf_euler",
    "sample_training_noise",
    "sample_training_t",
    "sample_v_ddim",
    "sample_with_resampling",
    "sigma_to_t",
    "soft_keep_mask",
    "t_to_sigma",
    "v_from_denoised",
    "v_objective_sample",
    "v_to_denoised",
    "v_to_noise",
]
