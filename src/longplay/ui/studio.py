"""``longplay ui``: a web studio over one TextToMusicPipeline.

The studio object holds the pipeline and builds the page; per-browser-session state
(the history of generations) lives in Gradio session state, never in module globals.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soundfile as sf

from longplay.audio import load_audio, save_audio
from longplay.audio.images import spectrogram_image
from longplay.pipelines import (
    DEFAULT_SIGMA_MAX,
    DEFAULT_SIGMA_MIN,
    GenerationError,
    GenerationSettings,
    TextToMusicPipeline,
)

logger = logging.getLogger(__name__)

MAX_OUTPUTS = 4
MAX_STEPS = 250
MAX_INIT_NOISE_LEVEL = 100.0  # the slider's top for v models (sigma_max is 500)
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
                 output_dir: str | Path | None = None) -> None:
        self.pipe = pipeline
        self.model_name = model_name
        self.output_dir = Path(output_dir or tempfile.mkdtemp(prefix="longplay-ui-"))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        # The model's own defaults (its objective's, with the model's number of steps).
        self.defaults = pipeline.defaults
        self.samplers = list(pipeline.objective.sampler_names)

    # -- generation ---------------------------------------------------------------------

    def settings(self, prompt: str, negative: str, duration_s: float, steps: int, cfg: float,
                 sampler: str, seed: int | None, random_seed: bool, num_outputs: int,
                 init_audio=None, init_noise_level: float | None = None) -> GenerationSettings:
        """The page's values as the pipeline's settings record (the seed drawn by the
        pipeline when it is random); ValueError for values the model refuses."""
        if not prompt or not prompt.strip():
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
                 progress=None) -> tuple[list[Result], dict]:
        """Run the pipeline and write every output's files; returns results and settings."""
        init_audio = None
        if init_audio_path:
            init_audio = load_audio(init_audio_path, sample_rate=self.pipe.sample_rate,
                                    channels=self.pipe.config.audio_channels).audio
        settings = self.settings(prompt, negative, duration_s, steps, cfg, sampler, seed,
                                 random_seed, num_outputs, init_audio, init_noise_level)

        def on_progress(stage: str, done: int, total: int) -> None:
            if progress is not None:
                progress(done / max(total, 1), desc=f"{stage} {done}/{total}")

        out = self.pipe(settings, init_audio=init_audio, progress=on_progress)
        record = out.settings.as_dict()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        results = []
        for i in range(out.audio.shape[0]):
            audio = out.audio[i]
            audio = audio / audio.abs().max().clamp(min=1.0)  # no clipping in the files
            stem = self.output_dir / f"{stamp}-seed{out.seeds[i]}"
            wav = save_audio(stem.with_suffix(".wav"), audio, out.sample_rate)
            downloads = [wav, save_audio(stem.with_suffix(".flac"), audio, out.sample_rate)]
            if mp3_supported():
                mp3 = stem.with_suffix(".mp3")
                sf.write(str(mp3), audio.T.numpy(), out.sample_rate, format="MP3")
                downloads.append(mp3)
            item = dict(record, seed=out.seeds[i], model=self.model_name)
            results.append(Result(wav, spectrogram_image(audio, out.sample_rate), downloads,
                                  item))
        return results, record

    # -- the page -----------------------------------------------------------------------

    def build(self):
        import gradio as gr

        d, window = self.defaults, self.pipe.max_duration_s
        with gr.Blocks(title="longplay studio") as page:
            gr.Markdown(f"# longplay studio\nModel: `{self.model_name}` — up to "
                        f"{window:.1f} s of {self.pipe.sample_rate} Hz stereo.")
            history = gr.State([])
            with gr.Row():
                with gr.Column(scale=2):
                    prompt = gr.Textbox(label="Prompt", lines=2, elem_id="prompt",
                                        placeholder="e.g. warm lo-fi piano with soft drums, 80 BPM")
                    negative = gr.Textbox(label="Negative prompt", lines=1)
                    duration = gr.Slider(0.5, round(window, 2), value=round(min(30.0, window), 2),
                                         step=0.1, label="Duration (s)")
                    with gr.Row():
                        steps = gr.Slider(1, MAX_STEPS, value=d.num_inference_steps, step=1,
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
                        _, top = objective.init_noise_level_bounds(DEFAULT_SIGMA_MIN,
                                                                   DEFAULT_SIGMA_MAX)
                        init_level = gr.Slider(0.01, min(top, MAX_INIT_NOISE_LEVEL),
                                               value=objective.default_init_noise_level,
                                               label="Init noise level")
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
            gr.Markdown("## History")
            table = gr.Dataframe(headers=HISTORY_COLUMNS, interactive=False, wrap=True)
            with gr.Row():
                pick = gr.Number(value=1, precision=0, label="Generation #")
                reuse = gr.Button("Use these settings again")

            controls = [prompt, negative, duration, steps, cfg, sampler, seed, random_seed,
                        outputs, init_audio, init_level]
            slot_outputs = [c for slot in slots for c in slot]

            def run(prompt_v, negative_v, duration_v, steps_v, cfg_v, sampler_v, seed_v,
                    random_v, outputs_v, init_v, level_v, past,
                    progress=gr.Progress()):  # noqa: B008 - how Gradio injects progress
                try:
                    results, settings = self.generate(
                        prompt_v, negative_v, duration_v, steps_v, cfg_v, sampler_v, seed_v,
                        random_v, outputs_v, init_v, level_v, progress)
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
                             time=time.strftime("%H:%M:%S"))
                past = [*past, entry]
                rows = [[n + 1, h["time"], h["prompts"][0], h["seed"], h["duration_s"],
                         h["num_inference_steps"], h["guidance_scale"], h["sampler"]]
                        for n, h in enumerate(past)]
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
        return page

    def launch(self, host: str = "127.0.0.1", port: int = 7860, **kwargs):
        page = self.build()
        page.queue(default_concurrency_limit=1)
        return page.launch(server_name=host, server_port=port, show_error=True,
                           allowed_paths=[str(self.output_dir)], **kwargs)


def load_studio(model: str | Path, text_encoder: str | Path | None = None,
                device: str = "cpu", *, precision: str = "fp32",
                compile: bool = False) -> Studio:
    pipe = TextToMusicPipeline.from_pretrained(model, text_encoder_path=text_encoder,
                                               device=device, precision=precision,
                                               compile=compile)
    return Studio(pipe, Path(model).name)
