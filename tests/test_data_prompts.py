"""PromptBuilder: captions, random field subsets, names, delimiters, case, determinism."""

from __future__ import annotations

import pytest
import torch

from longplay.data import PromptBuilder

METADATA = {
    "title": "Night Drive",
    "genre": "Synthwave",
    "instruments": ["Synth", "Drum machine"],
    "moods": ["Dreamy", "Nostalgic"],
    "bpm": 120.0,
    "key": "A minor",
    "duration": 93.2,
    "id": "track-17",
}
DELIMITERS = (" | ", ", ", "; ", ". ")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_available_fields_render_lists_and_units_and_ignore_other_keys() -> None:
    fields = dict(PromptBuilder().available_fields(METADATA))
    assert fields == {"Title": "Night Drive", "Genre": "Synthwave",
                      "Instruments": "Synth, Drum machine", "Moods": "Dreamy, Nostalgic",
                      "Tempo": "120 BPM", "Key": "A minor"}


def test_fixed_caption_is_returned_unchanged() -> None:
    builder = PromptBuilder()
    caption = "  A Warm lo-fi piano, soft drums.  "
    for key in ("caption", "prompt", "text", "Caption"):
        for seed in range(5):
            assert builder.build({**METADATA, key: caption}, gen(seed)) == caption


def test_caption_list_picks_one_of_them() -> None:
    options = ["first caption", "second caption"]
    picks = {PromptBuilder().build({"caption": options}, gen(s)) for s in range(40)}
    assert picks == set(options)


def test_empty_or_unusable_metadata_gives_the_empty_prompt() -> None:
    builder = PromptBuilder()
    assert builder.build({}, gen(0)) == ""
    assert builder.build({"genre": "", "moods": [], "bpm": 0, "id": "x", "caption": " "},
                         gen(0)) == ""


SCALARS = {"title": "Night Drive", "genre": "Synthwave", "moods": "Dreamy", "bpm": 120,
           "key": "A minor", "meter": "4/4"}
SCALAR_VALUES = {"Night Drive", "Synthwave", "Dreamy", "120 BPM", "A minor", "4/4"}


def test_prompts_are_random_subsets_in_random_order_with_or_without_names() -> None:
    builder = PromptBuilder(lowercase_probability=0.0)
    sizes, named, first_values, delimiters = set(), set(), set(), set()
    for seed in range(300):
        prompt = builder.build(SCALARS, gen(seed))
        found = [d for d in DELIMITERS if d in prompt]
        assert len(found) <= 1
        parts = prompt.split(found[0]) if found else [prompt]
        # Each part is one whole field, all rendered with their names or all bare.
        has_names = {": " in p for p in parts}
        assert len(has_names) == 1
        values = [p.split(": ", 1)[1] if ": " in p else p for p in parts]
        assert set(values) <= SCALAR_VALUES and len(values) == len(set(values))
        sizes.add(len(values))
        named |= has_names
        first_values.add(values[0])
        delimiters.update(found)
    assert sizes == set(range(1, 7))
    assert named == {True, False}
    assert first_values == SCALAR_VALUES  # shuffled: every field can come first
    assert delimiters == set(DELIMITERS)


def test_named_rendering_uses_the_field_label() -> None:
    builder = PromptBuilder(name_probability=1.0, lowercase_probability=0.0)
    prompt = builder.build({"instruments": ["Guitar", "Drums"]}, gen(0))
    assert prompt == "Instruments: Guitar, Drums"
    bare = PromptBuilder(name_probability=0.0, lowercase_probability=0.0)
    assert bare.build({"instruments": ["Guitar", "Drums"]}, gen(0)) == "Guitar, Drums"
    assert bare.build({"tempo": "96"}, gen(0)) == "96 BPM"


def test_case_is_unchanged_or_lower() -> None:
    builder = PromptBuilder()
    prompts = [builder.build({"genre": "Jazz", "moods": "Calm"}, gen(s)) for s in range(100)]
    lowered = [p for p in prompts if p == p.lower()]
    assert 0 < len(lowered) < len(prompts)
    assert all(p.upper() != p for p in prompts)
    never = PromptBuilder(lowercase_probability=0.0)
    assert all(any(c.isupper() for c in never.build({"genre": "Jazz"}, gen(s)))
               for s in range(30))


def test_same_generator_state_gives_the_same_prompt() -> None:
    builder = PromptBuilder()
    assert [builder.build(METADATA, gen(s)) for s in range(20)] == \
        [builder.build(METADATA, gen(s)) for s in range(20)]
    assert len({builder.build(METADATA, gen(s)) for s in range(20)}) > 10


def test_probabilities_are_checked() -> None:
    with pytest.raises(ValueError, match="name_probability"):
        PromptBuilder(name_probability=1.5)
    with pytest.raises(ValueError, match="delimiters"):
        PromptBuilder(delimiters=())
