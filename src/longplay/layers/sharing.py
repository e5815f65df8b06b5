"""Copies of a module tree that share its weights, for users that each need their own
inference state (precision of the convolutions, compiled code, caches) over one model.

A module with such state lists it in a class attribute ``TRANSIENT_STATE``: attribute
name -> a function making its fresh value. The copy starts with fresh values there, so
neither the state nor its memory (folded weights, rotary tables) is duplicated.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

__all__ = ["TransientState", "shared_weights_copy"]

ModuleT = TypeVar("ModuleT", bound=nn.Module)
TransientState = dict[str, Callable[[], Any]]


def shared_weights_copy(module: ModuleT, dtype: torch.dtype | None = None) -> ModuleT:
    """A new module tree over ``module``'s weights: each parameter and buffer is the same
    tensor object (no memory is copied), or, where ``dtype`` is given and a floating tensor
    has another dtype, a converted copy (the original is left untouched). Every other
    attribute is copied, but the state a module declares in ``TRANSIENT_STATE`` starts
    fresh. Changing the copy's settings (``.to()`` aside, which converts shared tensors in
    place) never affects ``module``."""
    memo: dict[int, Any] = {}
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        if dtype is None or not tensor.is_floating_point() or tensor.dtype == dtype:
            memo[id(tensor)] = tensor
        elif isinstance(tensor, nn.Parameter):
            memo[id(tensor)] = nn.Parameter(tensor.detach().to(dtype),
                                            requires_grad=tensor.requires_grad)
        else:
            memo[id(tensor)] = tensor.to(dtype)
    for sub in module.modules():
        for name, fresh in getattr(type(sub), "TRANSIENT_STATE", {}).items():
            value = sub.__dict__.get(name)
            if value is not None:
                memo[id(value)] = fresh()
    return copy.deepcopy(module, memo)
