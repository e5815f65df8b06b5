"""DraftedPipeline: a few-step model's draft refined by the model, as one pipeline with
one rule for which calls are drafted (longplay.pipelines.drafts)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from conftest import SAO1_TINY
from longplay.pipelines import SettingsError, TextToMusicPipeline
from longplay.pipelines.drafts import (
    DRAFT_REFINEMENT,
    REFINE_SEED_OFFSET,
    DraftedPipeline,
    draft_blocker,
)

DURATION = 1.5


@pytest.fixture(scope="module")
def pair() -> tuple[TextToMusicPipeline, DraftedPipeline]:
    """The tiny model, plain and drafting with itself (a model shares its own VAE)."""
    return (TextToMusicPipeline.from_pretrained(SAO1_TINY),
            DraftedPipeline.from_pretrained(SAO1_TINY, SAO1_TINY))


def test_a_plain_call_is_the_draft_refined(pair) -> None:
    """The draft model's 2 steps from the call's seed (latents only), then the model from
    DRAFT_REFINEMENT's level and steps with the seed plus the offset: the same samples as
    the two calls made by hand."""
    plain, drafted = pair
    out = drafted("a calm piano", duration_s=DURATION, seed=7)
    draft = plain("a calm piano", duration_s=DURATION, seed=7, output_type="latent",
                  num_inference_steps=DRAFT_REFINEMENT.draft_steps)
    expected = plain("a calm piano", duration_s=DURATION, seed=7 + REFINE_SEED_OFFSET,
                     init_latents=draft.latents, **DRAFT_REFINEMENT.as_kwargs())
    torch.testing.assert_close(out.audio, expected.audio, rtol=0, atol=1e-6)
    s = out.settings
    assert s.seeds == (7,) and s.has_init_latents
    assert s.draft is not None and s.draft.model == SAO1_TINY.name
    assert (s.draft.num_inference_steps, s.draft.seed_offset) == (
        DRAFT_REFINEMENT.draft_steps, REFINE_SEED_OFFSET)
    assert (s.num_inference_steps, s.init_noise_level) == (
        DRAFT_REFINEMENT.num_inference_steps, DRAFT_REFINEMENT.init_noise_level)
    assert drafted.draft_settings(s) == draft.settings
    # The record runs again to the same samples (what the server and the studio do).
    again = drafted(drafted.resolve_settings("a calm piano", duration_s=DURATION, seed=7))
    torch.testing.assert_close(again.audio, out.audio, rtol=0, atol=0)


def test_given_refinement_settings_are_kept(pair) -> None:
    _, drafted = pair
    s = drafted.resolve_settings("a calm piano", duration_s=DURATION, seed=1,
                                 init_noise_level=4.0, num_inference_steps=3)
    assert (s.init_noise_level, s.num_inference_steps) == (4.0, 3) and s.draft is not None
    assert s.guidance_interval[0] == DRAFT_REFINEMENT.guidance_interval[0]


@pytest.mark.parametrize("extra", [
    {"loop": True},
    {"sections": [(0.0, "a calm piano"), (0.75, "drums")], "prompt": None},
    {"duration_s": 30.0},  # longer than the tiny model's window: several windows
])
def test_calls_that_cannot_be_drafted_run_the_models_own_sampler(pair, extra) -> None:
    plain, drafted = pair
    kwargs = {"prompt": "a calm piano", "duration_s": DURATION, "seed": 3,
              "num_inference_steps": 4, **extra}
    s = drafted.resolve_settings(**kwargs)
    assert s.draft is None and s == plain.resolve_settings(**kwargs)
    torch.testing.assert_close(drafted(s).audio, plain(s).audio, rtol=0, atol=0)


def test_an_edit_is_not_drafted_and_keeps_its_tensors(pair) -> None:
    plain, drafted = pair
    known = plain("a calm piano", duration_s=DURATION, seed=0, num_inference_steps=2).audio
    kwargs = {"duration_s": DURATION, "seed": 5, "num_inference_steps": 3,
              "inpaint_audio": known, "inpaint_regions": [(0.5, 1.0)]}
    out = drafted("drums", **kwargs)
    assert out.settings.draft is None and out.settings.has_inpaint_audio
    torch.testing.assert_close(out.audio, plain("drums", **kwargs).audio, rtol=0, atol=0)
    assert draft_blocker(kwargs) == "an edit (known audio)"
    assert draft_blocker({"loop": False, "sections": None}) is None


def test_a_drafted_record_is_refused_where_it_cannot_run(pair) -> None:
    plain, drafted = pair
    s = drafted.resolve_settings("a calm piano", duration_s=DURATION, seed=2)
    with pytest.raises(SettingsError, match="run them with the DraftedPipeline"):
        plain(s)  # the plain pipeline cannot draft
    with pytest.raises(SettingsError, match="drafted by other"):
        drafted(replace(s, draft=replace(s.draft, model="other")))
    with pytest.raises(SettingsError, match="takes no audio-to-audio"):
        drafted(s, init_audio=torch.zeros(2, 44100))


def test_the_draft_model_shares_the_models_vae_and_text_encoder(pair) -> None:
    _, drafted = pair
    mine, theirs = drafted.refiner.model, drafted.drafter.model
    assert theirs.text_encoder is mine.text_encoder
    for a, b in zip(mine.vae.parameters(), theirs.vae.parameters(), strict=True):
        assert a.data_ptr() == b.data_ptr()


def test_a_seed_whose_refinement_seed_would_overflow_is_refused_by_name(pair) -> None:
    from longplay.pipelines import MAX_SEED

    _, drafted = pair
    with pytest.raises(SettingsError, match="seed of at most") as caught:
        drafted.resolve_settings("a calm piano", duration_s=DURATION, seed=MAX_SEED - 10)
    assert caught.value.field == "seed"
