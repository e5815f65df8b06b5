"""Strict loading of configuration files into frozen dataclasses: the one place where
config dicts become objects.

A field the dataclass does not declare is an error that names it, a value of the wrong
type is an error that names the field, and a field without a default must be given.
The helpers ``check_keys``, ``require_field`` and ``expect_value`` give the same errors
for the foreign formats parsed in :mod:`longplay.checkpoints.formats`.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from longplay.errors import ConfigError

__all__ = [
    "ConfigError",
    "check_keys",
    "dataclass_from_dict",
    "dataclass_to_dict",
    "expect_value",
    "load_config_file",
    "require_field",
]


def check_keys(section: str, data: Mapping[str, Any], known: set[str]) -> None:
    """ConfigError unless ``data`` is a mapping whose keys are all in ``known``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{section} must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown field(s) in {section}: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known))})"
        )


def require_field(section: str, data: Mapping[str, Any], key: str) -> Any:
    """``data[key]``, or a ConfigError naming ``section.key`` when it is missing."""
    if key not in data:
        raise ConfigError(f"missing field {section}.{key}")
    return data[key]


def expect_value(section: str, key: str, value: Any, allowed: tuple[Any, ...]) -> None:
    """ConfigError unless ``value`` (of ``section.key``) is one of ``allowed``."""
    if value not in allowed:
        raise ConfigError(
            f"{section}.{key} = {value!r} is not supported by longplay "
            f"(supported: {', '.join(repr(a) for a in allowed)})"
        )


def _convert(value: Any, annotation: Any, section: str) -> Any:
    """Convert a JSON/YAML value to the annotated type (dataclasses strictly)."""
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        return dataclass_from_dict(annotation, value, section)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, section)
            except (ConfigError, TypeError, ValueError):
                continue
        raise ConfigError(f"{section}: {value!r} does not fit {annotation}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{section}: expected a list, got {value!r}")
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{section}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{section}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(v, a, f"{section}[{i}]") for i, (v, a) in
                     enumerate(zip(value, args, strict=True)))
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{section}: expected true/false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{section}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{section}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{section}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{section}: unsupported type {annotation}")  # pragma: no cover


def dataclass_from_dict(cls: type, data: Any, section: str = "config") -> Any:
    """Build the frozen dataclass ``cls`` from a mapping, strictly: unknown keys are errors
    that name them, values are type-checked, missing keys take the defaults (a field
    without a default must be given)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{section} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    check_keys(section, data, set(fields))
    missing = [name for name, f in fields.items() if name not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"missing field(s) in {section}: {', '.join(missing)}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _convert(v, hints[k], f"{section}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{section}: {err}") from None


def dataclass_to_dict(obj: Any) -> Any:
    """A JSON-ready dict of a (nested) dataclass; tuples become lists."""
    if dataclasses.is_dataclass(obj):
        return {f.name: dataclass_to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [dataclass_to_dict(v) for v in obj]
    return obj


def load_config_file(path: str | Any, cls: type) -> Any:
    """Read a YAML or JSON config file into ``cls`` strictly."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {err}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path} is not valid JSON: {err}") from None
    return dataclass_from_dict(cls, data, str(path))


