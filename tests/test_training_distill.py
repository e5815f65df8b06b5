"""Consistency distillation (``longplay train distill``): the guided teacher step, a loss
that falls while the teacher stays untouched, exact resumption, and an exported model that
samples in a few steps without guidance by default."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from conftest import SAO1_TINY, SAOS_TINY
from longplay.checkpoints import load_diffusion_model
from longplay.cli.main import main
from longplay.config import (
    ConfigError,
    DataConfig,
    DistillTrainConfig,
    EMAConfig,
    OptimizerConfig,
    TrainerConfig,
)
from longplay.diffusion import VDenoiser, cfg_model, sample_euler
from longplay.pipelines import TextToMusicPipeline
from longplay.training import distill
from longplay.training.distill import DistillTrainingModule, load_teacher
from test_training_dit import ToyLatents, collate, losses


@pytest.fixture(autouse=True)
def toy_data(monkeypatch) -> None:
    monkeypatch.setattr(distill, "build_dataset",
                        lambda config, model_config: (ToyLatents(), collate))


def config(steps: int, teacher: Path = SAO1_TINY) -> DistillTrainConfig:
    return DistillTrainConfig(
        teacher=str(teacher), teacher_steps=8, sigma_min=0.05, sigma_max=80.0,
        guidance_scale=3.0, target_decay=0.9, student_steps=3,
        optimizer=OptimizerConfig(lr=1e-3, inv_gamma=1e4, warmup=0.0),
        ema=EMAConfig(max_decay=0.9),
        data=DataConfig(kind="latents", path="unused"),
        trainer=TrainerConfig(max_steps=steps, batch_size=4, checkpoint_every_n_steps=3,
                              log_every_n_steps=1))


def generate_counting(pipe: TextToMusicPipeline, *args, **kwargs):
    """``pipe(*args, **kwargs)`` and the batch size of each DiT evaluation it made."""
    calls: list[int] = []
    handle = pipe.model.dit.register_forward_hook(lambda m, a, o: calls.append(a[0].shape[0]))
    try:
        return pipe(*args, **kwargs), calls
    finally:
        handle.remove()


def test_the_teacher_step_is_one_guided_euler_step() -> None:
    """The regression target's input: the teacher's guided x0 estimate and one Euler step
    of the VE ODE, as the samplers would take it."""
    cfg = config(1)
    module = DistillTrainingModule(cfg, load_teacher(cfg), ToyLatents(), collate)
    batch = collate([ToyLatents().example(i, i) for i in range(2)])
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 32, generator=g) * 5.0
    s_hi, s_lo = torch.tensor([5.0, 5.0]), torch.tensor([2.0, 2.0])
    features = module._features(batch)
    ours = module._teacher_step(x, s_hi, s_lo, features, batch)

    teacher = load_diffusion_model(SAO1_TINY)
    cond = teacher.conditioner(features, {"seconds_start": batch.seconds_start,
                                          "seconds_total": batch.seconds_total})
    both = cond.cat(cond.without_context())
    with torch.no_grad():
        denoiser = VDenoiser(cfg_model(lambda xi, t: teacher.dit(xi, t, both), 3.0))
        expected = sample_euler(denoiser, x, torch.tensor([5.0, 2.0]))
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_loss_falls_the_teacher_stays_and_the_target_follows(tmp_path: Path) -> None:
    teacher_before = load_diffusion_model(SAO1_TINY).dit.state_dict()
    runner_dir = tmp_path / "run"
    distill.train_distill(config(30), runner_dir, enable_progress_bar=False)
    values = losses(runner_dir)
    assert len(values) == 30 and all(torch.isfinite(torch.tensor(values)))
    assert sum(values[-8:]) / 8 < 0.8 * sum(values[:8]) / 8
    state = torch.load(runner_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["longplay"]["stage"] == "distill"
    sd = state["state_dict"]
    for key, value in teacher_before.items():  # frozen, bit for bit
        assert torch.equal(sd["teacher.dit." + key], value), key
    moved = [k for k in teacher_before if not torch.equal(sd["net.dit." + k], teacher_before[k])]
    assert moved  # the student learned
    key = moved[0]  # the target lies between the teacher's start and the student
    start, student, target = teacher_before[key], sd["net.dit." + key], sd["target.dit." + key]
    assert not torch.equal(target, start) and not torch.equal(target, student)


def test_resumed_run_equals_uninterrupted_run(tmp_path: Path) -> None:
    distill.train_distill(config(6), tmp_path / "a", enable_progress_bar=False)
    distill.train_distill(config(3), tmp_path / "b", enable_progress_bar=False)
    distill.train_distill(config(6), tmp_path / "b", resume=True, enable_progress_bar=False)
    a = torch.load(tmp_path / "a/checkpoints/last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "b/checkpoints/last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 6
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:  # student, EMA, target and teacher alike
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert losses(tmp_path / "a")[3:] == losses(tmp_path / "b")[3:]


def test_train_export_and_generate_in_few_steps_through_the_cli(tmp_path: Path) -> None:
    cfg = tmp_path / "distill.yaml"
    cfg.write_text("""
teacher_steps: 8
sigma_max: 80.0
guidance_scale: 3.0
student_steps: 2
student_sigma_min: 0.5
optimizer: {lr: 0.001, inv_gamma: 10000.0, warmup: 0.0}
data: {kind: latents, path: unused}
trainer: {max_steps: 2, batch_size: 2, checkpoint_every_n_steps: 2, log_every_n_steps: 1}
""")
    run = tmp_path / "run"
    assert main(["train", "distill", str(cfg), "--teacher", str(SAO1_TINY), "-o", str(run),
                 "--no-progress"]) == 0
    model = tmp_path / "model"
    assert main(["export", str(run), "-o", str(model)]) == 0
    inference = json.loads((model / "model_config.json").read_text())["inference"]
    # The student samples from the top level it was trained at (sigma_max 80, not the
    # pipeline's 500) down to student_sigma_min.
    assert inference == {**inference, "sampler": "consistency", "steps": 2,
                         "guidance_scale": 1.0, "sigma_min": 0.5, "sigma_max": 80.0}
    pipe = TextToMusicPipeline.from_pretrained(model)
    settings = pipe.resolve_settings("song number 1", duration_s=1.0, seed=0)
    assert (settings.sampler, settings.num_inference_steps, settings.guidance_scale,
            settings.sigma_min, settings.sigma_max) == ("consistency", 2, 1.0, 0.5, 80.0)
    first, calls = generate_counting(pipe, settings)
    assert calls == [1, 1]  # two evaluations, no unconditional pass
    again = pipe(settings)
    assert torch.equal(first.audio, again.audio)  # the renoising is seeded
    out = tmp_path / "song.wav"
    assert main(["generate", "song number 1", "--model", str(model), "--duration", "1",
                 "--seed", "0", "-o", str(out), "--no-progress"]) == 0
    assert out.is_file()


def test_unusable_teachers_and_options_are_refused(tmp_path: Path, capsys) -> None:
    with pytest.raises(ConfigError, match="v-objective teacher"):
        load_teacher(config(1, teacher=SAOS_TINY))
    with pytest.raises(ConfigError, match="--teacher"):
        load_teacher(DistillTrainConfig())
    with pytest.raises(ConfigError, match="guidance_scale"):
        DistillTrainConfig(guidance_scale=0.5)
    with pytest.raises(ConfigError, match="student_sigma_min must be below sigma_max 80"):
        DistillTrainConfig(sigma_max=80.0, student_sigma_min=100.0)
    cfg = tmp_path / "dit.yaml"
    cfg.write_text("preset: debug\ndata: {kind: latents, path: unused}\n")
    assert main(["train", "dit", str(cfg), "--teacher", str(SAO1_TINY), "-o",
                 str(tmp_path / "r")]) == 2
    assert "--teacher is for `longplay train distill`" in capsys.readouterr().err



def test_the_student_drops_the_teachers_guidance_interval() -> None:
    """The student samples without guidance: a teacher's default interval (the demo
    model's (0.5, 20]) means nothing to it and is not passed on; nor is the teacher's
    grid: the student samples from the top level it was trained at."""
    from dataclasses import replace

    from longplay.training.distill import distilled_config

    teacher = load_diffusion_model(SAO1_TINY)
    teacher.config = replace(teacher.config, guidance_interval=(0.5, 20.0))
    teacher.config = replace(teacher.config, sigma_min=0.5)  # a grid for 50 guided steps
    student = distilled_config(teacher, config(1))
    assert (student.guidance_scale, student.guidance_interval, student.sampler) == (
        1.0, None, "consistency")
    assert (student.sigma_min, student.sigma_max) == (None, 80.0)  # its training's top


def phased_config(steps: int, guidance: float = 3.0) -> DistillTrainConfig:
    from dataclasses import replace

    return replace(config(steps), teacher_steps=7, student_steps=3, phased=True,
                   guidance_scale=guidance)


def test_phase_ends_cut_the_teachers_grid_at_the_students_levels() -> None:
    from longplay.diffusion import get_sampler
    from longplay.training.distill import phase_ends

    cfg = phased_config(1)
    module = DistillTrainingModule(cfg, load_teacher(cfg), ToyLatents(), collate)
    levels = module.levels  # 7 levels, 6 steps, 3 phases of 2
    assert module.ends.tolist() == [levels[2].item()] * 2 + [levels[4].item()] * 2 + [
        levels[6].item()] * 2
    # The phase ends are the levels the exported student samples at (then 0).
    student = get_sampler("phased").grid(3, sigma_min=cfg.sigma_min, sigma_max=cfg.sigma_max)
    torch.testing.assert_close(student[:-1], levels[[0, 2, 4]], rtol=1e-6, atol=0)
    assert phase_ends(levels, None).tolist() == [0.0] * 6  # one phase, down to x0


def test_phased_loss_is_zero_where_the_teachers_step_ends_the_phase() -> None:
    """Unguided, a student that is still the teacher reaches a phase's end from its last
    step exactly as the teacher's Euler step does (loss 0), and misses it from the
    phase's first step, whose target is the target model's estimate carried on."""
    cfg = phased_config(1, guidance=1.0)
    module = DistillTrainingModule(cfg, load_teacher(cfg), ToyLatents(), collate)
    batch = collate([ToyLatents().example(i, i) for i in range(2)])
    g = torch.Generator().manual_seed(0)
    x0 = module._latents(batch, g)
    noise = torch.randn(x0.shape, generator=g)
    with torch.no_grad():
        last = module.consistency_loss(batch, x0, torch.tensor([1, 3]), noise)
        first = module.consistency_loss(batch, x0, torch.tensor([0, 2]), noise)
    assert float(last) < 1e-10
    assert float(first) > 1e-6


def test_phased_student_exports_and_samples_deterministically(tmp_path: Path) -> None:
    run = tmp_path / "run"
    distill.train_distill(phased_config(2), run, enable_progress_bar=False)
    model = tmp_path / "model"
    assert main(["export", str(run), "-o", str(model)]) == 0
    inference = json.loads((model / "model_config.json").read_text())["inference"]
    assert inference == {**inference, "sampler": "phased", "steps": 3, "guidance_scale": 1.0,
                         "sigma_min": 0.05, "sigma_max": 80.0}
    pipe = TextToMusicPipeline.from_pretrained(model)
    first, calls = generate_counting(pipe, "song number 1", duration_s=1.0, seed=0)
    assert calls == [1, 1, 1]
    assert torch.equal(first.audio, pipe("song number 1", duration_s=1.0, seed=0).audio)


def test_phased_options_that_cannot_work_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"teacher_steps - 1 must be a multiple of "
                                          r"student_steps 4.*got 50; e.g. 49"):
        DistillTrainConfig(phased=True, teacher_steps=50, student_steps=4)
    with pytest.raises(ConfigError, match=r"student_sigma_min.*set sigma_min instead"):
        DistillTrainConfig(phased=True, teacher_steps=49, student_sigma_min=0.3)


# -- distribution matching (method: dmd) ----------------------------------------------------


def dmd_config(steps: int, **changes) -> DistillTrainConfig:
    from dataclasses import replace

    fields = {"method": "dmd", "fake_updates": 2, "fake_warmup_steps": 1,
              "fake_optimizer": OptimizerConfig(lr=1e-3, inv_gamma=1e4, warmup=0.0)}
    return replace(config(steps), **{**fields, **changes})


def test_dmd_turns_alternate_after_the_fake_denoisers_warmup() -> None:
    cfg = dmd_config(1, fake_updates=2, fake_warmup_steps=3)
    module = distill.DMDTrainingModule(cfg, load_teacher(cfg), ToyLatents(), collate)
    assert [s for s in range(12) if module.student_turn(s)] == [5, 8, 11]


def test_dmd_gradient_moves_the_students_outputs_from_fake_to_real(monkeypatch) -> None:
    """The student loss's gradient on its outputs x is (fake(x_s) - real(x_s)) /
    mean|x - real(x_s)| per item (over the element count), where real is the guided
    teacher and fake the fake denoiser, both at x_s = x + s eps: computed here from the
    teacher loaded again, with the fake denoiser still the teacher (unguided)."""
    cfg = dmd_config(1)
    module = distill.DMDTrainingModule(cfg, load_teacher(cfg), ToyLatents(), collate)
    batch = collate([ToyLatents().example(i, i) for i in range(2)])
    features = module._features(batch)
    x = torch.randn(2, 8, 32, generator=torch.Generator().manual_seed(1)).requires_grad_()
    monkeypatch.setattr(module, "student_outputs", lambda cond, shape, g: x)
    loss = module.student_loss(batch, features, x.shape, torch.Generator().manual_seed(5))
    loss.backward()

    g = torch.Generator().manual_seed(5)  # the same draws: levels, then noise
    lo, hi = (float(v) for v in torch.atan(torch.tensor([0.05, 80.0])) * 2 / torch.pi)
    t = lo + (hi - lo) * torch.rand(2, generator=g)
    sigma = torch.tan(t * torch.pi / 2)
    noisy = x.detach() + sigma.view(-1, 1, 1) * torch.randn(x.shape, generator=g)
    teacher = load_diffusion_model(SAO1_TINY)
    cond = teacher.conditioner(features, {"seconds_start": batch.seconds_start,
                                          "seconds_total": batch.seconds_total})
    both = cond.cat(cond.without_context())
    with torch.no_grad():
        real = VDenoiser(cfg_model(lambda xi, ti: teacher.dit(xi, ti, both), 3.0))(noisy, sigma)
        fake = VDenoiser(lambda xi, ti: teacher.dit(xi, ti, cond))(noisy, sigma)
    scale = (x.detach() - real).abs().mean(dim=(1, 2), keepdim=True)
    expected = (fake - real) / scale / x.numel()
    assert expected.abs().max() > 0  # guidance 3: the two denoisers differ
    torch.testing.assert_close(x.grad, expected, rtol=1e-4, atol=1e-9)


def test_an_unguided_real_denoiser_is_the_conditional_estimate_in_one_pass() -> None:
    """Guidance 1 (a real denoiser fine-tuned on the reference's own samples): the
    teacher's estimate is its conditional one, from one evaluation of the batch."""
    cfg = dmd_config(1, guidance_scale=1.0)
    module = distill.DMDTrainingModule(cfg, load_teacher(cfg), ToyLatents(), collate)
    batch = collate([ToyLatents().example(i, i) for i in range(2)])
    features = module._features(batch)
    x = torch.randn(2, 8, 32, generator=torch.Generator().manual_seed(2)) * 3.0
    sigma = torch.tensor([3.0, 0.5])
    calls: list[int] = []
    handle = module.teacher["dit"].register_forward_hook(
        lambda m, a, o: calls.append(a[0].shape[0]))
    with torch.no_grad():
        ours = module._guided(x, sigma, features, batch)
    handle.remove()
    assert calls == [2]
    teacher = load_diffusion_model(SAO1_TINY)
    cond = teacher.conditioner(features, {"seconds_start": batch.seconds_start,
                                          "seconds_total": batch.seconds_total})
    with torch.no_grad():
        expected = VDenoiser(lambda xi, ti: teacher.dit(xi, ti, cond))(x, sigma)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)


def test_dmd_run_trains_the_student_and_the_fake_denoiser_and_resumes_exactly(
        tmp_path: Path) -> None:
    teacher_before = load_diffusion_model(SAO1_TINY).dit.state_dict()
    distill.train_distill(dmd_config(7), tmp_path / "a", enable_progress_bar=False)
    distill.train_distill(dmd_config(4), tmp_path / "b", enable_progress_bar=False)
    distill.train_distill(dmd_config(7), tmp_path / "b", resume=True,
                          enable_progress_bar=False)
    a = torch.load(tmp_path / "a/checkpoints/last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "b/checkpoints/last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 7
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:  # student, EMA, fake denoiser and teacher alike
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    sd = a["state_dict"]
    assert not any(k.startswith("target.") for k in sd)  # no consistency target
    for key, value in teacher_before.items():
        assert torch.equal(sd["teacher.dit." + key], value), key
    for part in ("net", "fake"):  # both learned (student steps 3 and 6 of 0..6)
        assert any(not torch.equal(sd[f"{part}.dit.{k}"], v) for k, v in teacher_before.items())
    rows = list(csv.DictReader(next((tmp_path / "a/logs").glob("*/metrics.csv")).open()))
    # The fake denoiser alone first (the warm-up step, then its two updates).
    assert min(int(r["step"]) for r in rows if r.get("train/loss")) == 3
    assert min(int(r["step"]) for r in rows if r.get("train/fake")) == 0
    assert all(torch.isfinite(torch.tensor([float(r[k]) for r in rows
                                            for k in ("train/fake", "train/loss") if r[k]])))


def test_dmd_student_starts_from_init_from_and_exports_a_few_step_model(
        tmp_path: Path) -> None:
    from dataclasses import replace

    distill.train_distill(dmd_config(4), tmp_path / "run", enable_progress_bar=False)
    model = tmp_path / "model"
    assert main(["export", str(tmp_path / "run"), "-o", str(model)]) == 0
    inference = json.loads((model / "model_config.json").read_text())["inference"]
    assert inference == {**inference, "sampler": "consistency", "steps": 3,
                         "guidance_scale": 1.0}
    cfg = replace(dmd_config(1), init_from=str(model))
    module = distill.DMDTrainingModule(cfg, load_teacher(cfg), ToyLatents(), collate)
    exported = load_diffusion_model(model).dit.state_dict()
    teacher = load_diffusion_model(SAO1_TINY).dit.state_dict()
    assert all(torch.equal(module.net["dit"].state_dict()[k], v) for k, v in exported.items())
    assert any(not torch.equal(exported[k], v) for k, v in teacher.items())
    # The fake denoiser and the teacher are the teacher, whatever the student starts from.
    assert all(torch.equal(module.fake["dit"].state_dict()[k], v) for k, v in teacher.items())
    pipe = TextToMusicPipeline.from_pretrained(model)
    out, calls = generate_counting(pipe, "song number 1", duration_s=1.0, seed=0)
    assert calls == [1, 1, 1] and torch.isfinite(out.audio).all()


def test_dmd_options_that_cannot_work_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"phased.*method: dmd"):
        DistillTrainConfig(method="dmd", phased=True, teacher_steps=49)
    with pytest.raises(ConfigError, match="gradient_clip_val"):
        DistillTrainConfig(method="dmd", trainer=TrainerConfig(gradient_clip_val=1.0))
    with pytest.raises(ConfigError, match="method"):
        DistillTrainConfig(method="gan")
    cfg = dmd_config(1, init_from=str(SAOS_TINY))
    with pytest.raises(ConfigError, match=r"init_from: the dit of .* not of the teacher's "
                                          "architecture"):
        distill.DMDTrainingModule(cfg, load_teacher(cfg), ToyLatents(), collate)
