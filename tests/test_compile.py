"""Optional torch.compile: compiled components give the eager outputs, see weight changes,
and fall back to eager (with a warning) where the compiler is missing or fails."""

from __future__ import annotations

import logging

import pytest
import torch

from conftest import SAO1_TINY
from longplay.autoencoder import AudioVAE
from longplay.layers import Compiler, compile_unavailable_reason
from longplay.pipelines import TextToMusicPipeline
from longplay.transformer import DiffusionTransformer

TINY_VAE = dict(encoder_channels=8, decoder_channels=8, channel_mults=(1, 2), strides=(2, 4))


class CountingBackend:
    """A torch.compile backend that runs the captured graph as it is and counts captures."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs):
        self.graphs += 1
        return gm.forward


def failing_backend(gm, example_inputs):
    raise RuntimeError("no code generator here")


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_compiled_vae_decode_matches_eager_and_sees_new_weights() -> None:
    """Chunks of several lengths through one captured graph; a weight change between calls
    is used (the folded weights are fixed per call, not baked into the graph)."""
    torch.manual_seed(0)
    vae = AudioVAE(**TINY_VAE).eval()
    latents = torch.randn(2, 64, 40)
    with torch.inference_mode():
        eager = [vae.decode(latents, chunk_frames=16), vae.decode(latents[..., :29])]
    backend = CountingBackend()
    vae.compile_decoder(Compiler("the VAE decoder", "cpu", backend=backend))
    with torch.inference_mode():
        compiled = [vae.decode(latents, chunk_frames=16), vae.decode(latents[..., :29])]
    for a, b in zip(eager, compiled, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
    assert backend.graphs >= 1

    torch.manual_seed(1)
    vae.load_state_dict(AudioVAE(**TINY_VAE).state_dict())
    with torch.inference_mode():
        after = vae.decode(latents, chunk_frames=16)
        vae.compile_decoder(None)
        expected = vae.decode(latents, chunk_frames=16)
    assert not torch.allclose(expected, eager[0])
    torch.testing.assert_close(after, expected, rtol=0, atol=1e-6)


def test_decode_with_gradients_stays_eager() -> None:
    backend = CountingBackend()
    vae = AudioVAE(**TINY_VAE).compile_decoder(Compiler("dec", "cpu", backend=backend))
    audio = vae.decode(torch.randn(1, 64, 8))
    audio.square().mean().backward()
    assert backend.graphs == 0 and vae.decoder.head.weight_v.grad is not None


def test_inductor_compiled_decode_matches_eager() -> None:
    """The real CPU backend (C++ code generation), as ``compile=True`` uses it."""
    reason = compile_unavailable_reason("cpu")
    assert reason is None, f"the CPU compile backend should work here (CI installs g++): {reason}"
    torch.manual_seed(0)
    vae = AudioVAE(**TINY_VAE).eval()
    latents = torch.randn(2, 64, 40)
    with torch.inference_mode():
        eager = vae.decode(latents, chunk_frames=16)
        compiler = Compiler("the VAE decoder", "cpu")
        compiled = vae.compile_decoder(compiler).decode(latents, chunk_frames=16)
    assert compiler.active, compiler.reason
    torch.testing.assert_close(compiled, eager, rtol=0, atol=1e-5)


def test_dit_blocks_compiled_match_eager_and_training_stays_eager() -> None:
    from longplay.conditioning import Conditioning

    torch.manual_seed(0)
    dit = DiffusionTransformer(io_channels=8, width=64, depth=3, num_heads=2, cond_token_dim=32,
                               global_cond_dim=8).eval()
    with torch.no_grad():
        for p in dit.parameters():
            p.normal_(0, 0.2)
    cond = Conditioning(torch.randn(2, 5, 32), torch.ones(2, 5, dtype=torch.bool),
                        torch.randn(2, 8))
    x, t = torch.randn(2, 8, 12), torch.rand(2)
    with torch.inference_mode():
        eager = dit(x, t, cond)
    backend = CountingBackend()
    dit.compile_blocks(Compiler("blocks", "cpu", backend=backend))
    with torch.inference_mode():
        compiled = dit(x, t, cond)
    torch.testing.assert_close(compiled, eager, rtol=0, atol=1e-6)
    graphs = backend.graphs
    assert graphs >= 1
    dit.train()
    dit(x, t, cond).square().mean().backward()  # gradients: the eager blocks
    assert backend.graphs == graphs and dit.blocks[0].ff.proj_in.weight.grad is not None


def test_compiler_failure_falls_back_to_eager_with_one_warning(caplog) -> None:
    torch.manual_seed(0)
    vae = AudioVAE(**TINY_VAE).eval()
    latents = torch.randn(1, 64, 8)
    with torch.inference_mode():
        eager = vae.decode(latents)
        compiler = Compiler("the VAE decoder", "cpu", backend=failing_backend)
        vae.compile_decoder(compiler)
        with caplog.at_level(logging.WARNING):
            first = vae.decode(latents)
            second = vae.decode(latents)
    torch.testing.assert_close(first, eager, rtol=0, atol=0)
    torch.testing.assert_close(second, eager, rtol=0, atol=0)
    assert not compiler.active and "no code generator here" in compiler.reason
    warnings = [r for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert len(warnings) == 1 and "without compiling" in warnings[0].getMessage()


def test_missing_compiler_is_reported_and_nothing_is_compiled(monkeypatch, caplog) -> None:
    from torch._inductor import cpp_builder

    def no_compiler():
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", no_compiler)
    reason = compile_unavailable_reason("cpu")
    assert reason is not None and "C++ compiler" in reason and "g++" in reason
    with caplog.at_level(logging.WARNING):
        compiler = Compiler("the VAE decoder", "cpu")
    assert not compiler.active and "not available for the VAE decoder" in caplog.text

    def decoder(x):
        return x

    assert compiler.wrap(decoder) is decoder  # not even wrapped


def test_missing_python_headers_are_reported(monkeypatch, tmp_path) -> None:
    import sysconfig

    paths = sysconfig.get_paths()
    monkeypatch.setattr(sysconfig, "get_paths", lambda: {**paths, "include": str(tmp_path)})
    reason = compile_unavailable_reason("cpu")
    assert reason is not None and "Python.h" in reason and "python3-dev" in reason


def test_gpu_without_triton_and_other_devices_are_reported(monkeypatch) -> None:
    import torch.utils._triton as triton_utils

    monkeypatch.setattr(triton_utils, "has_triton", lambda: False)
    assert "Triton" in compile_unavailable_reason("cuda")
    assert "no compile backend" in compile_unavailable_reason("meta")
    assert compile_unavailable_reason("meta", backend="eager") is None


def test_pipeline_compile_option() -> None:
    """compile=True on a CPU compiles the VAE decoder (not the matmul-bound DiT) and the
    generation equals the eager one; bad values are refused up front."""
    eager = TextToMusicPipeline.from_pretrained(SAO1_TINY)
    pipe = TextToMusicPipeline.from_pretrained(SAO1_TINY, compile=True)
    assert pipe.compiled == ("vae",) and eager.compiled == ()
    kwargs = dict(duration_s=1.0, num_inference_steps=4, guidance_scale=3.0, seed=1)
    a, b = eager("a calm piano", **kwargs), pipe("a calm piano", **kwargs)
    assert pipe.compiled == ("vae",)  # it compiled, no fallback
    torch.testing.assert_close(b.latents, a.latents, rtol=0, atol=0)
    torch.testing.assert_close(b.audio, a.audio, rtol=0, atol=1e-4)  # fused Snake rounding
    named = TextToMusicPipeline.from_pretrained(SAO1_TINY, compile=("dit",))
    assert named.compiled == ("dit",) and named.model.dit._compiled_blocks is not None
    again = TextToMusicPipeline(named.model)  # compile=False: the same model runs eagerly
    assert again.compiled == () and again.model.dit._compiled_blocks is None
    assert named.model.dit._compiled_blocks is not None  # and the other pipeline still compiles
    with pytest.raises(ValueError, match="compile must be True, False or a list of dit, vae"):
        TextToMusicPipeline.from_pretrained(SAO1_TINY, compile=("unet",))
