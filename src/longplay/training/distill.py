"""Few-step post-training: consistency distillation with the teacher's guidance built in.

Song et al. 2023 ("Consistency Models", Algorithm 2, consistency distillation) with the
guided teacher of Luo et al. 2023 ("Latent Consistency Models"): the student starts as a
copy of a v-objective teacher and learns to map every level of the teacher's grid straight
to the x0 estimate its slowly moving copy (the *target*) gives one guided teacher step
further down. Once consistent along the teacher's guided trajectories, the student
generates with the multistep consistency sampler in a few evaluations, without guidance's
second pass.

With ``phased: true`` (Wang et al. 2024, "Phased Consistency Models") the grid is cut
into ``student_steps`` phases at the student's sampling levels and the student learns to
map each level to the lower end of its phase instead: the teacher's state there at a
phase's last step, else the target's estimate carried there by an Euler (DDIM) step.
Each phase's chain of teacher steps is ``student_steps`` times shorter, and the student
samples deterministically, one Euler step per phase (the "phased" sampler).

Why this method for a CPU budget: each step costs one guided teacher evaluation (a doubled
batch), one target evaluation and one student forward and backward pass on latents that
are already encoded, with no teacher runs to pre-compute (reflow needs a full 50-step
guided generation per training pair), no discriminator to balance (adversarial
post-training), and no rounds of halving (progressive distillation). The fixed guidance
scale is baked in, so the student needs no guidance embedding.

With ``method: dmd`` (Yin et al. 2024, "Improved Distribution Matching Distillation",
DMD2, without its GAN term) the student learns the distribution of the guided teacher
instead of its ODE's paths: it generates from noise with its own few-step sampler, and
its outputs, noised again, are moved where the guided teacher's x0 estimate and that of a
*fake* denoiser (a copy of the teacher trained all along on the student's outputs)
disagree: the gradient of the KL divergence from the teacher's noised distribution to
the student's. A teacher whose reference generations are drawn by a stochastic sampler
(the demo model's DPM-Solver++ 3M SDE) is matched this way, not by following its ODE.

Shape legend: B batch, D latent channels, T frames, N teacher grid levels.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from longplay.builders import DiffusionModel
from longplay.checkpoints import load_diffusion_model
from longplay.conditioning import Conditioning
from longplay.config import ConfigError, DistillTrainConfig, dataclass_to_dict
from longplay.diffusion import (
    diffusion_loss,
    get_objective,
    get_sampler,
    log_linear_sigmas,
    sample_training_noise,
    sample_training_t,
    sigma_to_t,
    t_to_sigma,
)
from longplay.training.base import PositionedBatch, adamw_inverse_lr
from longplay.training.dit import DiTTrainingModule
from longplay.training.ema import make_ema, update_ema
from longplay.training.runner import build_dataset, fit, load_model_to_train, prepare_run

logger = logging.getLogger(__name__)

STUDENT_SAMPLER = "consistency"
PHASED_SAMPLER = "phased"
"""The samplers a student records: multistep consistency sampling, or deterministic
Euler steps between the phase ends of a phased student."""


def distilled_config(model: DiffusionModel, config: DistillTrainConfig):
    """The student's model config: the teacher's, sampling in ``student_steps`` steps
    without guidance by default, on a grid from the top level it was trained at
    (``sigma_max``) down to ``student_sigma_min`` (the teacher's own grid ends are not
    passed on). A phased student samples with the "phased" sampler on its phase ends,
    whose grid ends at the distillation's ``sigma_min``."""
    return replace(model.config, sampler=PHASED_SAMPLER if config.phased else STUDENT_SAMPLER,
                   steps=config.student_steps, guidance_scale=1.0, guidance_interval=None,
                   sigma_min=config.sigma_min if config.phased else config.student_sigma_min,
                   sigma_max=config.sigma_max)


def phase_ends(levels: torch.Tensor, phases: int | None) -> torch.Tensor:
    """For each step n of the teacher's grid ``levels`` [N] (from levels[n] to
    levels[n + 1]), the level its phase ends at -> [N - 1]: with ``phases`` (which divides
    N - 1), the next of the levels at every (N - 1) / phases-th index; without, 0 (one
    phase down to x0, plain consistency distillation)."""
    steps = len(levels) - 1
    if phases is None:
        return levels.new_zeros(steps)
    per_phase = steps // phases
    index = (torch.arange(steps) // per_phase + 1) * per_phase
    return levels[index.to(levels.device)]


def load_teacher(config: DistillTrainConfig) -> DiffusionModel:
    """The teacher model folder of ``config``, checked to be distillable."""
    if config.teacher is None:
        raise ConfigError("no teacher: set teacher in the config or pass --teacher MODEL (a "
                          "model folder)")
    model = load_model_to_train(config.teacher, config.text_encoder_path)
    objective = get_objective(model.config.objective)
    if "ve" not in objective.sampler_kinds:
        raise ConfigError(f"the teacher {config.teacher} is a {model.config.objective} model; "
                          "consistency distillation here needs a v-objective teacher (flow "
                          "models such as Stable Audio Open Small already sample in 8 steps)")
    if model.config.inpainting:
        raise ConfigError(f"the teacher {config.teacher} is an inpainting model; distil the "
                          "plain model it was fine-tuned from")
    return model


def start_student_from(student: DiffusionModel, path: str | Path) -> None:
    """Load the DiT and conditioner weights of the model folder ``path`` into ``student``
    (a copy of the teacher), refusing a folder of another architecture."""
    start = load_diffusion_model(path, load_text_encoder=False)
    for part in ("dit", "conditioner"):
        try:
            getattr(student, part).load_state_dict(getattr(start, part).state_dict(), strict=True)
        except RuntimeError as err:
            raise ConfigError(f"init_from: the {part} of {path} is not of the teacher's "
                              f"architecture ({str(err).splitlines()[0]}); start from a model "
                              "distilled from this teacher, or leave init_from out") from None


class DistillTrainingModule(DiTTrainingModule):
    """The student (``net``: DiT and conditioner, started from the teacher), its export
    EMA, the target (a slower copy of the student that gives the regression targets) and
    the frozen teacher."""

    stage = "distill"

    def __init__(self, config: DistillTrainConfig, teacher: DiffusionModel, dataset,
                 collate) -> None:
        student = DiffusionModel(distilled_config(teacher, config), teacher.vae,
                                 copy.deepcopy(teacher.conditioner), copy.deepcopy(teacher.dit),
                                 teacher.text_encoder, teacher.source)
        if config.init_from is not None:
            start_student_from(student, config.init_from)
        super().__init__(config, student, dataset, collate)
        self.teacher = nn.ModuleDict({"dit": teacher.dit, "conditioner": teacher.conditioner})
        self.teacher.requires_grad_(False).eval()
        if config.method == "consistency":  # in the checkpoint: a resumed run continues it
            self.target = make_ema(self.net)
        grid = log_linear_sigmas(config.teacher_steps, config.sigma_min, config.sigma_max)
        self.register_buffer("levels", grid[:-1], persistent=False)  # [N], highest first
        ends = phase_ends(self.levels, config.student_steps if config.phased else None)
        self.register_buffer("ends", ends, persistent=False)  # [N - 1]

    # -- the step (``_features``, ``_seconds`` and ``_latents`` are the DiT trainer's) ----

    def _denoise(self, parts: nn.ModuleDict, x: torch.Tensor, sigma: torch.Tensor,
                 cond: Conditioning) -> torch.Tensor:
        """The x0 estimate of ``parts``' DiT at VE state x [B, D, T], levels sigma [B]."""
        return self.objective.denoiser(lambda xi, t: parts["dit"](xi, t, cond))(x, sigma)

    def _cond(self, parts: nn.ModuleDict, features, batch) -> Conditioning:
        """The conditioning ``parts``' conditioner gives the batch."""
        conditioner = parts["conditioner"]
        return conditioner(features, self._seconds(batch, conditioner))

    @torch.no_grad()
    def _guided(self, x: torch.Tensor, sigma: torch.Tensor, features, batch) -> torch.Tensor:
        """The teacher's guided x0 estimate at VE state x [B, D, T], levels sigma [B]
        (guidance 1: the conditional estimate, in one pass)."""
        cond = self._cond(self.teacher, features, batch)
        if self.config.guidance_scale == 1.0:
            return self._denoise(self.teacher, x, sigma, cond)
        both = cond.cat(cond.without_context())
        denoised = self._denoise(self.teacher, torch.cat([x, x]), torch.cat([sigma, sigma]),
                                 both)
        d_cond, d_uncond = denoised.chunk(2)
        return d_uncond + self.config.guidance_scale * (d_cond - d_uncond)

    @torch.no_grad()
    def _teacher_step(self, x: torch.Tensor, s_hi: torch.Tensor, s_lo: torch.Tensor,
                      features, batch) -> torch.Tensor:
        """One guided Euler (DDIM) step of the teacher from s_hi to s_lo (each [B])."""
        return self._to_end(self._guided(x, s_hi, features, batch), x, s_hi, s_lo)

    def training_step(self, positioned: PositionedBatch, batch_idx: int) -> torch.Tensor:
        g = self.step_generator(positioned.positions)
        batch = positioned.batch
        x0 = self._latents(batch, g)  # [B, D, T]
        n = torch.randint(0, len(self.levels) - 1, (x0.shape[0],), generator=g)
        noise = torch.randn(x0.shape, generator=g).to(x0)
        loss = self.consistency_loss(batch, x0, n, noise)
        self.log("train/loss", loss, prog_bar=True, batch_size=x0.shape[0])
        return loss

    def consistency_loss(self, batch, x0: torch.Tensor, n: torch.Tensor,
                         noise: torch.Tensor) -> torch.Tensor:
        """The distillation loss of clean latents x0 [B, D, T] noised with ``noise`` to
        the teacher's levels ``n`` [B] (indices of steps of its grid)."""
        s_hi = self.levels[n.to(self.levels.device)].to(x0)  # [B]
        s_lo = self.levels[(n + 1).to(self.levels.device)].to(x0)
        s_end = self.ends[n.to(self.ends.device)].to(x0)  # [B] where the phase ends
        x_hi = x0 + s_hi.view(-1, 1, 1) * noise
        features = self._features(batch)
        x_lo = self._teacher_step(x_hi, s_hi, s_lo, features, batch)
        with torch.no_grad():
            target_cond = self._cond(self.target, features, batch)
            target = self._to_end(self._denoise(self.target, x_lo, s_lo, target_cond),
                                  x_lo, s_lo, s_end)
            # At a phase's end the target is the teacher's own state there.
            at_end = (s_lo == s_end).view(-1, 1, 1)
            target = torch.where(at_end, x_lo, target)
        cond = self._cond(self.net, features, batch)
        prediction = self._to_end(self._denoise(self.net, x_hi, s_hi, cond), x_hi, s_hi, s_end)
        # Measured in x0 units: the difference of two states at the phase end, over the
        # share (1 - s_end / s_hi) of the student's x0 estimate in its own (1 where the
        # phase ends at x0, plain consistency distillation).
        scale = (1 - s_end / s_hi).view(-1, 1, 1)
        return torch.mean(((prediction.float() - target.float()) / scale) ** 2)

    @staticmethod
    def _to_end(denoised: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor,
                end: torch.Tensor) -> torch.Tensor:
        """The Euler (DDIM) step from state x [B, D, T] at levels sigma [B] to levels end
        [B] with the x0 estimate ``denoised``: ``denoised`` itself where end is 0."""
        return denoised + (end / sigma).view(-1, 1, 1) * (x - denoised)

    def optimizer_step(self, *args, **kwargs) -> None:
        """The target follows the student after each optimiser step (before the step's
        checkpoint is written, so that a resumed run continues it exactly)."""
        super().optimizer_step(*args, **kwargs)
        update_ema(self.target, self.net, self.config.target_decay)

    def checkpoint_metadata(self) -> dict:
        return {"model_config": dataclass_to_dict(self.model_config),
                "teacher": str(self.config.teacher)}


class DMDTrainingModule(DistillTrainingModule):
    """Distribution matching distillation (``method: dmd``, Yin et al. 2024, DMD2 without
    its GAN term): the student (``net``), its export EMA, the frozen teacher (the *real*
    denoiser, guided) and the *fake* denoiser, a copy of the teacher trained on the
    student's outputs. Each step draws the student's outputs as its sampler would reach
    them (DMD2's backward simulation: a random number of its own steps from noise, without
    gradients, then one with), then either trains the fake denoiser on them (the v-loss of
    DiT training) or, every ``fake_updates + 1``-th step, moves the student down the
    KL gradient between the two denoisers' views of its outputs, noised."""

    alternating = True  # each step updates only the student or the fake denoiser (DDP)

    def __init__(self, config: DistillTrainConfig, teacher: DiffusionModel, dataset,
                 collate) -> None:
        fake = nn.ModuleDict({"dit": copy.deepcopy(teacher.dit),
                              "conditioner": copy.deepcopy(teacher.conditioner)})
        super().__init__(config, teacher, dataset, collate)
        self.automatic_optimization = False  # the student and the fake denoiser alternate
        self.fake = fake.requires_grad_(True).train()
        sampler = get_sampler(self.model_config.sampler)
        defaults = get_objective(self.model_config.objective).defaults
        grid = sampler.grid(config.student_steps,
                            sigma_min=self.model_config.sigma_min or defaults.sigma_min,
                            sigma_max=self.model_config.sigma_max or defaults.sigma_max)
        self.register_buffer("student_grid", grid, persistent=False)  # [S + 1], ends at 0
        self.register_buffer("t_range", sigma_to_t(torch.tensor(
            [config.sigma_min, config.sigma_max])), persistent=False)  # the real's levels

    def configure_optimizers(self):
        student, student_schedule = adamw_inverse_lr(
            [p for p in self.net.parameters() if p.requires_grad], self.config.optimizer)
        fake, fake_schedule = adamw_inverse_lr(self.fake.parameters(),
                                               self.config.fake_optimizer)
        return ([student, fake], [{"scheduler": student_schedule, "interval": "step"},
                                  {"scheduler": fake_schedule, "interval": "step"}])

    def student_turn(self, step: int) -> bool:
        """Whether optimiser step ``step`` updates the student (else the fake denoiser):
        after ``fake_warmup_steps``, every ``fake_updates + 1``-th step."""
        step -= self.config.fake_warmup_steps
        return step >= 0 and step % (self.config.fake_updates + 1) == self.config.fake_updates

    def training_step(self, positioned: PositionedBatch, batch_idx: int) -> None:
        g = self.step_generator(positioned.positions)
        batch = positioned.batch
        shape = self._latents(batch, g).shape  # the data give the window, prompts, timing
        features = self._features(batch)
        (student_opt, fake_opt), (student_schedule, fake_schedule) = (self.optimizers(),
                                                                      self.lr_schedulers())
        if self.student_turn(self.global_step):
            loss = self.student_loss(batch, features, shape, g)
            optimizer, schedule, name = student_opt, student_schedule, "train/loss"
        else:
            loss = self.fake_loss(batch, features, shape, g)
            optimizer, schedule, name = fake_opt, fake_schedule, "train/fake"
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        schedule.step()
        self.log(name, loss, prog_bar=True, batch_size=shape[0])

    def student_outputs(self, cond: Conditioning, shape: torch.Size,
                        g: torch.Generator) -> torch.Tensor:
        """The student's x0 estimates [B, D, T] at the state its sampler reaches after a
        random number k of its steps (uniform in 0 .. student_steps - 1, one k per
        batch) from noise of ``shape``: the first k without gradients, the last with
        them when gradients are on."""
        grid = self.student_grid
        k = int(torch.randint(0, len(grid) - 1, (), generator=g))
        x = torch.randn(shape, generator=g).to(self.device) * grid[0]
        s_in = x.new_ones(shape[0])
        with torch.no_grad():
            for i in range(k):  # the consistency sampler's steps
                x = (self._denoise(self.net, x, grid[i] * s_in, cond)
                     + torch.randn(shape, generator=g).to(x) * grid[i + 1])
        return self._denoise(self.net, x, grid[k] * s_in, cond)

    def student_loss(self, batch, features, shape: torch.Size,
                     g: torch.Generator) -> torch.Tensor:
        """The distribution matching loss: its gradient on the student's outputs x is
        (fake(x_s) - real(x_s)) / mean|x - real(x_s)| (per item) at x_s = x + s eps, the
        levels s uniform in cosine time between sigma_min and sigma_max."""
        x = self.student_outputs(self._cond(self.net, features, batch), shape, g)
        t = self.t_range[0] + (self.t_range[1] - self.t_range[0]) * torch.rand(
            shape[0], generator=g).to(self.t_range)
        sigma = t_to_sigma(t).to(x)
        noisy = x.detach() + sigma.view(-1, 1, 1) * torch.randn(shape, generator=g).to(x)
        with torch.no_grad():
            real = self._guided(noisy, sigma, features, batch)
            fake = self._denoise(self.fake, noisy, sigma, self._cond(self.fake, features, batch))
            scale = (x - real).abs().mean(dim=(1, 2), keepdim=True).clamp_min(1e-8)
            grad = (fake - real) / scale
        return 0.5 * torch.mean((x.float() - (x - grad).detach().float()) ** 2)

    def fake_loss(self, batch, features, shape: torch.Size,
                  g: torch.Generator) -> torch.Tensor:
        """The fake denoiser's v-loss on the student's outputs (without gradients to
        the student), at the DiT trainer's uniform training times."""
        with torch.no_grad():
            x0 = self.student_outputs(self._cond(self.net, features, batch), shape, g)
        t = sample_training_t(shape[0], g).to(self.device)
        sample = self.objective.training_sample(x0, t, sample_training_noise(x0.cpu(), g)
                                                .to(x0))
        prediction = self.fake["dit"](sample.x_t, t, self._cond(self.fake, features, batch))
        return diffusion_loss(prediction, sample)


def train_distill(config: DistillTrainConfig, run_dir: str | Path, *, resume: bool = False,
                  enable_progress_bar: bool = True,
                  extra_callbacks: list | None = None) -> Path:
    """Distil (or resume distilling) ``config.teacher`` in ``run_dir``; returns the last
    checkpoint. Export it with ``longplay export RUN -o MODEL_DIR``."""
    teacher = load_teacher(config)
    run_dir, ckpt = prepare_run(config, run_dir, resume)
    dataset, collate = build_dataset(config, teacher.config)
    module_type = DMDTrainingModule if config.method == "dmd" else DistillTrainingModule
    module = module_type(config, teacher, dataset, collate)
    return fit(module, config, run_dir, ckpt, list(extra_callbacks or []), enable_progress_bar)
