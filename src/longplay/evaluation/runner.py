"""``longplay evaluate``: generate for a prompt file (resumably) or take a folder of
generated audio, compute the chosen metrics and write ``report.json`` + ``report.md``.

Layout of the report folder::

    REPORT_DIR/
      audio/<id>.wav, audio/<id>.json    generations (sidecar: prompt, seed, settings)
      timing/<seconds>.wav, .png         full-window generations for timing adherence
      structure/<set>_<id>_chroma.png    self-similarity matrices (and _mfcc), time in s
      report.json, report.md             report.md shows the PNGs (links relative to it)

A generation whose sidecar matches (prompt, seed, duration, steps, guidance, window and
the model's fingerprint: a hash of its files) is kept on a rerun, so an interrupted
evaluation continues where it stopped, and a rerun with another model makes its own.
Item i of the prompt file uses seed ``seed + i``. Every stage (generating, then each metric) reports
its progress, and a generation its sampler steps (:class:`ProgressBars` on a terminal).

Metrics (``--metrics``; see each one's definition in its module):

- ``clap``: CLAP score of generations vs their prompts and vs the other prompts of the
  set (each clip's mean cosine to every distinct prompt but its own: chance level, even
  when a prompt is generated several times), with longplay's own CLAP (offline);
- ``pitch``: the share of each clip's sounding frames in which the YIN tracker finds a
  pitch (:mod:`longplay.evaluation.pitch`), per clip, per prompt and the mean over
  clips: does the model play notes? The prompt files carry no tonal/percussive tag, so
  the report gives the mean per prompt to read against what each prompt asks for;
- ``fd_clap``: Fréchet distance between own-CLAP window embeddings of the generated
  and the reference audio (needs ``--reference``);
- ``timing``: timing adherence of requests generated in the full window. Not a default:
  each request is one generation of the model's whole window (the demo model: 285 s of
  audio, minutes on a CPU), whatever duration it asks for;
- ``structure``: chroma and MFCC self-similarity matrices (PNG) and the structure
  score (novelty peaks per minute, block contrast) of generated and reference audio;
- ``autoencoder``: STFT/MEL distance and SI-SDR of the model's VAE on the reference
  audio (needs ``--reference``);
- ``joins``: how seamless the joins of extended, inpainted, windowed or looped audio
  are (:mod:`longplay.evaluation.joins`), at the ``joins_s`` each file's sidecar records
  (``longplay generate/extend/inpaint`` write them); files without joins are skipped;
- ``clap_laion``, ``fd_openl3``, ``kl_passt``: the paper's metrics with pretrained
  embedders from local paths (``--laion-clap``, ``--openl3``, ``--passt``; see
  :mod:`longplay.evaluation.embedders`). ``kl_passt`` pairs items with reference files
  of the same id.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from tqdm import tqdm

from longplay.assets import demo_clap_path, model_or_demo
from longplay.atomic import atomic_output_path
from longplay.audio import load_audio, save_audio
from longplay.audio.images import spectrogram_image, write_png
from longplay.checkpoints import model_fingerprint
from longplay.evaluation import embedders
from longplay.evaluation.autoencoder_metrics import ReconstructionMetrics
from longplay.evaluation.distribution_metrics import CLAPScore, FrechetDistance, KLDivergence
from longplay.evaluation.embedders import own_clap
from longplay.evaluation.joins import JoinMetric
from longplay.evaluation.pitch import PitchedContent
from longplay.evaluation.plots import with_axes
from longplay.evaluation.prompts import PromptItem, read_prompts
from longplay.evaluation.structure import (
    chroma_features,
    mfcc_features,
    save_ssm_png,
    self_similarity,
    structure_score,
)
from longplay.evaluation.timing import timing_adherence
from longplay.pipelines import TextToMusicPipeline
from longplay.pipelines.text_to_music import ProgressFn

METRICS = ("clap", "pitch", "fd_clap", "timing", "structure", "autoencoder", "joins",
           "clap_laion", "fd_openl3", "kl_passt")
OFFLINE_METRICS = ("clap", "pitch", "fd_clap", "timing", "structure", "autoencoder", "joins")
DEFAULT_METRICS = ("clap", "pitch", "structure")
"""What ``longplay evaluate`` computes unless told: a few seconds per item beyond the
generations themselves (pitch tracking takes well under a second per 10 s clip and
needs no model; timing adherence costs a whole window per request: opt in)."""
PLOTS_SECTION = "## Structure plots"
"""The last section of report.md: the self-similarity plots of every clip."""
GENERATING = "generating"
"""The stage name under which the items are generated; the metrics' stages are their names."""
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
Unit = TypeVar("Unit")


@dataclass(frozen=True)
class EvaluationConfig:
    prompts: Path
    model: Path | None = None  # None: the bundled demo model (when generating)
    audio: Path | None = None  # already generated audio, <id>.<ext>, instead of generating
    reference: Path | None = None  # real audio, <id>.<ext> (any names for FD)
    metrics: tuple[str, ...] = DEFAULT_METRICS
    clap: Path | None = None  # own CLAP folder; default: the demo model's
    duration_s: float = 10.0  # for prompts without a duration
    steps: int | None = None
    guidance_scale: float | None = None
    seed: int = 0
    window: str | None = None
    timing_durations: tuple[float, ...] = (10.0, 60.0, 285.0)
    timing_prompt: str | None = None  # default: the first prompt
    laion_clap: Path | None = None
    openl3: Path | None = None
    passt: Path | None = None
    max_items: int | None = None

    def __post_init__(self) -> None:
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {', '.join(unknown)}; choose from "
                             f"{', '.join(METRICS)}")
        if not self.metrics:
            raise ValueError("choose at least one metric")
        needs_reference = [m for m in self.metrics if m in ("fd_clap", "autoencoder",
                                                            "fd_openl3", "kl_passt")]
        if needs_reference and self.reference is None:
            raise ValueError(f"{', '.join(needs_reference)} compare with real audio: pass "
                             "--reference DIR")
        if self.duration_s <= 0:
            raise ValueError(f"duration must be positive, got {self.duration_s}")
        if self.max_items is not None and self.max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {self.max_items}")


@dataclass
class Report:
    config: dict[str, Any]
    items: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _audio_files(folder: Path) -> dict[str, Path]:
    """id (file stem) -> audio file."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of audio files")
    return {p.stem: p for p in sorted(folder.rglob("*"))
            if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()}


def _made_with(path: Path, request: dict[str, Any]) -> bool:
    """Whether ``path`` exists and its sidecar (``path`` with .json) records ``request``:
    a finished generation that a resumed run keeps."""
    sidecar = path.with_suffix(".json")
    return (path.exists() and sidecar.exists()
            and json.loads(sidecar.read_text()).get("request") == request)


def _record(path: Path, payload: dict[str, Any]) -> None:
    """Write the sidecar of ``path`` (its request and settings), atomically."""
    with atomic_output_path(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(payload, indent=2) + "\n")


def _safe_id(item_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in item_id)


class ProgressBars:
    """Progress reports (``progress(stage, done, total)``) as tqdm bars on stderr: one per
    stage, closed when the stage is done; a generation's own steps ("generating:
    sampling") get a bar that is cleared when it ends."""

    def __init__(self) -> None:
        self._bars: dict[str, tqdm] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        bar = self._bars.get(stage)
        if bar is None or done < bar.n:  # a new stage, or the next generation's steps
            if bar is not None:
                bar.close()
            bar = self._bars[stage] = tqdm(total=total, desc=stage, leave=": " not in stage,
                                           dynamic_ncols=True)
        bar.total = total
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
            del self._bars[stage]

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()


def _quiet(stage: str, done: int, total: int) -> None:
    """A progress callback that shows nothing."""


class Evaluation:
    """One evaluation run into ``out_dir`` (see the module docstring).

    ``progress``: True shows tqdm bars (:class:`ProgressBars`), False nothing; or a
    callback ``progress(stage, done, total)``, called with ``done = 0`` when a stage starts
    and after each of its units (items, files or timing requests), ``done == total`` last.
    The stages are ``"generating"`` (without ``--audio``), then each metric by its name;
    within a generation the pipeline's steps come as ``"<stage>: sampling"`` and
    ``"<stage>: decoding"``.
    """

    def __init__(self, config: EvaluationConfig, out_dir: str | Path, *,
                 progress: bool | ProgressFn = True) -> None:
        self.config = config
        self.out = Path(out_dir)
        self._bars = ProgressBars() if progress is True else None
        self.progress: ProgressFn
        if self._bars is not None:
            self.progress = self._bars
        else:
            self.progress = _quiet if progress is False else progress
        self._pipe = None
        self._clap_embedder = None
        self._fingerprint: str | None = None
        items = read_prompts(config.prompts)
        self.items: list[PromptItem] = items[: config.max_items] if config.max_items else items
        if not self.items:
            raise ValueError(f"{config.prompts} holds no prompts")

    # -- models ---------------------------------------------------------------------------

    @property
    def pipe(self):
        if self._pipe is None:
            self._pipe = TextToMusicPipeline.from_pretrained(model_or_demo(self.config.model))
        return self._pipe

    def model_fingerprint(self) -> str:
        """The generating model's :func:`~longplay.checkpoints.model_fingerprint`, recorded
        in every generation's request: a rerun with another model (or the same folder
        retrained) makes its generations again instead of keeping the other model's."""
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(model_or_demo(self.config.model))
        return self._fingerprint

    def _own_clap(self):
        """longplay's CLAP, loaded once for all the metrics that use it."""
        if self._clap_embedder is None:
            self._clap_embedder = self._load_own_clap()
        return self._clap_embedder

    def _load_own_clap(self):
        folder = self.config.clap
        if folder is None:
            if self.config.model is not None:
                raise ValueError("the clap and fd_clap metrics need longplay's CLAP: pass --clap "
                                 "FOLDER (a CLAP exported by longplay export)")
            folder = demo_clap_path()
        return own_clap(folder)

    def _steps(self, stage: str) -> ProgressFn:
        """The pipeline's progress callback within ``stage``."""
        return lambda step, done, total: self.progress(f"{stage}: {step}", done, total)

    # -- generation -----------------------------------------------------------------------

    def _settings_of(self, index: int, item: PromptItem) -> dict[str, Any]:
        c = self.config
        return {"prompt": item.prompt, "seed": c.seed + index,
                "duration_s": float(item.duration_s or c.duration_s), "steps": c.steps,
                "guidance_scale": c.guidance_scale, "window": c.window,
                "model": self.model_fingerprint()}

    def generated_files(self) -> dict[str, Path]:
        """id -> generated audio file, generating what is missing."""
        if self.config.audio is not None:
            files = _audio_files(self.config.audio)
            missing = [i.id for i in self.items if i.id not in files]
            if missing:
                raise FileNotFoundError(
                    f"{self.config.audio} has no audio for {len(missing)} prompt id(s), e.g. "
                    f"{', '.join(missing[:5])}: name the files <id>.wav (or .flac)")
            return {i.id: files[i.id] for i in self.items}
        folder = self.out / "audio"
        folder.mkdir(parents=True, exist_ok=True)
        result = {}
        total = len(self.items)
        self.progress(GENERATING, 0, total)
        for index, item in enumerate(self.items):
            settings = self._settings_of(index, item)
            path = folder / f"{_safe_id(item.id)}.wav"
            if not _made_with(path, settings):
                pipe = self.pipe
                duration = min(settings["duration_s"], pipe.max_duration_s)
                out = pipe(item.prompt, duration_s=duration,
                           num_inference_steps=settings["steps"],
                           guidance_scale=settings["guidance_scale"], seed=settings["seed"],
                           window=settings["window"], progress=self._steps(GENERATING))
                # The raw model output, unclipped: the metrics judge the model, not the
                # writer's normalisation (longplay generate's files are normalised).
                save_audio(path, out.audio[0], out.sample_rate, subtype="FLOAT")
                _record(path, {"id": item.id, "request": settings,
                               "settings": out.settings.as_dict()})
            result[item.id] = path
            self.progress(GENERATING, index + 1, total)
        return result

    # -- metrics --------------------------------------------------------------------------

    def _load(self, path: Path, sample_rate: int = 44100) -> torch.Tensor:
        return load_audio(path, sample_rate=sample_rate, channels=2).audio

    def _clap(self, generated: dict[str, Path], report: Report) -> None:
        embedder = self._own_clap()
        ids = [i.id for i in self.items]
        prompts = [i.prompt for i in self.items]
        audio_emb = torch.cat([embedder.embed_audio(self._load(generated[i])[None], 44100)
                               for i in self._each("clap", ids)])
        distinct = list(dict.fromkeys(prompts))
        distinct_emb = embedder.embed_text(distinct)
        own = [distinct.index(prompt) for prompt in prompts]
        text_emb = distinct_emb[own]
        matched, others = CLAPScore(), CLAPScore()
        per_item = matched.update_embeddings(audio_emb, text_emb)
        if len(distinct) > 1:
            others.update_other_prompts(audio_emb, distinct_emb, own)
        for row, score in zip(report.items, per_item.tolist(), strict=True):
            row["clap"] = score
        report.metrics["clap"] = {
            "embedder": embedder.name, "vs_prompts": matched.compute(),
            "vs_other_prompts": others.compute() if len(distinct) > 1 else None,
            "prompts": len(distinct)}

    def _pitch(self, generated: dict[str, Path], report: Report) -> None:
        metric = PitchedContent()
        for item, row in zip(self._each("pitch", self.items), report.items, strict=True):
            scores = metric.update(self._load(generated[item.id]), 44100)
            for key in ("pitched_share", "sounding_share", "median_f0_hz", "top_note_share"):
                value = float(getattr(scores, key)[0])
                row[key] = None if math.isnan(value) else value
        by_prompt: dict[str, list[float]] = {}
        for item, row in zip(self.items, report.items, strict=True):
            by_prompt.setdefault(item.prompt, [])
            if row["pitched_share"] is not None:
                by_prompt[item.prompt].append(row["pitched_share"])
        prompts = [{"prompt": prompt, "items": sum(i.prompt == prompt for i in self.items),
                    "mean_pitched_share": sum(shares) / len(shares) if shares else None}
                   for prompt, shares in by_prompt.items()]
        report.metrics["pitch"] = {**metric.compute().as_dict(), "prompts": prompts}

    def _fd_clap(self, generated: dict[str, Path], report: Report) -> None:
        embedder = self._own_clap()
        fd = FrechetDistance()
        reference = list(_audio_files(self.config.reference).values())
        files = [(path, True) for path in generated.values()] + [(p, False) for p in reference]
        for path, is_generated in self._each("fd_clap", files):
            vectors = embedder.embed_windows(self._load(path)[None], 44100)[0]
            if is_generated:
                fd.update_generated(vectors)
            else:
                fd.update_reference(vectors)
        report.metrics["fd_clap"] = {"embedder": embedder.name, "value": fd.compute(),
                                     "generated_vectors": fd.num_generated,
                                     "reference_vectors": fd.num_reference}

    def _timing(self, report: Report) -> None:
        pipe = self.pipe
        folder = self.out / "timing"
        folder.mkdir(parents=True, exist_ok=True)
        prompt = self.config.timing_prompt or self.items[0].prompt
        window_s = pipe.max_duration_s
        rows = []
        for i, duration in self._each("timing", list(enumerate(self.config.timing_durations))):
            if duration >= window_s:
                duration = math.floor((window_s - 0.2) * 10) / 10  # the longest that fits
            guard = min(1.0, (window_s - duration) / 2)
            path = folder / f"{duration:g}.wav"
            request = {"prompt": prompt, "duration_s": duration, "steps": self.config.steps,
                       "guidance_scale": self.config.guidance_scale,
                       "seed": self.config.seed + 10_000 + i, "window": "full",
                       "model": self.model_fingerprint()}
            if not _made_with(path, request):  # missing, or made with other settings
                out = pipe(prompt, duration_s=duration, num_inference_steps=request["steps"],
                           guidance_scale=request["guidance_scale"], seed=request["seed"],
                           window="full", progress=self._steps("timing"))
                with torch.inference_mode():
                    full = pipe.model.vae.decode(out.latents.to(pipe.device))[0].float().cpu()
                save_audio(path, full, pipe.sample_rate, subtype="FLOAT")
                _record(path, {"request": request})
            full = load_audio(path).audio
            r = timing_adherence(full, pipe.sample_rate, duration, guard_s=guard)
            rows.append({"duration_s": duration, "window_s": r.window_s,
                         "content_db": r.content_db, "tail_db": r.tail_db,
                         "relative_db": r.relative_db, "guard_s": guard,
                         "spectrogram": f"timing/{duration:g}.png"})
            picture = spectrogram_image(full, pipe.sample_rate)
            write_png(folder / f"{duration:g}.png", with_axes(
                picture, x_extent=(0.0, full.shape[-1] / pipe.sample_rate),
                x_label="time (s)", y_label="frequency (mel)", x_marks=(duration,)))
        report.metrics["timing"] = {"prompt": prompt, "items": rows,
                                    "mean_relative_db": sum(r["relative_db"] for r in rows)
                                    / len(rows)}

    def _structure(self, generated: dict[str, Path], report: Report) -> None:
        folder = self.out / "structure"
        folder.mkdir(parents=True, exist_ok=True)
        sets = {"generated": generated}
        if self.config.reference is not None:
            sets["reference"] = _audio_files(self.config.reference)
        summary: dict[str, dict[str, Any]] = {
            name: {"items": len(files), "plots": []} for name, files in sets.items()}
        peaks: dict[str, list[float]] = {name: [] for name in sets}
        contrast: dict[str, list[float]] = {name: [] for name in sets}
        every = [(name, item_id, path) for name, files in sets.items()
                 for item_id, path in files.items()]
        for name, item_id, path in self._each("structure", every):
            audio = self._load(path)
            duration_s = audio.shape[-1] / 44100
            plots = {"id": item_id}
            for kind, features in (("chroma", chroma_features(audio, 44100)),
                                   ("mfcc", mfcc_features(audio, 44100))):
                ssm = self_similarity(features, standardize=kind == "mfcc")
                relative = f"structure/{name}_{_safe_id(item_id)}_{kind}.png"
                save_ssm_png(self.out / relative, ssm,
                             seconds_per_frame=duration_s / ssm.shape[0])
                plots[kind] = relative
                if kind == "chroma" and ssm.shape[0] >= 3:
                    score = structure_score(ssm)
                    peaks[name].append(score.num_boundaries / max(duration_s / 60, 1e-9))
                    contrast[name].append(score.block_contrast)
            summary[name]["plots"].append(plots)
        for name in sets:
            summary[name]["boundaries_per_minute"] = (
                sum(peaks[name]) / max(len(peaks[name]), 1))
            summary[name]["block_contrast"] = sum(contrast[name]) / max(len(contrast[name]), 1)
        report.metrics["structure"] = summary

    def _autoencoder(self, report: Report) -> None:
        vae = self.pipe.model.vae
        metrics = ReconstructionMetrics()
        for path in self._each("autoencoder", list(_audio_files(self.config.reference).values())):
            audio = self._load(path)
            with torch.inference_mode():
                rec = vae.reconstruct(audio[None].to(self.pipe.device))[0, :, : audio.shape[-1]]
            metrics.update(audio, rec.float().cpu(), 44100)
        scores = metrics.compute().as_dict()
        report.metrics["autoencoder"] = {"items": scores.pop("num_items"), **scores}

    def _joins(self, generated: dict[str, Path], report: Report) -> None:
        metric = JoinMetric()
        rows = []
        for item in self._each("joins", self.items):
            path = generated[item.id]
            sidecar = path.with_suffix(".json")
            record = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
            joins = record.get("joins_s") or []
            if not joins:
                continue
            loop = bool(record.get("settings", {}).get("loop", False))
            audio = self._load(path)
            for score in metric.update(audio, 44100, joins, circular=loop):
                rows.append({"id": item.id, **asdict(score)})
        report.metrics["joins"] = ({"items": rows, **metric.compute()} if rows else
                                   {"items": [], "joins": 0})

    def _pretrained(self, name: str, generated: dict[str, Path], report: Report) -> None:
        c = self.config
        if name == "clap_laion":
            if c.laion_clap is None:
                raise ValueError("clap_laion needs --laion-clap FOLDER (a local LAION-CLAP "
                                 "Hugging Face folder)")
            embedder = embedders.laion_clap(c.laion_clap)
            score = CLAPScore()
            for item in self._each(name, self.items):
                score.update_embeddings(
                    embedder.embed_audio(self._load(generated[item.id])[None], 44100),
                    embedder.embed_text([item.prompt]))
            report.metrics[name] = {"value": score.compute(), "items": score.num_items}
        elif name == "fd_openl3":
            embed = embedders.openl3(c.openl3)
            fd = FrechetDistance(embed)
            files = [(path, True) for path in generated.values()]
            files += [(path, False) for path in _audio_files(c.reference).values()]
            for path, is_generated in self._each(name, files):
                fd.update(self._load(path)[None], 44100, generated=is_generated)
            report.metrics[name] = {"value": fd.compute()}
        else:
            logits = embedders.passt(c.passt)
            kl = KLDivergence(eps=1e-6)  # as stable-audio-metrics' passt_kld
            reference = _audio_files(c.reference)
            paired = [i.id for i in self.items if i.id in reference]
            if not paired:
                raise ValueError("kl_passt pairs generations with reference files of the same id; "
                                 f"none of the prompt ids has a file in {c.reference}")
            for item_id in self._each(name, paired):
                kl.update(logits(self._load(generated[item_id])[None], 44100),
                          logits(self._load(reference[item_id])[None], 44100))
            report.metrics[name] = {"value": kl.compute(), "items": kl.num_items}

    # -- the run --------------------------------------------------------------------------

    def _each(self, stage: str, units: Sequence[Unit]) -> Iterator[Unit]:
        """Yield ``units`` one by one, reporting ``stage``'s progress before the first and
        after each."""
        total = len(units)
        self.progress(stage, 0, total)
        for done, unit in enumerate(units, 1):
            yield unit
            self.progress(stage, done, total)

    def run(self) -> Report:
        try:
            return self._run()
        finally:
            if self._bars is not None:
                self._bars.close()

    def _run(self) -> Report:
        self.out.mkdir(parents=True, exist_ok=True)
        config = {k: (str(v) if isinstance(v, Path) else v)
                  for k, v in asdict(self.config).items()}
        report = Report(config=config)
        needs_items = any(m != "timing" for m in self.config.metrics)
        generated: dict[str, Path] = {}
        if needs_items:
            start = time.perf_counter()
            generated = self.generated_files()
            report.seconds["generation"] = time.perf_counter() - start
            report.items = [{"id": i.id, "prompt": i.prompt, "seed": self.config.seed + n,
                             "audio": str(generated[i.id].resolve())}
                            for n, i in enumerate(self.items)]
        for metric in self.config.metrics:
            start = time.perf_counter()
            if metric == "clap":
                self._clap(generated, report)
            elif metric == "pitch":
                self._pitch(generated, report)
            elif metric == "fd_clap":
                self._fd_clap(generated, report)
            elif metric == "timing":
                self._timing(report)
            elif metric == "structure":
                self._structure(generated, report)
            elif metric == "autoencoder":
                self._autoencoder(report)
            elif metric == "joins":
                self._joins(generated, report)
            else:
                self._pretrained(metric, generated, report)
            report.seconds[metric] = time.perf_counter() - start
        write_report(self.out, report)
        return report


def clap_difference(clap: dict[str, Any]) -> float | None:
    """The ``clap`` metric's CLAP score against the prompts minus its chance level (against
    the other prompts of the set); None with a single distinct prompt."""
    if clap["vs_other_prompts"] is None:
        return None
    return clap["vs_prompts"] - clap["vs_other_prompts"]


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _percent(share: float | None) -> str:
    return "n/a" if share is None else f"{100 * share:.1f}"


def pitch_markdown(pitch: dict[str, Any]) -> list[str]:
    """The report's section on the ``pitch`` metric (its dict in report.json)."""
    silent = pitch["silent_items"]
    lines = ["## Pitched content", "",
             "Share of each clip's sounding frames (YIN's loudness gate: above -70 dBFS and "
             "within 40 dB of the clip's loudest frame) in which the YIN pitch tracker finds "
             "a pitch (`longplay.evaluation.pitch`): near 100 % for notes, near 0 for noise "
             "or unpitched drums. Top note: share of the pitched frames on the clip's most "
             "common semitone (near 100 %: one held pitch or a drone such as a comb, not a "
             "melody). Means over clips; a silent clip has no share"
             + (f" ({silent} of {pitch['items']} here)." if silent else ".")
             + " Sounding: the share of all of a clip's frames that pass the gate; a "
             "generation that stops before its requested end, or leaves gaps, scores well "
             "below 100 %.", "",
             "| clips | silent clips | sounding frames (%) | pitched frames (%) | "
             "top note (%) |", "|---|---|---|---|---|",
             f"| {pitch['items']} | {silent} | {_percent(pitch.get('mean_sounding_share'))} | "
             f"{_percent(pitch['mean_pitched_share'])} | "
             f"{_percent(pitch['mean_top_note_share'])} |", "",
             "Per prompt (the prompt file marks no prompt as tonal or percussive: read each "
             "share against what its prompt asks for).", "",
             "| prompt | clips | pitched frames (%) |", "|---|---|---|"]
    lines += [f"| {row['prompt']} | {row['items']} | {_percent(row['mean_pitched_share'])} |"
              for row in pitch["prompts"]]
    return [*lines, ""]


def report_markdown(report: Report) -> str:
    c, m = report.config, report.metrics
    lines = ["# Evaluation report", "",
             f"Model: `{c['model'] or 'bundled demo model'}`; prompts: `{c['prompts']}` "
             f"({len(report.items) or 'no'} items); seeds from {c['seed']}; metrics: "
             f"{', '.join(c['metrics'])}.", ""]
    if "clap" in m:
        x = m["clap"]
        diff = clap_difference(x)
        lines += ["## Text adherence (CLAP score)", "",
                  f"Embedder: {x['embedder']}. Mean cosine between each generation and its "
                  "prompt, and between each generation and every other prompt of the set "
                  f"(chance level; {x['prompts']} distinct prompts).", "",
                  "| vs prompts | vs other prompts | difference |", "|---|---|---|",
                  f"| {_fmt(x['vs_prompts'])} | {_fmt(x['vs_other_prompts'])} | {_fmt(diff)} |",
                  ""]
    if "pitch" in m:
        lines += pitch_markdown(m["pitch"])
    for key, title in (("fd_clap", "Fréchet distance (own CLAP windows)"),
                       ("fd_openl3", "FD_openl3"), ("kl_passt", "KL_passt"),
                       ("clap_laion", "CLAP score (LAION-CLAP)")):
        if key in m:
            lines += [f"## {title}", "", f"{_fmt(m[key]['value'])}", ""]
    if "autoencoder" in m:
        x = m["autoencoder"]
        lines += ["## Autoencoder on the reference audio", "",
                  "| items | STFT distance | MEL distance | SI-SDR (dB) |", "|---|---|---|---|",
                  f"| {x['items']} | {_fmt(x['stft_distance'])} | {_fmt(x['mel_distance'])} | "
                  f"{_fmt(x['si_sdr'], 2)} |", ""]
        if "added_tone_db" in x:  # reports written before the fidelity checks lack them
            share = {k: None if x[k] is None else 100 * x[k] for k in
                     ("pitched_share_reference", "pitched_share_estimate", "pitch_agreement")}
            lines += ["Fidelity checks (`longplay.evaluation.fidelity`; targets: DC below 1e-3, "
                      "no added tone above -40 dB, chroma correlation at least 0.8).", "",
                      "| DC offset (reference) | added tone, mean / worst (dB) | "
                      "chroma correlation | harmonic detail correlation | "
                      "pitched frames, reference / estimate (%) | "
                      "pitch agreement (%) |", "|---|---|---|---|---|---|",
                      f"| {x['dc_offset']:.1e} ({x['reference_dc_offset']:.1e}) | "
                      f"{_fmt(x['added_tone_db'], 1)} / {_fmt(x['worst_added_tone_db'], 1)} | "
                      f"{_fmt(x['chroma_correlation'])} | "
                      f"{_fmt(x.get('harmonic_detail_correlation'))} | "
                      f"{_fmt(share['pitched_share_reference'], 1)} / "
                      f"{_fmt(share['pitched_share_estimate'], 1)} | "
                      f"{_fmt(share['pitch_agreement'], 1)} |", ""]
    if "timing" in m:
        lines += ["## Timing adherence (full window)", "",
                  f"Prompt: \"{m['timing']['prompt']}\". Relative level = tail - content (dB).",
                  "", "| requested | content (dB) | tail (dB) | relative (dB) | spectrogram |",
                  "|---|---|---|---|---|"]
        for r in m["timing"]["items"]:
            lines.append(f"| {r['duration_s']:g} s | {_fmt(r['content_db'], 1)} | "
                         f"{_fmt(r['tail_db'], 1)} | {_fmt(r['relative_db'], 1)} | "
                         f"![{r['duration_s']:g} s]({r['spectrogram']}) |")
        lines.append("")
    if "structure" in m:
        lines += ["## Structure (chroma self-similarity)", "",
                  "| set | items | boundaries per minute | block contrast |", "|---|---|---|---|"]
        for name, x in m["structure"].items():
            lines.append(f"| {name} | {x['items']} | {_fmt(x['boundaries_per_minute'], 2)} | "
                         f"{_fmt(x['block_contrast'])} |")
        lines.append("")
    if "joins" in m:
        x = m["joins"]
        lines += ["## Joins (extension, inpainting, windows, loops)", ""]
        if x["joins"]:
            lines += ["Change across each join relative to the audio's own frame-to-frame "
                      "change (about 1: like the music inside; higher: a seam), and clicks "
                      "(above about 2).", "",
                      "| joins | mean mel jump | max mel jump | mean flux | max click |",
                      "|---|---|---|---|---|",
                      f"| {x['joins']} | {_fmt(x['mean_mel_jump'], 2)} | "
                      f"{_fmt(x['max_mel_jump'], 2)} | {_fmt(x['mean_flux'], 2)} | "
                      f"{_fmt(x['max_click'], 2)} |", "",
                      "| id | at (s) | mel jump | flux | click |", "|---|---|---|---|---|"]
            lines += [f"| {r['id']} | {r['position_s']:.2f} | {_fmt(r['mel_jump'], 2)} | "
                      f"{_fmt(r['flux'], 2)} | {_fmt(r['click'], 2)} |" for r in x["items"]]
        else:
            lines.append("No file records joins (sidecars with `joins_s`).")
        lines.append("")
    if report.items:
        columns = [(key, title) for key, title in (("clap", "CLAP"),
                                                   ("sounding_share", "sounding (%)"),
                                                   ("pitched_share", "pitched (%)"))
                   if key in report.items[0]]
        lines += ["## Items", "", "| id | seed | prompt |"
                  + "".join(f" {title} |" for _, title in columns),
                  "|---|---|---|" + "---|" * len(columns)]
        for row in report.items:
            cells = [_fmt(row[key]) if key == "clap" else _percent(row[key])
                     for key, _ in columns]
            lines.append(f"| {row['id']} | {row['seed']} | {row['prompt']} |"
                         + "".join(f" {cell} |" for cell in cells))
        lines.append("")
    if "structure" in m:
        lines += [PLOTS_SECTION, "",
                  "Self-similarity of each clip over time (white: alike, black: opposite); "
                  "sections show as bright blocks along the diagonal.", "",
                  "| set | id | chroma | MFCC |", "|---|---|---|---|"]
        for name, x in m["structure"].items():
            lines += [f"| {name} | {p['id']} | ![{p['id']} chroma]({p['chroma']}) | "
                      f"![{p['id']} MFCC]({p['mfcc']}) |" for p in x["plots"]]
        lines.append("")
    return "\n".join(lines)


def write_report(out_dir: Path, report: Report) -> None:
    with atomic_output_path(out_dir / "report.json") as tmp:
        tmp.write_text(json.dumps(asdict(report), indent=2) + "\n")
    with atomic_output_path(out_dir / "report.md") as tmp:
        tmp.write_text(report_markdown(report))
