"""int8 weights for the linear layers of a module on a CPU, through PyTorch's own dynamic
quantisation (``torch.ao.quantization.quantize_dynamic``): weights stored in int8 per
output channel, activations quantised on the fly per call, int8 matrix products with int32
accumulation (fbgemm / oneDNN kernels), outputs in float32.

Why this path: it needs no compiler and no extra package, and on the CPUs measured here
it is faster than bfloat16 at the DiT's sizes (benchmarks/dit_step.py), while torchao's
int8 tensor subclasses were slower than float32 in eager mode and slower than this with
``torch.compile`` (docs/speed.md). PyTorch marks ``torch.ao.quantization`` deprecated in
favour of torchao; :func:`int8_unavailable_reason` says so plainly if a future build
drops it.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

__all__ = ["int8_unavailable_reason", "quantize_linears_int8"]


ENGINES = ("onednn", "x86", "fbgemm")
"""PyTorch's quantised CPU engines in order of preference: oneDNN's dynamic int8 linear
layers measured 1.40x the bf16 step of the full-size DiT at 1024 latents on an AVX512-VNNI
CPU, fbgemm's (which "x86" picked there) 1.23x (benchmarks/dit_step.py)."""


def _engine() -> str | None:
    engines = [e for e in ENGINES if e in
               torch.backends.quantized.supported_engines]
    return engines[0] if engines else None


def int8_unavailable_reason() -> str | None:
    """Why int8 linear layers cannot run in this PyTorch build, or None when they can."""
    try:
        from torch.ao.quantization import quantize_dynamic  # noqa: F401
    except ImportError:
        return (f"this PyTorch ({torch.__version__}) has no torch.ao.quantization."
                "quantize_dynamic; use precision bf16 or fp32")
    if _engine() is None:
        return (f"this PyTorch build has no quantized CPU engine (it has "
                f"{list(torch.backends.quantized.supported_engines)}); use precision bf16 or "
                "fp32")
    return None


def quantize_linears_int8(module: nn.Module) -> nn.Module:
    """``module`` with every ``nn.Linear`` inside it replaced, in place, by an int8
    dynamically quantised one (per-channel weights); returns ``module``. The float weights
    the replaced layers held are not modified (the new layers pack their own copies), so a
    module tree that shares its tensors with another model leaves that model intact.

    Raises RuntimeError (naming the fix) where int8 is unavailable.
    """
    reason = int8_unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"int8 is unavailable: {reason}")
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    torch.backends.quantized.engine = _engine()
    with warnings.catch_warnings():  # the deprecation notices of torch.ao (see above)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        quantize_dynamic(module, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8,
                         inplace=True)
    return module
