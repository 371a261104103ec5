"""What a genome config may name: fitness kinds and extra sections, registered by the modules that own them.

A leaf module (it imports nothing of evonas), so a fitness kind in :mod:`evonas.fitness` registers itself
without importing :mod:`evonas.config`. The packages :mod:`evonas.fitness`, :mod:`evonas.strategies` and
:mod:`evonas.spaces` import all their modules (:func:`import_submodules`), so a new kind, strategy or
space is one new file there:

    @fitness_kind("mykind", {"path": ((str,), REQUIRED)})
    def build(cfg, section, space) -> Fitness: ...

    @config_section("mysection")
    def validate(section, cfg) -> Any: ...   # the value lands in cfg.extra["mysection"]

Builders and validators receive the :class:`evonas.config.RunConfig`; errors are ``cfg.error(...)``, a
:class:`ConfigError` whose one-line message names the file, key and value.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from typing import Any

#: key -> (accepted types, default; :data:`REQUIRED` when it must be given)
Schema = Mapping[str, tuple[tuple[type, ...], Any]]
REQUIRED = object()

#: fitness kind -> its own ``[fitness]`` keys (besides kind/objectives/report) and its builder
FITNESS_KINDS: dict[str, tuple[Schema, Callable[..., Any]]] = {}
#: config sections besides the core ones -> their validator ``(section, cfg) -> value``
EXTRA_SECTIONS: dict[str, Callable[[Mapping[str, Any], Any], Any]] = {}


class ConfigError(ValueError):
    """A config that cannot run; the message is one line naming file, key and value."""


def fitness_kind(name: str, keys: Schema):
    """Register a fitness kind: ``builder(cfg: RunConfig, section: dict, space) -> Fitness``."""

    def register(builder: Callable[..., Any]) -> Callable[..., Any]:
        FITNESS_KINDS[name] = (keys, builder)
        return builder

    return register


def config_section(name: str):
    """Register the validator of a config section ``[name]``: ``validate(section, cfg) -> value``."""

    def register(validate: Callable[..., Any]) -> Callable[..., Any]:
        EXTRA_SECTIONS[name] = validate
        return validate

    return register


def import_submodules(package: str, path: Iterable[str]) -> None:
    """Import every module of a package (its ``__path__``): each registers what it defines, so a new
    strategy, space or fitness kind is one new file."""
    for info in sorted(pkgutil.iter_modules(path), key=lambda i: i.name):
        importlib.import_module(f"{package}.{info.name}")


def show(value: Any) -> str:
    """``repr(value)``, cut to 80 characters (for one-line errors)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_TYPE_WORDS = {list: "a list", int: "an integer", str: "a string", float: "a number", bool: "true/false",
               dict: "a table"}


def check_keys(where: str, section: str, data: Mapping[str, Any], schema: Schema) -> dict[str, Any]:
    """Validate ``data`` against ``schema``; returns it with defaults filled in."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(schema))}"
            raise ConfigError(f"{where}: [{section}] {key} = {show(value)}: unknown key{hint}")
        types, _ = schema[key]
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            names = " or ".join(_TYPE_WORDS[t] for t in types)
            raise ConfigError(f"{where}: [{section}] {key} = {show(value)}: expected {names}")
        out[key] = value
    for key, (_, default) in schema.items():
        if key not in out:
            if default is REQUIRED:
                raise ConfigError(f"{where}: [{section}] {key}: missing (required)")
            out[key] = default
    return out
