"""Strict checking and loading of configurations: the one place where config dicts become
objects, and where every config field is checked against its declaration.

A field the dataclass does not declare is an error that names it, a field without a
default must be given, and every value is checked against the field's annotation: its
type (``true`` is not an integer, ``44100.9`` is not an integer; an integer is a fine
number) and its constraint from :mod:`longplay.config.fields` (a ``Range``, a ``OneOf``).
Configs are frozen dataclasses declared with :func:`config_dataclass`, which runs these
checks whenever one is built: from a file, from a foreign layout
(:mod:`longplay.checkpoints.formats`, through :func:`read_field`), in Python, or by
``dataclasses.replace``. Errors name the field by its dotted path
(``trainer.max_steps must be a positive integer, got 0``) and, from a file, the file.

In a config file, the path fields (``ConfigPath``) are relative to the file's folder.
The helpers ``check_keys``, ``require_field`` and ``expect_value`` give the same errors
for the foreign formats parsed in :mod:`longplay.checkpoints.formats`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from longplay.config.fields import ConfigPath, OneOf, Range
from longplay.errors import ConfigError

__all__ = [
    "ConfigError",
    "ConfigFieldError",
    "check_config",
    "check_keys",
    "check_value",
    "config_dataclass",
    "dataclass_from_dict",
    "dataclass_to_dict",
    "expect_value",
    "load_config_file",
    "read_field",
    "require_field",
]

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_NONE = type(None)
_MISSING = object()


class ConfigFieldError(ConfigError):
    """A config field holds a value it does not accept.

    Attributes:
        field: the field's dotted path in the config being built (``trainer.max_steps``).
        problem: what is wrong (``must be a positive integer, got 0``).
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field
        self.problem = problem

    def within(self, section: str) -> ConfigFieldError:
        """The same error for a config that sits at ``section`` of another one."""
        return ConfigFieldError(_join(section, self.field), self.problem)


def _join(section: str, key: str) -> str:
    if not section:
        return key
    return f"{section}{key}" if key.startswith("[") else f"{section}.{key}"


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
        raise ConfigError(f"missing field {_join(section, key)}")
    return data[key]


def expect_value(section: str, key: str, value: Any, allowed: tuple[Any, ...]) -> None:
    """ConfigError unless ``value`` (of ``section.key``) is one of ``allowed``."""
    if value not in allowed:
        raise ConfigError(
            f"{_join(section, key)} = {value!r} is not supported by longplay "
            f"(supported: {', '.join(repr(a) for a in allowed)})"
        )


# -- checking one value against its annotation ---------------------------------------------


def _describe(annotation: Any) -> str:
    """What ``annotation`` accepts, in words."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        inner, *marks = typing.get_args(annotation)
        for mark in marks:
            if isinstance(mark, Range):
                return mark.describe(integer=inner is int)
            if isinstance(mark, OneOf):
                return mark.describe()
        return _describe(inner)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(annotation))
    if origin is tuple:
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list, each entry {_describe(args[0])}"
        kinds = {_describe(a) for a in args}
        each = f"each {kinds.pop()}" if len(kinds) == 1 else ", ".join(_describe(a) for a in args)
        return f"a list of {len(args)} values, {each}"
    if dataclasses.is_dataclass(annotation):
        return f"a mapping of the fields of {annotation.__name__}"
    return {bool: "true or false", int: "an integer", float: "a finite number",
            str: "a string", _NONE: "null"}.get(annotation, str(annotation))


def _fail(where: str, annotation: Any, value: Any) -> ConfigFieldError:
    return ConfigFieldError(where, f"must be {_describe(annotation)}, got {value!r}")


def _check(value: Any, annotation: Any, where: str, base: Path | None) -> Any:
    """``value`` checked against ``annotation`` (and converted: an integer given for a
    number becomes a float, a list a tuple, a mapping the annotated dataclass; with
    ``base``, a relative path is resolved against it)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        inner, *marks = typing.get_args(annotation)
        try:
            checked = _check(value, inner, where, base)
        except ConfigFieldError:
            raise _fail(where, annotation, value) from None
        for mark in marks:
            if isinstance(mark, Range | OneOf) and checked not in mark:
                raise _fail(where, annotation, value)
            if isinstance(mark, ConfigPath) and base is not None:
                checked = _resolve_path(checked, mark, base)
        return checked
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None and _NONE in args:
            return None
        errors = []
        for arg in args:
            if arg is _NONE:
                continue
            try:
                return _check(value, arg, where, base)
            except ConfigFieldError as err:
                errors.append(err)
        if len(errors) == 1:  # X | None: X's own message is the precise one
            raise errors[0]
        raise _fail(where, annotation, value)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise _fail(where, annotation, value)
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],) * len(value)
        elif len(args) != len(value):
            raise _fail(where, annotation, value)
        return tuple(_check(v, a, f"{where}[{i}]", base)
                     for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value  # checked when it was built
        return dataclass_from_dict(annotation, value, where, relative_to=base)
    if annotation is bool:
        ok = isinstance(value, bool)
    elif annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif annotation is float:
        ok = (isinstance(value, int | float) and not isinstance(value, bool)
              and math.isfinite(value))
        value = float(value) if ok else value
    elif annotation is str:
        ok = isinstance(value, str)
    elif annotation is _NONE:
        ok = value is None
    else:  # pragma: no cover - a config field of a type this loader does not know
        raise TypeError(f"{where}: unsupported config field type {annotation}")
    if not ok:
        raise _fail(where, annotation, value)
    return value


def _resolve_path(value: str, mark: ConfigPath, base: Path) -> str:
    """A path field of a config file, relative to the file's folder ``base``; absolute
    paths, ``~`` and URLs stay as they are, and so do names (``mark.is_name``) when no
    file of that name is next to the config."""
    if mark.separator is not None and mark.separator in value:
        return mark.separator.join(_resolve_path(part.strip(), ConfigPath(mark.is_name), base)
                                   for part in value.split(mark.separator))
    if not value or _URL.match(value):
        return value
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    resolved = base / path
    if mark.is_name is not None and not resolved.exists() and mark.is_name(value):
        return value
    return os.path.normpath(resolved)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def check_value(value: Any, annotation: Any, where: str) -> Any:
    """``value`` checked against a field annotation (e.g. ``fields.PositiveInt``), and
    converted as the loader converts it; ConfigFieldError naming ``where`` otherwise."""
    return _check(value, annotation, where, None)


def read_field(section: str, data: Mapping[str, Any], key: str, cls: type,
               name: str | None = None, default: Any = _MISSING) -> Any:
    """``data[key]`` (or ``default`` when it is absent) checked as the field ``name``
    (default: ``key``) of the config class ``cls``: for the foreign layouts, whose keys
    are not longplay's field names. Errors name ``section.key``."""
    if key not in data:
        if default is _MISSING:
            raise ConfigError(f"missing field {_join(section, key)}")
        return default
    return _check(data[key], _hints(cls)[name or key], _join(section, key), None)


# -- whole configs ---------------------------------------------------------------------------


def _check_fields(config: Any) -> None:
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        checked = _check(value, _hints(type(config))[f.name], f.name, None)
        if checked is not value:
            object.__setattr__(config, f.name, checked)  # 3 -> 3.0, [..] -> (..)


def config_dataclass(cls: type) -> type:
    """``@dataclass(frozen=True)`` whose every instance is checked when it is built:
    each field against its annotation, then the class's own ``__post_init__`` (the
    checks that involve several fields)."""
    own = cls.__dict__.get("__post_init__")

    def __post_init__(self) -> None:  # noqa: N807 - the dataclass hook
        _check_fields(self)
        if own is not None:
            own(self)

    cls.__post_init__ = __post_init__
    return dataclasses.dataclass(frozen=True)(cls)


def check_config(config: Any, section: str = "") -> Any:
    """Check ``config`` (a config dataclass) and every config inside it again, as they
    were checked when built; returns it. Errors name the field's dotted path under
    ``section``."""

    def nested(value: Any, where: str) -> None:
        if dataclasses.is_dataclass(value):
            check_config(value, where)
        elif isinstance(value, tuple):
            for i, v in enumerate(value):
                nested(v, f"{where}[{i}]")

    for f in dataclasses.fields(config):
        nested(getattr(config, f.name), _join(section, f.name))
    try:
        config.__post_init__()
    except ConfigFieldError as err:
        raise err.within(section) from None
    except ConfigError as err:
        raise ConfigError(f"{section}: {err}" if section else str(err)) from None
    return config


def dataclass_from_dict(cls: type, data: Any, section: str = "", *,
                        relative_to: str | Path | None = None) -> Any:
    """Build the config dataclass ``cls`` from a mapping, strictly: unknown keys are
    errors that name them, values are checked (see the module's docstring), missing keys
    take the defaults (a field without a default must be given). ``section`` is the
    dotted path of ``data`` in error messages; with ``relative_to``, relative paths in
    path fields are resolved against that folder."""
    where = section or "the config"
    if not isinstance(data, Mapping):
        raise ConfigFieldError(where, f"must be a mapping of the fields of {cls.__name__}, "
                                      f"got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    check_keys(where, data, set(fields))
    missing = [name for name, f in fields.items() if name not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"missing field(s) in {where}: {', '.join(missing)}")
    base = None if relative_to is None else Path(relative_to)
    hints = _hints(cls)
    kwargs = {k: _check(v, hints[k], _join(section, k), base) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigFieldError as err:
        raise err.within(section) from None
    except ConfigError as err:
        raise ConfigError(f"{section}: {err}" if section else str(err)) from None


def dataclass_to_dict(obj: Any) -> Any:
    """A JSON-ready dict of a (nested) dataclass; tuples become lists."""
    if dataclasses.is_dataclass(obj):
        return {f.name: dataclass_to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [dataclass_to_dict(v) for v in obj]
    return obj


def load_config_file(path: str | Path, cls: type) -> Any:
    """Read a YAML or JSON config file into ``cls`` strictly. Relative paths in its path
    fields are relative to the file's folder, so that the file works from any working
    directory; errors name the file."""
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
    try:
        return dataclass_from_dict(cls, data, relative_to=path.resolve().parent)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
