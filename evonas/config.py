"""Genome configs: TOML files naming the space, strategy, fitness and search settings.

Everything is validated on load; an error is a :class:`ConfigError` whose one-line message names the file,
the key and the value. Relative paths resolve against the config file's folder.
"""

from __future__ import annotations

import difflib
import inspect
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import evonas.fitness  # noqa: F401  (registers the fitness kinds and their config sections)
from evonas.backends import BACKENDS, POOLS, PROCESS_BACKENDS
from evonas.registry import (EXTRA_SECTIONS, FITNESS_KINDS, REQUIRED, ConfigError, check_keys, config_section,
                             fitness_kind, show)
from evonas.spaces import SPACES, SearchSpace, make_space
from evonas.strategies import STRATEGIES, Strategy, make_strategy, strategy_class
from evonas.trial import GOALS, Objective

__all__ = ["ConfigError", "RunConfig", "load_config", "parse_config", "check_search", "REQUIRED", "FITNESS_KINDS",
           "EXTRA_SECTIONS", "fitness_kind", "config_section"]

#: key -> (accepted types, default; ``REQUIRED`` when it must be given)
_SEARCH_KEYS: dict[str, tuple[tuple[type, ...], Any]] = {
    "budget": ((int,), 100),
    "seed": ((int,), 0),
    "jobs": ((int,), 1),
    "batch_size": ((int,), 1),
    "backend": ((str,), "loky"),
    "out": ((str,), ""),
    # durable runs and scale-out (evonas.search, evonas.evaluator, evonas.backends)
    "address": ((str,), ""),
    "mode": ((str,), "batch"),
    "time_limit": ((int, float), 0),
    "retries": ((int,), 0),
    "max_consecutive_failures": ((int,), 0),
    "isolate": ((bool,), True),
    "cache": ((bool,), False),
    "cache_db": ((str,), ""),
}
_FITNESS_COMMON: dict[str, tuple[tuple[type, ...], Any]] = {
    "kind": ((str,), REQUIRED),
    "objectives": ((list, str), REQUIRED),
    "report": ((list, str), []),
}
@dataclass
class RunConfig:
    """A validated genome config."""

    path: Path | None
    space: dict[str, Any]
    strategy: dict[str, Any]
    fitness: dict[str, Any]
    search: dict[str, Any]
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    @property
    def objectives(self) -> list[Objective]:
        return [Objective.parse(o) for o in _as_list(self.fitness["objectives"])]

    @property
    def report(self) -> list[str]:
        return [str(r) for r in _as_list(self.fitness.get("report", []))]

    def where(self) -> str:
        return str(self.path) if self.path else "<config>"

    def error(self, section: str, key: str, value: Any, reason: str) -> ConfigError:
        """A :class:`ConfigError` naming this file, ``[section] key`` and ``value``."""
        return ConfigError(f"{self.where()}: [{section}] {key} = {show(value)}: {reason}")

    def section(self, name: str) -> Any:
        """The validated value of the registered section ``[name]`` (its defaults when the file omits it)."""
        if name not in self.extra:
            self.extra[name] = EXTRA_SECTIONS[name](self.raw.get(name, {}), self)
        return self.extra[name]

    def resolve(self, path: str | Path) -> Path:
        """A path from the config, relative to the config's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    # --- building the parts -----------------------------------------------------------------------------
    def build_space(self) -> SearchSpace:
        params = {k: v for k, v in self.space.items() if k != "name"}
        try:
            return make_space(self.space["name"], **params)
        except ValueError as err:
            key, value = _blame(str(err), params, "name", self.space["name"])
            raise self.error("space", key, value, str(err)) from None

    def build_strategy(self, space: SearchSpace) -> Strategy:
        params = {k: v for k, v in self.strategy.items() if k != "name"}
        try:
            for key in strategy_class(self.strategy["name"]).path_params:
                if isinstance(params.get(key), str):
                    params[key] = str(self.resolve(params[key]))  # file paths are relative to the config file
            return make_strategy(self.strategy["name"], space, self.objectives, self.search["seed"], **params)
        except ValueError as err:
            key, value = _blame(str(err), params, "name", self.strategy["name"])
            raise self.error("strategy", key, value, str(err)) from None

    def build_fitness(self, space: SearchSpace | None = None) -> Any:
        _, builder = FITNESS_KINDS[self.fitness["kind"]]
        return builder(self, self.fitness, space if space is not None else self.build_space())

    def metric_columns(self) -> list[str]:
        """Every metric the fitness must return: objectives, then report metrics."""
        return list(dict.fromkeys([o.metric for o in self.objectives] + self.report))




def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _blame(message: str, params: Mapping[str, Any], default_key: str, default_value: Any) -> tuple[str, Any]:
    """The parameter a constructor's ``"key: reason"`` message is about."""
    key = message.split(":", 1)[0].strip()
    return (key, params[key]) if key in params else (default_key, default_value)


def _check_params(where: str, section: str, name: str, registry: Mapping[str, type],
                  params: Mapping[str, Any], kind: str) -> None:
    """Reject a name not in ``registry`` (unless ``module:Class``) and keys its constructor does not take."""
    if name not in registry:
        if ":" in name:
            return
        close = difflib.get_close_matches(name, list(registry), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(registry))}"
        raise ConfigError(f"{where}: [{section}] name = {show(name)}: unknown {kind}{hint}")
    cls = registry[name]
    allowed: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            sig = inspect.signature(klass.__init__)
            allowed |= {p for p in sig.parameters if p not in ("self", "space", "objectives", "random_state")
                        and sig.parameters[p].kind not in (inspect.Parameter.VAR_KEYWORD,
                                                           inspect.Parameter.VAR_POSITIONAL)}
    for key, value in params.items():
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; {name} takes: {', '.join(sorted(allowed))}"
            raise ConfigError(f"{where}: [{section}] {key} = {show(value)}: unknown key{hint}")
        expected = _expected_type(cls, key)
        if expected is not None and not _has_type(value, expected):
            raise ConfigError(f"{where}: [{section}] {key} = {show(value)}: expected {_TYPE_NAMES[expected]}")


_TYPE_NAMES = {bool: "true/false", int: "an integer", float: "a number", str: "a string", list: "a list"}


def _expected_type(cls: type, key: str) -> type | None:
    """The type of a constructor parameter's default (bool, int, float, str, list), if it has one."""
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            param = inspect.signature(klass.__init__).parameters.get(key)
            if param is not None and param.default is not inspect.Parameter.empty:
                default = param.default
                for t in (bool, int, float, str):
                    if type(default) is t:
                        return t
                return list if isinstance(default, (list, tuple)) else None
    return None


def _has_type(value: Any, expected: type) -> bool:
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _check_objectives(where: str, fitness: Mapping[str, Any]) -> None:
    items = _as_list(fitness["objectives"])
    if not items:
        raise ConfigError(f"{where}: [fitness] objectives = []: need at least one objective")
    for item in items:
        if isinstance(item, dict):
            if set(item) - {"metric", "goal"} or "metric" not in item:
                raise ConfigError(f"{where}: [fitness] objectives = {show(item)}: expected "
                                  "{metric = \"...\", goal = \"max\"|\"min\"}")
            if item.get("goal", "max") not in GOALS:
                raise ConfigError(f"{where}: [fitness] objectives.goal = {show(item['goal'])}: "
                                  "expected 'max' or 'min'")
        elif not isinstance(item, str) or not item:
            raise ConfigError(f"{where}: [fitness] objectives = {show(item)}: expected a metric name")
        elif ":" in item and item.split(":", 1)[0] not in GOALS:
            raise ConfigError(f"{where}: [fitness] objectives = {show(item)}: prefix must be 'max:' or 'min:'")


def check_search(where: str, search: Mapping[str, Any]) -> None:
    """Values of the [search] keys for running (backend, mode, failures, cache); also used for command-line
    overrides."""
    from evonas.search import MODES

    def bad(key: str, reason: str) -> ConfigError:
        return ConfigError(f"{where}: [search] {key} = {show(search[key])}: {reason}")

    if search["backend"] not in BACKENDS:
        close = difflib.get_close_matches(search["backend"], BACKENDS, n=1)
        raise bad("backend", f"unknown backend{'; did you mean ' + repr(close[0]) + '?' if close else ''} "
                             f"(known: {', '.join(BACKENDS)})")
    if search["seed"] < 0:
        raise bad("seed", "must be >= 0")
    if search["mode"] not in MODES:
        raise bad("mode", f"expected one of {', '.join(map(repr, MODES))}")
    if search["address"] and not POOLS[search["backend"]].remote:
        remote = " or ".join(repr(n) for n, cls in POOLS.items() if cls.remote)
        raise bad("address", f"a scheduler address needs backend {remote}, not {search['backend']!r}")
    for key in ("time_limit", "retries", "max_consecutive_failures"):
        if search[key] < 0:
            raise bad(key, "must be >= 0 (0: " + ("no limit)" if key != "retries" else "no retry)"))
    from evonas.evaluator import MAX_TIME_LIMIT

    if not 0 <= search["time_limit"] <= MAX_TIME_LIMIT:  # NaN and infinities fail here too
        raise bad("time_limit", f"must be between 0 (no limit) and {MAX_TIME_LIMIT:g} seconds")
    if search["time_limit"] and not search["isolate"]:
        raise bad("time_limit", "a time limit needs isolate = true (it is enforced by killing the "
                                "evaluation's process)")
    if search["isolate"] and search["backend"] not in PROCESS_BACKENDS:
        raise bad("backend", f"runs evaluations in the main process; set isolate = false (no time limit) or "
                             f"use {', '.join(PROCESS_BACKENDS)}")
    if search["cache_db"] and not search["cache"]:
        raise bad("cache_db", "set cache = true to use a cache")


def parse_config(data: Mapping[str, Any], path: Path | None = None) -> RunConfig:
    """Validate a parsed TOML document."""
    where = str(path) if path else "<config>"
    if not data:
        raise ConfigError(f"{where}: config is empty (need [space], [strategy], [fitness], [search])")
    known = {"space", "strategy", "fitness", "search", *EXTRA_SECTIONS}
    for section, value in data.items():
        if section not in known:
            close = difflib.get_close_matches(section, sorted(known), n=1)
            hint = f"; did you mean [{close[0]}]?" if close else f"; known sections: {', '.join(sorted(known))}"
            raise ConfigError(f"{where}: [{section}]: unknown section{hint}")
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {section} = {show(value)}: expected a [{section}] table")
    for section in ("space", "fitness"):
        if section not in data:
            raise ConfigError(f"{where}: [{section}]: missing section")
    space = dict(data["space"])
    space.setdefault("name", "nb201")
    _check_params(where, "space", str(space["name"]), SPACES, {k: v for k, v in space.items() if k != "name"},
                  "space")
    strategy = dict(data.get("strategy", {}))
    strategy.setdefault("name", "rea")
    _check_params(where, "strategy", str(strategy["name"]), STRATEGIES,
                  {k: v for k, v in strategy.items() if k != "name"}, "strategy")
    search = check_keys(where, "search", data.get("search", {}), _SEARCH_KEYS)
    for key in ("budget", "batch_size"):
        if search[key] < 1:
            raise ConfigError(f"{where}: [search] {key} = {search[key]}: must be >= 1")
    if search["jobs"] == 0 or search["jobs"] < -1:
        raise ConfigError(f"{where}: [search] jobs = {search['jobs']}: must be >= 1 (or -1 for all cores)")
    check_search(where, search)
    raw_fitness = dict(data["fitness"])
    kind = raw_fitness.get("kind")
    if kind not in FITNESS_KINDS:
        close = difflib.get_close_matches(str(kind), list(FITNESS_KINDS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known kinds: {', '.join(sorted(FITNESS_KINDS))}"
        raise ConfigError(f"{where}: [fitness] kind = {show(kind)}: unknown fitness kind{hint}")
    keys, _ = FITNESS_KINDS[kind]
    fitness = check_keys(where, "fitness", raw_fitness, {**_FITNESS_COMMON, **keys})
    _check_objectives(where, fitness)
    cfg = RunConfig(path, space, strategy, fitness, search, raw=dict(data))
    for section, validate in EXTRA_SECTIONS.items():
        if section in data:
            cfg.extra[section] = validate(data[section], cfg)
    cfg.build_space()  # unknown ops and bad space parameters fail here, at load time
    return cfg


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a genome config file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a TOML config (not UTF-8 text: {err.reason} at byte {err.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: TOML syntax error: {err}") from None
    except RecursionError:
        raise ConfigError(f"{path}: TOML nested too deeply to be a genome config") from None
    return parse_config(data, path)
