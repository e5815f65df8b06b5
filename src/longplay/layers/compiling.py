"""Optional ``torch.compile`` with a fallback to eager execution.

Compilation is an optimisation, never a requirement: when the compiler cannot run here
(no C++ compiler for a CPU, no Triton for a GPU, a Python that TorchDynamo does not
support) or fails on the first call, the component runs eagerly, with one warning that
says why. Nothing changes global torch settings.
"""

from __future__ import annotations

import logging
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)


def _compile_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the compiler failed", not "the model failed"."""
    errors: list[type[BaseException]] = []
    try:
        from torch._dynamo.exc import TorchDynamoException
        errors.append(TorchDynamoException)
    except ImportError:  # pragma: no cover - every supported torch has it
        pass
    try:
        from torch._inductor import exc as inductor_exc
        errors += [getattr(inductor_exc, name) for name in
                   ("CppCompileError", "InvalidCxxCompiler", "TritonMissing", "CUDACompileError")
                   if hasattr(inductor_exc, name)]
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def _describe(exc: BaseException) -> str:
    """One line: the compiler's own error where the wrapper keeps it."""
    inner = getattr(exc, "inner_exception", None) or exc
    first_line = (str(inner).strip().splitlines() or [""])[0]
    return f"{type(inner).__name__}: {first_line}"


def compile_unavailable_reason(device: torch.device | str,
                               backend: str | Callable = "inductor") -> str | None:
    """Why ``torch.compile(backend=backend)`` can't run on ``device`` here, or None."""
    device = torch.device(device)
    try:
        if not torch._dynamo.is_dynamo_supported():
            return "TorchDynamo does not support this Python version"
    except (AttributeError, RuntimeError) as exc:
        return f"TorchDynamo is unavailable ({exc})"
    if backend != "inductor":
        return None
    if device.type == "cpu":
        try:
            from torch._inductor.cpp_builder import get_cpp_compiler
            get_cpp_compiler()
        except Exception as exc:  # any failure means no usable compiler
            return (f"no usable C++ compiler for the CPU backend ({exc}); install g++ "
                    "(Debian: apt install g++) or set CXX")
        include = Path(sysconfig.get_paths()["include"])
        if not (include / "Python.h").exists():
            return (f"the Python headers are missing ({include}/Python.h), which the CPU "
                    "backend compiles against; install them (Debian: apt install python3-dev)")
        return None
    if device.type == "cuda":
        try:
            from torch.utils._triton import has_triton
        except ImportError:
            return "Triton is not installed"
        if not has_triton():
            return "Triton is not installed or does not support this GPU (pip install triton)"
        return None
    return f"no compile backend is set up for {device.type} devices"


class Compiler:
    """Wraps callables of one component (``what``) in ``torch.compile``.

    All callables wrapped by one Compiler share one fallback: after the first compiler
    failure, every one of them runs eagerly (one warning). ``active`` says whether
    compiled code is in use.

    >>> compiler = Compiler("the VAE decoder", "cpu", dynamic=True)
    >>> decode = compiler.wrap(vae.decoder)
    """

    def __init__(self, what: str, device: torch.device | str, *,
                 backend: str | Callable = "inductor", **compile_kwargs: Any) -> None:
        self.what = what
        self.backend = backend
        self.compile_kwargs = compile_kwargs
        self.reason = compile_unavailable_reason(device, backend)
        self.active = self.reason is None
        if self.reason is not None:
            logger.warning("torch.compile is not available for %s: %s; running it without "
                           "compiling", what, self.reason)

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` compiled, or ``fn`` itself once compilation is off."""
        if not self.active:
            return fn
        compiled = torch.compile(fn, backend=self.backend, **self.compile_kwargs)
        errors = _compile_errors()

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.active:
                try:
                    return compiled(*args, **kwargs)
                except errors as exc:
                    self.active = False
                    self.reason = _describe(exc)
                    logger.warning("torch.compile failed for %s (%s); running it without "
                                   "compiling", self.what, self.reason)
            return fn(*args, **kwargs)

        return call
