"""``longplay ui``: a web studio over one TextToMusicPipeline.

The studio object holds the pipeline and builds the page; per-browser-session state
(the history of generations) lives in Gradio session state, never in module globals.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soundfile as sf

from longplay.adapters import AdapterLibrary
from longplay.audio import load_audio, normalize_output, save_audio
from longplay.audio.images import spectrogram_image, waveform_image
from longplay.pipelines import (
    DEFAULT_EDGE_S,
    GenerationError,
    GenerationSettings,
    TextToMusicPipeline,
)

logger = logging.getLogger(__name__)

MAX_OUTPUTS = 4
MAX_STEPS = 250
MAX_INIT_NOISE_LEVEL = 100.0  # the slider's top for v models (sigma_max is 500)
EDIT_MODES = ("region", "extend")
MAX_EXTEND_S = 600.0
MAX_ADAPTERS = 3
"""Adapter rows on the page (each a choice and a strength; their updates add up)."""
NO_ADAPTER = "(none)"
HISTORY_COLUMNS = ["#", "time", "prompt", "seed", "duration (s)", "steps", "cfg", "sampler"]


@dataclass(frozen=True)
class Result:
    """One generated item as the page shows it."""

    audio_path: Path
    spectrogram: Any  # RGB uint8 [H, W, 3]
    downloads: list[Path]
    settings: dict


def mp3_supported() -> bool:
    return "MP3" in sf.available_formats()


class Studio:
    """Builds the Gradio page around ``pipeline``; ``output_dir`` receives the files
    offered for playback and download."""

    def __init__(self, pipeline: TextToMusicPipeline, model_name: str,
                 output_dir: str | Path | None = None,
                 adapters_dir: str | Path | None = None, normalize: bool = True) -> None:
        self.pipe = pipeline
        # Files are DC-blocked and peak-normalised as the command line writes them
        # (longplay.audio.normalize_output; edits that keep audio are written as they
        # are, GenerationSettings.normalize_by_default); False keeps the raw output.
        self.normalize = normalize
        self.adapters = AdapterLibrary(None if adapters_dir is None else Path(adapters_dir),
                                       pipeline.base_identity)
        self.model_name = model_name
        self.output_dir = Path(output_dir or tempfile.mkdtemp(prefix="longplay-ui-"))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        # The model's own defaults (its objective's, with the model's number of steps);
        # a drafting pipeline (longplay.pipelines.drafts) refines in fewer steps.
        self.defaults = pipeline.defaults
        self.draft_name = getattr(pipeline, "draft_name", None)
        self.generate_steps = getattr(pipeline, "drafted_steps", None) or \
            self.defaults.num_inference_steps
        self.samplers = list(pipeline.objective.sampler_names)

    # -- generation ---------------------------------------------------------------------

    def adapter_names(self) -> list[str]:
        """The adapters of the adapter folder that fit the model."""
        return [name for name, _ in self.adapters.usable()]

    def chosen_adapters(self, choices: Sequence[tuple[str | None, float]]) -> list:
        """The page's adapter rows (name or none, strength) as the pipeline's adapters."""
        chosen = []
        for name, scale in choices:
            if name and name != NO_ADAPTER:
                chosen.append((self.adapters.get(name), float(scale)))
        return chosen

    def settings(self, prompt: str, negative: str, duration_s: float, steps: int, cfg: float,
                 sampler: str, seed: int | None, random_seed: bool, num_outputs: int,
                 init_audio=None, init_noise_level: float | None = None) -> GenerationSettings:
        """The page's values as the pipeline's settings record (the seed drawn by the
        pipeline when it is random); ValueError for values the model refuses."""
        if not prompt or not prompt.strip():  # the pipeline's rule, in the page's words
            raise ValueError("write a prompt first")
        if float(duration_s) > self.pipe.max_duration_s + 1e-9:
            raise ValueError(f"duration_s must be at most {self.pipe.max_duration_s:.2f} s here "
                             "(the model's window); the Edit tab extends a piece beyond it")
        return self.pipe.resolve_settings(
            prompt.strip(), negative.strip() or None, duration_s=float(duration_s),
            num_inference_steps=int(steps), guidance_scale=float(cfg), sampler=sampler,
            seed=None if random_seed or seed is None else int(seed),
            num_outputs=int(num_outputs), init_audio=init_audio,
            init_noise_level=None if init_audio is None else float(init_noise_level))

    def generate(self, prompt: str, negative: str, duration_s: float, steps: int, cfg: float,
                 sampler: str, seed: int | None, random_seed: bool, num_outputs: int,
                 init_audio_path: str | None, init_noise_level: float,
                 progress=None, adapters: Sequence[tuple[str | None, float]] = ()
                 ) -> tuple[list[Result], dict]:
        """Run the pipeline (with the chosen adapters: (name, strength) rows) and write
        every output's files; returns results and settings."""
        init_audio = None
        if init_audio_path:
            init_audio = load_audio(init_audio_path, sample_rate=self.pipe.sample_rate,
                                    channels=self.pipe.config.audio_channels).audio
        settings = self.settings(prompt, negative, duration_s, steps, cfg, sampler, seed,
                                 random_seed, num_outputs, init_audio, init_noise_level)
        chosen = self.chosen_adapters(adapters)
        out = self.pipe(settings, init_audio=init_audio, progress=_gradio_progress(progress),
                        adapters=chosen)
        return self._write_results(out), dict(out.settings.as_dict(),
                                              adapters=list(out.adapters))

    def edit(self, source_path: str | None, mode: str, start_s: float, end_s: float,
             extend_s: float, prompt: str, negative: str, steps: int, cfg: float, seed: int | None,
             random_seed: bool, edge_s: float, resample_steps: int,
             progress=None) -> tuple[list[Result], dict]:
        """Regenerate [start_s, end_s) of the audio at ``source_path`` (``mode`` "region")
        or extend it by ``extend_s`` seconds (``mode`` "extend"), keeping the rest; writes
        the result's files like :meth:`generate`."""
        if not source_path:
            raise ValueError("load the audio to edit first (upload it, or pick a generation)")
        if not prompt or not prompt.strip():  # the pipeline's rule, in the page's words
            raise ValueError("write a prompt first")
        if mode not in EDIT_MODES:
            raise ValueError(f"mode must be one of {', '.join(EDIT_MODES)}, got {mode!r}")
        audio = load_audio(source_path, sample_rate=self.pipe.sample_rate,
                           channels=self.pipe.config.audio_channels).audio
        length_s = audio.shape[-1] / self.pipe.sample_rate
        if mode == "extend":
            if not float(extend_s) > 0:
                raise ValueError("extend by a positive number of seconds")
            duration, regions = length_s + float(extend_s), None
        else:
            duration, regions = length_s, [(float(start_s), float(end_s))]
        settings = self.pipe.resolve_settings(
            prompt.strip(), negative.strip() or None, duration_s=duration,
            num_inference_steps=int(steps), guidance_scale=float(cfg),
            seed=None if random_seed or seed is None else int(seed), inpaint_audio=audio,
            inpaint_regions=regions, inpaint_edge_s=float(edge_s),
            resample_steps=int(resample_steps))
        out = self.pipe(settings, inpaint_audio=audio, progress=_gradio_progress(progress))
        return self._write_results(out), out.settings.as_dict()

    def waveform(self, source_path: str | None, mode: str, start_s: float,
                 end_s: float) -> Any:
        """The picture of the audio to edit, the region to regenerate shaded."""
        if not source_path:
            return None
        audio = load_audio(source_path, sample_rate=self.pipe.sample_rate,
                           channels=self.pipe.config.audio_channels).audio
        region = (float(start_s), float(end_s)) if mode == "region" else None
        return waveform_image(audio, self.pipe.sample_rate, region_s=region)

    def _unique_stem(self, name: str) -> Path:
        """``output_dir / name``, or with a number appended where a file of that name is
        already there (two generations of one seed within a second keep both)."""
        stem, number = self.output_dir / name, 2
        while any(stem.with_suffix(s).exists() for s in (".wav", ".flac", ".mp3")):
            stem, number = self.output_dir / f"{name}-{number}", number + 1
        return stem

    def _write_results(self, out) -> list[Result]:
        """Each output as files (WAV, FLAC and MP3 where libsndfile writes it), its
        spectrogram and its settings."""
        record = out.settings.as_dict()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        results = []
        for i in range(out.audio.shape[0]):
            audio, processing = normalize_output(
                out.audio[i], out.sample_rate,
                normalize=self.normalize and out.settings.normalize_by_default)
            stem = self._unique_stem(f"{stamp}-seed{out.seeds[i]}")
            wav = save_audio(stem.with_suffix(".wav"), audio, out.sample_rate)
            downloads = [wav, save_audio(stem.with_suffix(".flac"), audio, out.sample_rate)]
            if mp3_supported():
                downloads.append(save_audio(stem.with_suffix(".mp3"), audio, out.sample_rate))
            item = dict(record, seed=out.seeds[i], model=self.model_name,
                        joins_s=list(out.joins_s), adapters=list(out.adapters),
                        output=processing.as_dict())
            results.append(Result(wav, spectrogram_image(audio, out.sample_rate), downloads,
                                  item))
        return results

    # -- the page -----------------------------------------------------------------------

    def build(self):
        import gradio as gr

        d, window = self.defaults, self.pipe.max_duration_s
        with gr.Blocks(title="longplay studio") as page:
            drafted = ("" if self.draft_name is None else
                       f" Generations of one window are drafted by `{self.draft_name}` and "
                       "refined by the model in the steps below; edits, audio-to-audio "
                       "and longer pieces use the model's own sampler.")
            gr.Markdown(f"# longplay studio\nModel: `{self.model_name}` — up to "
                        f"{window:.1f} s of {self.pipe.sample_rate} Hz stereo.{drafted}")
            history = gr.State([])
            with gr.Tab("Generate"), gr.Row():
                with gr.Column(scale=2):
                    prompt = gr.Textbox(label="Prompt", lines=2, elem_id="prompt",
                                        placeholder="e.g. warm lo-fi piano with soft drums, 80 BPM")
                    negative = gr.Textbox(label="Negative prompt", lines=1)
                    duration = gr.Slider(0.5, round(window, 2), value=round(min(30.0, window), 2),
                                         step=0.1, label="Duration (s)")
                    with gr.Row():
                        steps = gr.Slider(1, MAX_STEPS, value=self.generate_steps, step=1,
                                          label="Steps")
                        cfg = gr.Slider(1.0, 15.0, value=d.guidance_scale, step=0.1,
                                        label="Guidance scale")
                    with gr.Row():
                        sampler = gr.Dropdown(self.samplers, value=d.sampler, label="Sampler")
                        outputs = gr.Slider(1, MAX_OUTPUTS, value=1, step=1, label="Outputs")
                    with gr.Row():
                        seed = gr.Number(value=0, precision=0, label="Seed", elem_id="seed")
                        random_seed = gr.Checkbox(value=True, label="Random seed")
                    with gr.Accordion("Audio to audio", open=False):
                        init_audio = gr.Audio(label="Init audio", type="filepath")
                        objective = self.pipe.objective
                        _, top = objective.init_noise_level_bounds(d.sigma_min,
                                                                   d.sigma_max)
                        init_level = gr.Slider(0.01, min(top, MAX_INIT_NOISE_LEVEL),
                                               value=objective.default_init_noise_level,
                                               label="Init noise level")
                    names = self.adapter_names()
                    adapter_rows = []
                    with gr.Accordion("Adapters (LoRA)", open=bool(names), visible=bool(names)):
                        for i in range(MAX_ADAPTERS):
                            with gr.Row():
                                adapter_rows.append(gr.Dropdown(
                                    [NO_ADAPTER, *names], value=NO_ADAPTER,
                                    label=f"Adapter {i + 1}", elem_id=f"adapter{i}"))
                                adapter_rows.append(gr.Slider(
                                    -2.0, 2.0, value=1.0, step=0.05, label="Strength",
                                    elem_id=f"adapter_strength{i}"))
                    generate = gr.Button("Generate", variant="primary", elem_id="generate")
                    status = gr.Markdown(elem_id="status")
                with gr.Column(scale=3):
                    slots = []
                    for i in range(MAX_OUTPUTS):
                        with gr.Group(visible=i == 0) as group:
                            player = gr.Audio(label=f"Output {i + 1}", type="filepath",
                                              interactive=False, elem_id=f"audio{i}")
                            picture = gr.Image(label="Spectrogram", type="numpy",
                                               interactive=False, elem_id=f"spectrogram{i}")
                            files = gr.File(label="Download", file_count="multiple",
                                            interactive=False)
                            info = gr.JSON(label="Settings")
                        slots.append((group, player, picture, files, info))

            with gr.Tab("Edit"):
                gr.Markdown("Load audio (or pick a generation below), choose a region to "
                            "regenerate or how much to add, and run. What is not regenerated "
                            "is kept as it is.")
                with gr.Row():
                    with gr.Column(scale=2):
                        source = gr.Audio(label="Audio to edit", type="filepath",
                                          elem_id="edit_source")
                        with gr.Row():
                            source_pick = gr.Number(value=1, precision=0,
                                                    label="or generation #")
                            load_pick = gr.Button("Load generation")
                        mode = gr.Radio(list(EDIT_MODES), value="region",
                                        label="Regenerate a region, or extend")
                        with gr.Row():
                            start = gr.Number(value=0.0, label="Region start (s)")
                            end = gr.Number(value=1.0, label="Region end (s)")
                            extend_by = gr.Number(value=10.0, label="Extend by (s)")
                        edit_prompt = gr.Textbox(label="Prompt", lines=2, elem_id="edit_prompt")
                        edit_negative = gr.Textbox(label="Negative prompt", lines=1)
                        with gr.Row():
                            edit_steps = gr.Slider(1, MAX_STEPS, value=d.num_inference_steps,
                                                   step=1, label="Steps")
                            edit_cfg = gr.Slider(1.0, 15.0, value=d.guidance_scale, step=0.1,
                                                 label="Guidance scale")
                        with gr.Row():
                            edit_seed = gr.Number(value=0, precision=0, label="Seed")
                            edit_random = gr.Checkbox(value=True, label="Random seed")
                        with gr.Accordion("Joins", open=False):
                            edge = gr.Slider(0.0, 2.0, value=DEFAULT_EDGE_S, step=0.05,
                                             label="Soft edge (s)")
                            resample = gr.Slider(1, 10, value=1, step=1,
                                                 label="Resampling (RePaint; 1 = off)")
                        edit_button = gr.Button("Regenerate", variant="primary",
                                                elem_id="edit")
                        edit_status = gr.Markdown(elem_id="edit_status")
                    with gr.Column(scale=3):
                        wave = gr.Image(label="Waveform (the region shaded)", type="numpy",
                                        interactive=False, elem_id="edit_waveform")
                        edited = gr.Audio(label="Result", type="filepath", interactive=False,
                                          elem_id="edit_result")
                        edited_picture = gr.Image(label="Spectrogram", type="numpy",
                                                  interactive=False)
                        edited_files = gr.File(label="Download", file_count="multiple",
                                               interactive=False)
                        edited_info = gr.JSON(label="Settings")
            gr.Markdown("## History")
            table = gr.Dataframe(headers=HISTORY_COLUMNS, interactive=False, wrap=True)
            with gr.Row():
                pick = gr.Number(value=1, precision=0, label="Generation #")
                reuse = gr.Button("Use these settings again")

            controls = [prompt, negative, duration, steps, cfg, sampler, seed, random_seed,
                        outputs, init_audio, init_level, *adapter_rows]
            slot_outputs = [c for slot in slots for c in slot]

            def run(prompt_v, negative_v, duration_v, steps_v, cfg_v, sampler_v, seed_v,
                    random_v, outputs_v, init_v, level_v, *rest,
                    progress=gr.Progress()):  # noqa: B008 - how Gradio injects progress
                *rows, past = rest
                pairs = list(zip(rows[0::2], rows[1::2], strict=True))
                try:
                    results, settings = self.generate(
                        prompt_v, negative_v, duration_v, steps_v, cfg_v, sampler_v, seed_v,
                        random_v, outputs_v, init_v, level_v, progress, adapters=pairs)
                except (ValueError, GenerationError) as err:
                    raise gr.Error(str(err)) from None
                updates = []
                for i in range(MAX_OUTPUTS):
                    if i < len(results):
                        r = results[i]
                        updates += [gr.update(visible=True), str(r.audio_path), r.spectrogram,
                                    [str(p) for p in r.downloads], r.settings]
                    else:
                        updates += [gr.update(visible=False), None, None, None, None]
                entry = dict(settings, seed=results[0].settings["seed"],
                             time=time.strftime("%H:%M:%S"),
                             files=[str(r.audio_path) for r in results])
                past = [*past, entry]
                rows = [[n + 1, h["time"], (h["prompts"] or ("",))[0], h["seed"],
                         h["duration_s"], h["num_inference_steps"], h["guidance_scale"],
                         h["sampler"]] for n, h in enumerate(past)]
                message = f"Done: seed {', '.join(str(r.settings['seed']) for r in results)}"
                return [*updates, past, rows, message, entry["seed"], len(past)]

            generate.click(run, inputs=[*controls, history],
                           outputs=[*slot_outputs, history, table, status, seed, pick])

            def use_again(number, past):
                if not past:
                    raise gr.Error("nothing generated yet")
                index = int(number or 1) - 1
                if not 0 <= index < len(past):
                    raise gr.Error(f"choose a generation between 1 and {len(past)}")
                h = past[index]
                return (h["prompts"][0], h["negative_prompt"] or "", h["duration_s"],
                        h["num_inference_steps"], h["guidance_scale"], h["sampler"], h["seed"],
                        False, h["num_outputs"])

            reuse.click(use_again, inputs=[pick, history],
                        outputs=[prompt, negative, duration, steps, cfg, sampler, seed,
                                 random_seed, outputs])

            def picked(number, past):
                index = int(number or 1) - 1
                if not 0 <= index < len(past):
                    raise gr.Error("choose a generation from the history"
                                   + (f" (1 to {len(past)})" if past else ": none yet"))
                entry = past[index]
                prompt_v = entry["sections"][0][1] if entry.get("sections") else (
                    entry["prompts"][0] if entry["prompts"] else "")
                return entry["files"][0], prompt_v

            load_pick.click(picked, inputs=[source_pick, history],
                            outputs=[source, edit_prompt])

            def draw(path, mode_v, start_v, end_v):
                try:
                    return self.waveform(path, mode_v, start_v, end_v)
                except ValueError as err:
                    raise gr.Error(str(err)) from None

            for trigger in (source.change, mode.change, start.change, end.change):
                trigger(draw, inputs=[source, mode, start, end], outputs=[wave])

            def run_edit(path, mode_v, start_v, end_v, extend_v, prompt_v, negative_v, steps_v,
                         cfg_v, seed_v, random_v, edge_v, resample_v, past,
                         progress=gr.Progress()):  # noqa: B008 - how Gradio injects progress
                try:
                    results, settings = self.edit(path, mode_v, start_v, end_v, extend_v,
                                                  prompt_v, negative_v, steps_v, cfg_v, seed_v,
                                                  random_v, edge_v, resample_v, progress)
                except (ValueError, GenerationError) as err:
                    raise gr.Error(str(err)) from None
                r = results[0]
                entry = dict(settings, seed=r.settings["seed"], time=time.strftime("%H:%M:%S"),
                             files=[str(x.audio_path) for x in results])
                past = [*past, entry]
                rows = [[n + 1, h["time"], (h["prompts"] or ("",))[0], h["seed"],
                         h["duration_s"], h["num_inference_steps"], h["guidance_scale"],
                         h["sampler"]] for n, h in enumerate(past)]
                joins = ", ".join(f"{j:.2f}" for j in r.settings["joins_s"])
                message = f"Done: seed {r.settings['seed']}; joins at {joins or 'none'} s"
                return (str(r.audio_path), r.spectrogram, [str(p) for p in r.downloads],
                        r.settings, past, rows, message, len(past))

            edit_button.click(
                run_edit, inputs=[source, mode, start, end, extend_by, edit_prompt,
                                  edit_negative, edit_steps, edit_cfg, edit_seed, edit_random,
                                  edge, resample, history],
                outputs=[edited, edited_picture, edited_files, edited_info, history, table,
                         edit_status, pick])
        return page

    def launch(self, host: str = "127.0.0.1", port: int = 7860, **kwargs):
        page = self.build()
        page.queue(default_concurrency_limit=1)
        return page.launch(server_name=host, server_port=port, show_error=True,
                           allowed_paths=[str(self.output_dir)], **kwargs)


def _gradio_progress(progress):
    """The pipeline's progress callback for a Gradio progress tracker (or None)."""
    def on_progress(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress(done / max(total, 1), desc=f"{stage} {done}/{total}")

    return on_progress
