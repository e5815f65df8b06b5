"""FD_openl3 and KL_passt embedders (``longplay.evaluation.embedders.openl3`` / ``passt``).

The real weights cannot be downloaded in tests, so each package's own architecture is
built with random weights and saved as a local file named and laid out as the download
(a state dict); the embedders load it from that path. The OpenL3 network's batch-norm
statistics are set from a few frames of audio first, so that the random network responds
to its input rather than to its biases alone.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from longplay.audio import save_audio
from longplay.audio.io import resample
from longplay.evaluation import embedders
from longplay.evaluation.distribution_metrics import FrechetDistance, KLDivergence
from longplay.evaluation.embedders import (
    OPENL3_FILE,
    PASST_ARCH,
    PASST_FILE,
    PasstMel,
    kaldi_mel_banks,
    passt_windows,
    peak_normalise,
)


def tones(sample_rate: int, seconds: float, freqs=(440.0, 1234.5, 3100.0),
          channels: int = 1) -> torch.Tensor:
    """[1, C, S] sum of sines under a sin^2 envelope, computed in float64 so that versions
    at different rates are the same signal (float32 phases would differ by -60 dB)."""
    t = torch.arange(round(sample_rate * seconds), dtype=torch.float64) / sample_rate
    envelope = torch.sin(math.pi * t / seconds) ** 2
    signal = sum(torch.sin(2 * math.pi * f * t) / (i + 1) for i, f in enumerate(freqs))
    return (envelope * signal).float().view(1, 1, -1).repeat(1, channels, 1)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# -- OpenL3 ------------------------------------------------------------------------------


def random_openl3():
    from torchopenl3.models import PytorchOpenl3

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = PytorchOpenl3(content_type="music", input_repr="mel256", embedding_size=512)
    frames = torch.cat([tones(48000, 1.0, (220.0 * (i + 1), 3000.0 / (i + 1)))[0]
                        + 0.05 * torch.randn(1, 48000) for i in range(2)])  # [2, 48000]
    model.train()
    with torch.no_grad():
        model(frames[:, None])  # batch-norm statistics of these frames
    return model.eval()


@pytest.fixture(scope="module")
def openl3_file(tmp_path_factory) -> Path:
    """A random OpenL3 mel256/music/512 saved as the download is: a state dict."""
    path = tmp_path_factory.mktemp("openl3") / OPENL3_FILE
    torch.save(random_openl3().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def openl3_embed(openl3_file):
    return embedders.openl3(openl3_file)


def test_openl3_frames_are_the_left_and_right_embeddings(openl3_file, openl3_embed) -> None:
    import torchopenl3
    from torchopenl3.models import PytorchOpenl3

    left = tones(48000, 1.0, (330.0, 2000.0))[0, 0]
    right = tones(48000, 1.0, (95.0, 7000.0))[0, 0] * 0.5
    audio = torch.stack([left, right])[None]  # [1, 2, 48000]
    out = openl3_embed(audio, 48000)
    # 1 s frames every 0.5 s, centred: 1 + ceil((1 s - 0.5 s) / 0.5 s) = 2 frames.
    assert out.shape == (1, 2, 1024) and out.dtype == torch.float32
    # The package's own pipeline on the same file, one channel at a time.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = PytorchOpenl3(content_type="music", input_repr="mel256", embedding_size=512)
    model.load_state_dict(torch.load(openl3_file, weights_only=True))
    model.eval()
    normalised = peak_normalise(audio)
    for channel, half in ((0, out[..., :512]), (1, out[..., 512:])):
        reference, _ = torchopenl3.get_audio_embedding(
            normalised[:, channel], 48000, model=model, hop_size=0.5, center=True,
            verbose=False)
        torch.testing.assert_close(half, reference, rtol=1e-5, atol=1e-5)
    assert relative(out[..., :512], out[..., 512:]) > 0.05  # the channels differ


def test_openl3_mono_fd_with_itself_and_determinism(openl3_embed) -> None:
    clips = torch.cat([tones(48000, 0.5, (f, 3 * f)) for f in (200.0, 500.0)])  # [2, 1, S]
    first = openl3_embed(clips, 48000)
    assert first.shape == (2, 1, 1024)  # 0.5 s: one frame
    # A mono item is embedded once and used for both halves.
    assert torch.equal(first[..., :512], first[..., 512:])
    fd = FrechetDistance(openl3_embed)
    fd.update(clips, 48000, generated=True)
    fd.update_reference(first.flatten(0, 1))
    mean, cov = fd.statistics(generated=True)
    # Deterministic: embedding again gives the same statistics.
    np.testing.assert_array_equal(fd.statistics(generated=False)[0], mean)
    np.testing.assert_array_equal(fd.statistics(generated=False)[1], cov)
    scale = float(mean @ mean + np.trace(cov))
    assert scale > 1.0
    assert fd.compute() == pytest.approx(0.0, abs=1e-6 * scale)
    # A different set is far away.
    different = clips.flip(-1) * torch.tensor([1.0, 0.3]).view(2, 1, 1) + tones(48000, 0.5,
                                                                              (5000.0,))
    fd = FrechetDistance(openl3_embed)
    fd.update_reference(first.flatten(0, 1))
    fd.update(different, 48000, generated=True)
    assert fd.compute() > 1e-3 * scale


def test_openl3_resamples_to_48k(openl3_embed) -> None:
    at_48k = openl3_embed(tones(48000, 1.0), 48000)
    at_44k = openl3_embed(tones(44100, 1.0), 44100)
    assert at_44k.shape == at_48k.shape == (1, 2, 1024)
    assert relative(at_44k, at_48k) < 0.01
    # Taken as 48 kHz without resampling, the 44.1 kHz version is far off.
    assert relative(openl3_embed(tones(44100, 1.0), 48000), at_48k) > 0.05


def test_openl3_uses_the_given_weights(tmp_path, openl3_file, openl3_embed) -> None:
    clip = tones(48000, 0.5)
    other_file = tmp_path / "other" / OPENL3_FILE
    other_file.parent.mkdir()
    state = torch.load(openl3_file, weights_only=True)
    for key in ("audio_embedding_layer.weight", "audio_embedding_layer.bias"):
        state[key] = -state[key]
    torch.save(state, other_file)
    # A folder holding the file works as well as the file.
    other = embedders.openl3(other_file.parent)
    assert relative(other(clip, 48000), openl3_embed(clip, 48000)) > 0.05
    wrong = tmp_path / "wrong.pt"
    torch.save({"conv.weight": torch.zeros(3)}, wrong)
    with pytest.raises(ValueError, match="does not hold the weights of torchopenl3"):
        embedders.openl3(wrong)
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        embedders.openl3(text)
    with pytest.raises(ValueError, match="C = 1 or 2"):
        openl3_embed(torch.zeros(1, 3, 48000), 48000)


# -- PaSST --------------------------------------------------------------------------------


def random_passt():
    with embedders._timm_placeholder():
        from hear21passt.models import passt as network
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):
        return network.get_model(arch=PASST_ARCH, pretrained=False).eval()


@pytest.fixture(scope="module")
def passt_net():
    return random_passt()


@pytest.fixture(scope="module")
def passt_file(tmp_path_factory, passt_net) -> Path:
    """A random PaSST (passt_s_swa_p16_128_ap476) saved as the download is: the network's
    state dict."""
    path = tmp_path_factory.mktemp("passt") / PASST_FILE
    torch.save(passt_net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def passt_logits(passt_file):
    return embedders.passt(passt_file)


def hear21passt_front_end(monkeypatch):
    """hear21passt's own AugmentMelSTFT as get_basic_model builds it, in eval mode. Its
    module imports torchaudio (not installed) for the Kaldi mel banks and the SpecAugment
    masks, which are stood in for by longplay's port and identities."""
    fake = types.ModuleType("torchaudio")
    fake.transforms = types.SimpleNamespace(FrequencyMasking=lambda *a, **k: torch.nn.Identity(),
                                            TimeMasking=lambda *a, **k: torch.nn.Identity())

    def get_mel_banks(num_bins, n_fft, sample_rate, low, high, vtln_low, vtln_high,
                      vtln_warp_factor):
        assert vtln_warp_factor == 1.0
        return kaldi_mel_banks(num_bins, n_fft, sample_rate, low, high), None

    fake.compliance = types.SimpleNamespace(kaldi=types.SimpleNamespace(
        get_mel_banks=get_mel_banks))
    monkeypatch.setitem(sys.modules, "torchaudio", fake)
    spec = importlib.util.find_spec("hear21passt.models.preprocess")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # not registered in sys.modules
    with contextlib.redirect_stdout(io.StringIO()):
        mel = module.AugmentMelSTFT(n_mels=128, sr=32000, win_length=800, hopsize=320,
                                    n_fft=1024, freqm=48, timem=192, htk=False, fmin=0.0,
                                    fmax=None, norm=1, fmin_aug_range=10, fmax_aug_range=2000)
    return mel.eval()


def test_passt_front_end_is_hear21passts(monkeypatch) -> None:
    reference = hear21passt_front_end(monkeypatch)
    audio = torch.randn(2, 32000 * 2, generator=torch.Generator().manual_seed(0)) * 0.3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stft(return_complex=False) is deprecated
        expected = reference(audio)
    out = PasstMel()(audio)
    assert out.shape == (2, 128, 200)  # 1 + (S - 1) // 320 frames
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_kaldi_mel_banks() -> None:
    banks = kaldi_mel_banks(128, 1024, 32000, 0.0, 15000.0).double().numpy()
    assert banks.shape == (128, 512)
    # Independently: triangles between equally spaced points on 1127 ln(1 + f / 700),
    # 130 edges from 0 to 15 kHz, evaluated at the FFT bin frequencies.
    edges = np.linspace(0.0, 1127.0 * np.log(1 + 15000.0 / 700.0), 130)
    mel = 1127.0 * np.log(1 + np.arange(512) * 32000 / 1024 / 700.0)
    rise = (mel[None] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    fall = (edges[2:, None] - mel[None]) / (edges[2:, None] - edges[1:-1, None])
    np.testing.assert_allclose(banks, np.clip(np.minimum(rise, fall), 0, None), atol=1e-4)
    assert banks[:, 481:].max() == 0.0  # nothing above 15 kHz (bin 480 = 15 kHz)


def test_passt_windows_follow_stable_audio_metrics() -> None:
    size, hop = 10, 5
    audio = torch.arange(1.0, 13.0)[None]  # 12 samples: windows at 0 and 5
    parts = passt_windows(audio, size, hop)
    assert parts.shape == (1, 2, 10)
    assert parts[0, 1].tolist() == [6, 7, 8, 9, 10, 11, 12, 0, 0, 0]
    assert passt_windows(torch.ones(1, 10), size, hop).shape == (1, 1, 10)
    assert passt_windows(torch.ones(1, 11), size, hop).shape == (1, 2, 10)
    assert passt_windows(torch.ones(1, 16), size, hop).shape == (1, 3, 10)
    padded = passt_windows(torch.ones(1, 2), size, hop)  # 20 % of a window: padded
    assert padded.shape == (1, 1, 10) and padded.sum() == 2
    assert passt_windows(torch.ones(1, 1), size, hop).shape == (1, 1, 1)  # 10 %: as it is


def test_passt_logits_match_the_package_and_average_windows(monkeypatch, passt_file,
                                                            passt_net) -> None:
    from hear21passt.wrapper import PasstBasicWrapper

    wrapper = PasstBasicWrapper(mel=hear21passt_front_end(monkeypatch), net=passt_net,
                                mode="logits").eval()
    # Windows of 1 s every 0.5 s instead of 10 s / 5 s keep the test fast.
    monkeypatch.setattr(embedders, "PASST_WINDOW_S", 1.0)
    monkeypatch.setattr(embedders, "PASST_HOP_S", 0.5)
    logits = embedders.passt(passt_file, batch_size=2)
    audio = tones(44100, 2.2, channels=2) * torch.tensor([1.0, 0.5]).view(1, 2, 1)
    out = logits(audio, 44100)
    assert out.shape == (1, 527) and out.dtype == torch.float32
    mono = peak_normalise(resample(audio.mean(dim=1, keepdim=True), 44100, 32000))[:, 0]
    assert mono.shape == (1, 70400)
    # Windows at 0, 0.5, 1 and 1.5 s (starts before 2.2 s - 0.5 s); the last one padded.
    windows = torch.cat([mono[:, i: i + 32000] for i in (0, 16000, 32000)]
                        + [torch.nn.functional.pad(mono[:, 48000:], (0, 9600))])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = wrapper(windows).mean(dim=0, keepdim=True)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(logits(audio, 44100), out)  # deterministic


def test_passt_kl_of_identical_audio_is_zero_and_resampling(passt_logits) -> None:
    # Clips under 1.5 s are one window as they are, which keeps this fast.
    clips = torch.cat([tones(32000, 0.5, (f, 2.5 * f)) for f in (300.0, 800.0)])
    kl = KLDivergence(passt_logits)
    kl.update_audio(clips, clips, 32000)
    assert kl.num_items == 2 and kl.compute() == 0.0
    kl = KLDivergence(passt_logits)
    kl.update_audio(clips, clips.flip(0), 32000)
    assert kl.compute() > 1e-4
    at_32k = passt_logits(tones(32000, 0.5), 32000)
    assert relative(passt_logits(tones(44100, 0.5), 44100), at_32k) < 0.01
    assert relative(passt_logits(tones(44100, 0.5), 32000), at_32k) > 0.05


@pytest.mark.slow
def test_passt_takes_full_10_second_windows(passt_logits) -> None:
    # 3 s are zero-padded to one 10 s window: 1000 frames, the pretrained patch grid.
    out = passt_logits(tones(44100, 3.0, channels=2), 44100)
    assert out.shape == (1, 527) and torch.isfinite(out).all()


def test_passt_weights_file_layouts(tmp_path, passt_net, passt_logits) -> None:
    clip = tones(32000, 0.5)
    # A PasstBasicWrapper state dict (net.* keys) loads too; the classifier negated here
    # (its bias is zero) shows that the weights come from the file.
    wrapped = {f"net.{k}": v for k, v in passt_net.state_dict().items()}
    wrapped["device_proxy"] = torch.zeros(1)
    assert not wrapped["net.head.1.bias"].any()
    wrapped["net.head.1.weight"] = -wrapped["net.head.1.weight"]
    torch.save(wrapped, tmp_path / PASST_FILE)
    torch.testing.assert_close(embedders.passt(tmp_path)(clip, 32000),
                               -passt_logits(clip, 32000))
    wrong = tmp_path / "wrong.pt"
    torch.save({"head.weight": torch.zeros(3)}, wrong)
    with pytest.raises(ValueError, match="does not hold the weights of hear21passt"):
        embedders.passt(wrong)


# -- errors and the runner ----------------------------------------------------------------


def test_missing_weights_say_which_file_and_where(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"torchopenl3_mel256_music_512\.pth\.tar "
                                                r"from https://\S+ .*--openl3"):
        embedders.openl3(None)
    with pytest.raises(FileNotFoundError, match="no OpenL3 .* weights at .*"
                                                r"torchopenl3_mel256_music_512\.pth\.tar"):
        embedders.openl3(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"passt-s-f128-p16-s10-ap\.476-swa\.pt "
                                                r"from https://\S+ .*--passt"):
        embedders.passt(None)
    with pytest.raises(FileNotFoundError, match=r"no PaSST .* weights at .*missing\.pt"):
        embedders.passt(tmp_path / "missing.pt")


def test_missing_packages_say_what_to_install(monkeypatch, tmp_path) -> None:
    for name in [n for n in sys.modules if n.split(".")[0] in ("torchopenl3", "hear21passt")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "torchopenl3", None)
    monkeypatch.setitem(sys.modules, "hear21passt", None)
    with pytest.raises(ImportError, match=r"FD_openl3 .*torchopenl3 \(make eval-deps.*"
                                          r"pip install --no-deps torchopenl3==1\.0\.1"):
        embedders.openl3(tmp_path)
    with pytest.raises(ImportError, match=r"KL_passt .*hear21passt \(make eval-deps.*"
                                          r"hear21passt==0\.0\.26"):
        embedders.passt(tmp_path)


@pytest.mark.slow
def test_runner_computes_fd_openl3_and_kl_passt(tmp_path, openl3_file, passt_file) -> None:
    from longplay.evaluation.runner import Evaluation, EvaluationConfig

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": i, "prompt": p}) + "\n"
                               for i, p in (("a", "calm piano"), ("b", "fast drums"))))
    for folder, shift in (("generated", 1.0), ("reference", 1.5)):
        (tmp_path / folder).mkdir()
        for n, item in enumerate("ab"):
            save_audio(tmp_path / folder / f"{item}.wav",
                       tones(44100, 0.5, (shift * 200 * (n + 1), 2000.0), channels=2)[0], 44100)
    config = EvaluationConfig(prompts=prompts, audio=tmp_path / "generated",
                              reference=tmp_path / "reference",
                              metrics=("fd_openl3", "kl_passt"), openl3=openl3_file,
                              passt=passt_file)
    report = Evaluation(config, tmp_path / "report", progress=False).run()
    assert report.metrics["fd_openl3"]["value"] > 0
    assert report.metrics["kl_passt"]["value"] > 0 and report.metrics["kl_passt"]["items"] == 2
