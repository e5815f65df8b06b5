"""Distribution-level metrics of generated music (Stable Audio 2.0, Table 2; SYSTEM.md section 6).

Each metric is an accumulator with ``update*()`` / ``merge()`` / ``compute()``. Its state
is a set of sufficient statistics, so that the result does not depend on how the items
were split into batches or across processes (up to float rounding): call ``merge()`` on
the accumulators of all workers, then ``compute()`` once.

The metrics are generic over the model that embeds the audio; the paper's models
(OpenL3 for FD, PaSST for KL, LAION-CLAP for the CLAP score) or longplay's own CLAP plug
in as plain functions:

- ``FrechetDistance(embed_fn)`` with ``embed_fn(audio [B, C, S], sample_rate) -> [B, F, D]``
  frame embeddings (F frames per item; all frames enter the statistics);
- ``KLDivergence(logits_fn)`` with ``logits_fn(audio [B, C, S], sample_rate) -> [B, K]``
  class logits per item;
- ``CLAPScore(embed_audio_fn, embed_text_fn)`` with
  ``embed_audio_fn(audio [B, C, S], sample_rate) -> [B, E]`` and
  ``embed_text_fn(prompts) -> [B, E]``; ``clap_embedders(model)`` adapts a
  :class:`longplay.conditioning.clap.CLAPModel`.

Input normalisation (the paper peak-normalises every input to -1 dBFS) is the caller's
job, as is resampling to the rate a pretrained embedder expects.

Shape legend: B batch (items), C audio channels, S samples, F frames per item,
N embeddings, D embedding width, K classes, E joint CLAP width.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from longplay.audio import resample
from longplay.conditioning import CLAPModel

__all__ = [
    "AudioEmbedFn",
    "CLAPScore",
    "FrechetDistance",
    "KLDivergence",
    "TextEmbedFn",
    "clap_embedders",
    "frechet_distance",
]

AudioEmbedFn = Callable[[torch.Tensor, int], torch.Tensor]
"""(audio [B, C, S], sample_rate) -> embeddings ([B, F, D] frames, [B, K] logits or [B, E])."""
TextEmbedFn = Callable[[Sequence[str]], torch.Tensor]
"""prompts (B strings) -> text embeddings [B, E]."""

_SETS = ("reference", "generated")


def _as_matrix(embeddings: torch.Tensor | np.ndarray, what: str) -> np.ndarray:
    """[N, D] tensor or array -> float64 numpy [N, D]; rejects other ranks and non-finite values."""
    if isinstance(embeddings, torch.Tensor):
        embeddings = embeddings.detach().to("cpu", torch.float64).numpy()
    values = np.asarray(embeddings, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"{what} must be a matrix [N, D], got shape {values.shape}.")
    if not np.isfinite(values).all():
        raise ValueError(f"{what} contain NaN or inf values.")
    return values


class _Moments:
    """Count, mean and centred scatter sum(x - mean)(x - mean)^T of a set of vectors, float64.

    Batches are combined with the parallel update of Chan, Golub and LeVeque (1979), which is
    exact algebra (so any batching gives the same moments up to rounding) and avoids the
    cancellation of ``sum x x^T - n mean mean^T`` when the mean is large.
    """

    def __init__(self) -> None:
        self.count = 0
        self.mean: np.ndarray | None = None  # [D]
        self.scatter: np.ndarray | None = None  # [D, D]

    def add(self, count: int, mean: np.ndarray, scatter: np.ndarray) -> None:
        if count == 0:
            return
        if self.mean is None or self.scatter is None:
            self.count, self.mean, self.scatter = count, mean.copy(), scatter.copy()
            return
        if mean.shape != self.mean.shape:
            raise ValueError(f"embedding width {mean.shape[0]} does not match the "
                             f"{self.mean.shape[0]} accumulated so far.")
        total = self.count + count
        delta = mean - self.mean  # [D]
        weight = self.count * count / total
        self.scatter = self.scatter + scatter + np.outer(delta, delta) * weight
        self.mean = self.mean + delta * (count / total)
        self.count = total

    def add_batch(self, values: np.ndarray) -> None:
        if values.shape[0] == 0:
            return
        mean = values.mean(axis=0)
        centred = values - mean
        self.add(values.shape[0], mean, centred.T @ centred)

    def merge(self, other: _Moments) -> None:
        if other.mean is not None and other.scatter is not None:
            self.add(other.count, other.mean, other.scatter)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix [D, D] via eigh;
    eigenvalues below zero (rounding) are clipped to zero."""
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_distance(mean_1: np.ndarray, cov_1: np.ndarray, mean_2: np.ndarray,
                     cov_2: np.ndarray) -> float:
    """Fréchet distance between the Gaussians N(mean_1, cov_1) and N(mean_2, cov_2).

    ``||mean_1 - mean_2||^2 + tr(cov_1 + cov_2 - 2 (cov_1 cov_2)^{1/2})`` (Dowson and Landau
    1982; Heusel et al. 2017, eq. 6). ``tr (cov_1 cov_2)^{1/2}`` is computed without a general
    matrix square root: cov_1 cov_2 is similar to the symmetric PSD matrix
    ``A = cov_1^{1/2} cov_2 cov_1^{1/2}``, so the trace is the sum of the square roots of the
    eigenvalues of A (negative rounding residues clipped to zero). All in float64.

    Args:
        mean_1, mean_2: [D] means.
        cov_1, cov_2: [D, D] symmetric PSD covariances.
    """
    mean_1, mean_2 = np.asarray(mean_1, np.float64), np.asarray(mean_2, np.float64)
    cov_1, cov_2 = np.asarray(cov_1, np.float64), np.asarray(cov_2, np.float64)
    if mean_1.shape != mean_2.shape or cov_1.shape != cov_2.shape or cov_1.shape != (
            mean_1.shape[0], mean_1.shape[0]):
        raise ValueError(f"mismatched shapes: means {mean_1.shape} and {mean_2.shape}, "
                         f"covariances {cov_1.shape} and {cov_2.shape}.")
    sqrt_1 = _sqrt_psd(cov_1)
    product = sqrt_1 @ cov_2 @ sqrt_1
    eigenvalues = np.linalg.eigvalsh((product + product.T) / 2)
    trace_sqrt = float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())
    diff = mean_1 - mean_2
    return float(diff @ diff + np.trace(cov_1) + np.trace(cov_2) - 2.0 * trace_sqrt)


class FrechetDistance:
    """Fréchet distance between the embedding statistics of a reference and a generated set.

    Definition: with mu_r, S_r and mu_g, S_g the mean and the unbiased covariance
    (divided by n - 1) of all reference and all generated embedding vectors (every frame of
    every item is one vector, as stable-audio-metrics' FD_openl3 does),
    ``FD = ||mu_r - mu_g||^2 + tr(S_r + S_g - 2 (S_r S_g)^{1/2})``; see
    :func:`frechet_distance`. Lower is better; FD of a set with itself is 0.

    State: per set the count, mean and centred scatter matrix in float64 (sufficient
    statistics; memory O(D^2) whatever the number of items).

    Args:
        embed_fn: ``(audio [B, C, S], sample_rate) -> [B, F, D]`` frame embeddings, used by
            :meth:`update`; not needed when embeddings are passed directly.
    """

    def __init__(self, embed_fn: AudioEmbedFn | None = None) -> None:
        self.embed_fn = embed_fn
        self._moments = {name: _Moments() for name in _SETS}

    @property
    def num_reference(self) -> int:
        """Number of reference embedding vectors accumulated."""
        return self._moments["reference"].count

    @property
    def num_generated(self) -> int:
        """Number of generated embedding vectors accumulated."""
        return self._moments["generated"].count

    def update_reference(self, embeddings: torch.Tensor | np.ndarray) -> None:
        """Add reference embeddings [N, D] (frames of any number of items, flattened)."""
        self._moments["reference"].add_batch(_as_matrix(embeddings, "reference embeddings"))

    def update_generated(self, embeddings: torch.Tensor | np.ndarray) -> None:
        """Add generated embeddings [N, D] (frames of any number of items, flattened)."""
        self._moments["generated"].add_batch(_as_matrix(embeddings, "generated embeddings"))

    def update(self, audio: torch.Tensor, sample_rate: int, *, generated: bool) -> None:
        """Embed audio [B, C, S] with ``embed_fn`` and add all B * F frames to one set.

        Args:
            audio: [B, C, S] audio at ``sample_rate``.
            sample_rate: in Hz, passed on to ``embed_fn``.
            generated: True for the generated set, False for the reference set.
        """
        if self.embed_fn is None:
            raise ValueError("this FrechetDistance has no embed_fn; pass one to the "
                             "constructor or use update_reference()/update_generated().")
        if audio.dim() != 3:
            raise ValueError(f"audio must be [B, C, S], got shape {tuple(audio.shape)}.")
        frames = self.embed_fn(audio, sample_rate)
        if frames.dim() != 3 or frames.shape[0] != audio.shape[0]:
            raise ValueError(f"embed_fn must return [B, F, D] with B={audio.shape[0]}, "
                             f"got shape {tuple(frames.shape)}.")
        flat = frames.reshape(-1, frames.shape[-1])  # [B * F, D]
        if generated:
            self.update_generated(flat)
        else:
            self.update_reference(flat)

    def merge(self, other: FrechetDistance) -> None:
        """Add the statistics accumulated by ``other`` (e.g. another worker) to this one."""
        for name in _SETS:
            self._moments[name].merge(other._moments[name])

    def statistics(self, generated: bool) -> tuple[np.ndarray, np.ndarray]:
        """Mean [D] and unbiased covariance [D, D] (float64) of one set."""
        name = "generated" if generated else "reference"
        moments = self._moments[name]
        if moments.count < 2 or moments.mean is None or moments.scatter is None:
            raise ValueError(f"the {name} set holds {moments.count} embedding vector(s); the "
                             "Fréchet distance needs at least 2 per set (and many more than "
                             "the embedding width for a stable covariance).")
        return moments.mean.copy(), moments.scatter / (moments.count - 1)

    def compute(self) -> float:
        """FD between the reference and the generated set (see the class docstring)."""
        mean_r, cov_r = self.statistics(generated=False)
        mean_g, cov_g = self.statistics(generated=True)
        if mean_r.shape != mean_g.shape:
            raise ValueError(f"reference embeddings have width {mean_r.shape[0]} but generated "
                             f"ones {mean_g.shape[0]}; use the same embedding model.")
        return frechet_distance(mean_r, cov_r, mean_g, cov_g)


def _as_logits(logits: torch.Tensor, what: str) -> torch.Tensor:
    if logits.dim() != 2:
        raise ValueError(f"{what} must be [B, K], got shape {tuple(logits.shape)}.")
    values = logits.detach().to("cpu", torch.float64)
    if not torch.isfinite(values).all():
        raise ValueError(f"{what} contain NaN or inf values.")
    return values


class KLDivergence:
    """Mean per-item KL divergence between class distributions of generated and reference audio.

    Definition (stable-audio-metrics' KL_passt, SYSTEM.md section 6): for each item i, with
    class logits g_i (generated) and r_i (reference, the real recording of the same prompt),
    ``p_g = softmax(g_i)``, ``p_r = softmax(r_i)`` over the K classes and

        ``KL_i = KL(p_g || p_r) = sum_k p_g[k] (log p_g[k] - log(p_r[k] + eps))``,

    direction generated || reference (the expectation is under the generated distribution).
    The score is the mean of KL_i over items. With the default ``eps = 0`` the log-probabilities
    come from ``log_softmax`` in float64, exact and finite for finite logits, so identical
    logits give exactly 0; ``eps > 0`` adds eps to p_r before the log as implementations that
    work on probabilities do (it shifts the score by at most about eps * K). Lower is better.

    For PaSST as in the paper, ``logits_fn`` averages the logits of 10 s windows with a 5 s
    hop at 32 kHz mono (527 AudioSet classes) before the softmax.

    State: the sum of KL_i and the number of items.

    Args:
        logits_fn: ``(audio [B, C, S], sample_rate) -> [B, K]`` logits, used by
            :meth:`update_audio`; not needed when logits are passed directly.
        eps: added to the reference probabilities before the log (>= 0).
    """

    def __init__(self, logits_fn: AudioEmbedFn | None = None, *, eps: float = 0.0) -> None:
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}.")
        self.logits_fn = logits_fn
        self.eps = float(eps)
        self._sum = 0.0
        self._count = 0

    @property
    def num_items(self) -> int:
        """Number of item pairs accumulated."""
        return self._count

    def per_item(self, generated_logits: torch.Tensor,
                 reference_logits: torch.Tensor) -> torch.Tensor:
        """KL(p_g || p_r) [B] (float64) of paired rows of logits [B, K]."""
        gen = _as_logits(generated_logits, "generated logits")
        ref = _as_logits(reference_logits, "reference logits")
        if gen.shape != ref.shape:
            raise ValueError(f"generated logits {tuple(gen.shape)} and reference logits "
                             f"{tuple(ref.shape)} must have the same shape [B, K].")
        log_p_gen = F.log_softmax(gen, dim=-1)
        if self.eps > 0:
            log_p_ref = torch.log(F.softmax(ref, dim=-1) + self.eps)
        else:
            log_p_ref = F.log_softmax(ref, dim=-1)
        return (log_p_gen.exp() * (log_p_gen - log_p_ref)).sum(dim=-1)

    def update(self, generated_logits: torch.Tensor, reference_logits: torch.Tensor) -> None:
        """Add B item pairs: row b of generated_logits [B, K] pairs with row b of
        reference_logits [B, K] (same prompt / item id)."""
        self._sum += float(self.per_item(generated_logits, reference_logits).sum())
        self._count += int(generated_logits.shape[0])

    def update_by_id(self, generated_logits: Mapping[str, torch.Tensor],
                     reference_logits: Mapping[str, torch.Tensor]) -> None:
        """Add pairs matched by item id: {id: logits [K]} for both sets; the id sets must agree."""
        missing = sorted(set(generated_logits) ^ set(reference_logits))
        if missing:
            raise ValueError(f"{len(missing)} item id(s) are not in both sets, e.g. "
                             f"{missing[:5]}; every generated item needs its reference.")
        ids = sorted(generated_logits)
        if not ids:
            return
        self.update(torch.stack([generated_logits[i] for i in ids]),
                    torch.stack([reference_logits[i] for i in ids]))

    def update_audio(self, generated: torch.Tensor, reference: torch.Tensor,
                     sample_rate: int) -> None:
        """Compute logits of paired audio [B, C, S] (both at ``sample_rate``) with
        ``logits_fn`` and add them."""
        if self.logits_fn is None:
            raise ValueError("this KLDivergence has no logits_fn; pass one to the constructor "
                             "or use update() with logits.")
        if generated.shape[0] != reference.shape[0]:
            raise ValueError(f"got {generated.shape[0]} generated and {reference.shape[0]} "
                             "reference items; KL needs pairs.")
        self.update(self.logits_fn(generated, sample_rate), self.logits_fn(reference, sample_rate))

    def merge(self, other: KLDivergence) -> None:
        """Add the pairs accumulated by ``other`` (e.g. another worker) to this one."""
        if other.eps != self.eps:
            raise ValueError(f"cannot merge KL accumulators with eps {self.eps} and {other.eps}.")
        self._sum += other._sum
        self._count += other._count

    def compute(self) -> float:
        """Mean KL(generated || reference) over all item pairs."""
        if self._count == 0:
            raise ValueError("no item pairs were added; call update() before compute().")
        return self._sum / self._count


def _finite_float64(*embeddings: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The embeddings as float64 on the CPU; NaN or inf values are refused."""
    out = tuple(e.detach().to("cpu", torch.float64) for e in embeddings)
    if not all(torch.isfinite(e).all() for e in out):
        raise ValueError("CLAP embeddings contain NaN or inf values.")
    return out


class CLAPScore:
    """Mean cosine similarity between each audio clip and the text embedding of its prompt.

    Definition (SYSTEM.md section 6): ``mean_i cos(a_i, t_i)`` with a_i the audio embedding of
    item i and t_i the text embedding of its prompt; ``cos(a, t) = a.t / (|a| |t|)`` (the
    embeddings are normalised here, so unnormalised ones are fine). Higher is better, at most 1.

    State: the sum of the cosines and the number of items.

    Args:
        embed_audio_fn: ``(audio [B, C, S], sample_rate) -> [B, E]``.
        embed_text_fn: ``prompts (B strings) -> [B, E]``.
        Both are needed by :meth:`update` only; see :func:`clap_embedders` for longplay's CLAP.
    """

    def __init__(self, embed_audio_fn: AudioEmbedFn | None = None,
                 embed_text_fn: TextEmbedFn | None = None) -> None:
        self.embed_audio_fn = embed_audio_fn
        self.embed_text_fn = embed_text_fn
        self._sum = 0.0
        self._count = 0

    @property
    def num_items(self) -> int:
        """Number of (audio, prompt) pairs accumulated."""
        return self._count

    @staticmethod
    def per_item(audio_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
        """Cosine similarity [B] (float64) of paired rows of [B, E] embeddings."""
        if audio_embeddings.dim() != 2 or audio_embeddings.shape != text_embeddings.shape:
            raise ValueError(f"need audio and text embeddings of one shape [B, E], got "
                             f"{tuple(audio_embeddings.shape)} and {tuple(text_embeddings.shape)}.")
        audio, text = _finite_float64(audio_embeddings, text_embeddings)
        return F.cosine_similarity(audio, text, dim=-1, eps=1e-12)

    def update_embeddings(self, audio_embeddings: torch.Tensor,
                          text_embeddings: torch.Tensor) -> torch.Tensor:
        """Add B pairs: row b of audio_embeddings [B, E] with row b of text_embeddings [B, E].
        Returns their scores [B] (:meth:`per_item`)."""
        scores = self.per_item(audio_embeddings, text_embeddings)
        self._sum += float(scores.sum())
        self._count += int(audio_embeddings.shape[0])
        return scores

    def update_other_prompts(self, audio_embeddings: torch.Tensor,
                             prompt_embeddings: torch.Tensor, own: Sequence[int]) -> None:
        """Add B items at chance level: each clip's mean cosine to every prompt of the set
        but its own. ``audio_embeddings`` [B, E], ``prompt_embeddings`` [P, E] of the set's
        P distinct prompts, ``own[b]`` the row of clip b's prompt. Pairing a clip with a
        neighbour's prompt instead would pair it with its own prompt again whenever a prompt
        is generated more than once."""
        own_rows = torch.as_tensor(list(own), dtype=torch.long)
        count = prompt_embeddings.shape[0]
        if (prompt_embeddings.dim() != 2 or audio_embeddings.dim() != 2
                or prompt_embeddings.shape[-1] != audio_embeddings.shape[-1]):
            raise ValueError(f"need audio embeddings [B, E] and prompt embeddings [P, E], got "
                             f"{tuple(audio_embeddings.shape)} and "
                             f"{tuple(prompt_embeddings.shape)} (one width E).")
        if count < 2:
            raise ValueError("the chance level needs at least two distinct prompts.")
        if own_rows.shape != (audio_embeddings.shape[0],) or not (
                (own_rows >= 0) & (own_rows < count)).all():
            raise ValueError(f"need one prompt row in [0, {count}) per clip, got "
                             f"{own_rows.tolist()} for {audio_embeddings.shape[0]} clip(s).")
        audio, text = _finite_float64(audio_embeddings, prompt_embeddings)
        # [B, P] cosines as one product of unit rows, not B * P pairs of copied rows
        cosines = F.normalize(audio, dim=-1, eps=1e-12) @ F.normalize(text, dim=-1, eps=1e-12).T
        b = cosines.shape[0]
        own_cosine = cosines[torch.arange(b), own_rows]
        self._sum += float((cosines.sum(dim=1) - own_cosine).div(count - 1).sum())
        self._count += b

    def update(self, audio: torch.Tensor, prompts: Sequence[str], sample_rate: int) -> None:
        """Embed audio [B, C, S] at ``sample_rate`` and its B prompts, and add the pairs."""
        if self.embed_audio_fn is None or self.embed_text_fn is None:
            raise ValueError("this CLAPScore lacks embed_audio_fn or embed_text_fn; pass both "
                             "to the constructor or use update_embeddings().")
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings, one per item, not a string.")
        if audio.dim() != 3 or audio.shape[0] != len(prompts):
            raise ValueError(f"need audio [B, C, S] and B prompts, got audio "
                             f"{tuple(audio.shape)} and {len(prompts)} prompt(s).")
        self.update_embeddings(self.embed_audio_fn(audio, sample_rate),
                               self.embed_text_fn(list(prompts)))

    def merge(self, other: CLAPScore) -> None:
        """Add the pairs accumulated by ``other`` (e.g. another worker) to this one."""
        self._sum += other._sum
        self._count += other._count

    def compute(self) -> float:
        """Mean cosine similarity over all pairs."""
        if self._count == 0:
            raise ValueError("no pairs were added; call update() before compute().")
        return self._sum / self._count


def clap_embedders(model: CLAPModel) -> tuple[AudioEmbedFn, TextEmbedFn]:
    """Adapt longplay's :class:`~longplay.conditioning.clap.CLAPModel` to the embedder
    signatures of :class:`CLAPScore`: audio at another rate is resampled (soxr) to the model's
    ``sample_rate``; both run under ``torch.no_grad()``.

    Usage: ``CLAPScore(*clap_embedders(load_clap(folder)))``.
    """
    def embed_audio(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
        if sample_rate != model.sample_rate:
            audio = resample(audio, sample_rate, model.sample_rate)
        with torch.no_grad():
            return model.embed_audio(audio)

    def embed_text(prompts: Sequence[str]) -> torch.Tensor:
        with torch.no_grad():
            return model.embed_text(model.tokenize(prompts))

    return embed_audio, embed_text
