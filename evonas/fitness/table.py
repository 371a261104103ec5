"""Fitness by lookup in a NAS-Bench-style table: a CSV with an ``arch`` column and metric columns."""

from __future__ import annotations

import csv
import difflib
import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from evonas.fitness.base import Architecture, EvalContext, EvalResult, Fitness
from evonas.registry import REQUIRED, fitness_kind


class TableError(ValueError):
    """A table that cannot serve a search: missing file, column or architecture."""


class Table:
    """An in-memory metric table keyed by architecture string."""

    def __init__(self, path: str | Path, arch_column: str = "arch"):
        self.path = Path(path)
        _check_file(self.path)
        try:
            with self.path.open(newline="", encoding="utf-8-sig") as fh:  # a BOM before the header is not data
                reader = csv.reader(fh)
                header, rows = self._read(reader, arch_column)
        except UnicodeDecodeError as err:
            utf16 = self.path.read_bytes()[:2] in (b"\xff\xfe", b"\xfe\xff")
            raise TableError(f"{self.path}: not UTF-8 text ({'a UTF-16 file' if utf16 else err.reason} at byte "
                             f"{err.start}); save the table as UTF-8 CSV") from None
        except csv.Error as err:
            raise TableError(f"{self.path}: line {reader.line_num}: not a readable CSV table ({err})") from None
        a = header.index(arch_column)
        self.columns = [c for i, c in enumerate(header) if i != a]
        self.archs = [row[a] for row in rows]
        values = [[_to_float(v) for i, v in enumerate(row) if i != a] for row in rows]
        self.values = np.asarray(values, dtype=np.float64).reshape(len(self.archs), len(self.columns))
        self.row_of = {arch: i for i, arch in enumerate(self.archs)}
        self._col = {c: i for i, c in enumerate(self.columns)}

    def _read(self, reader, arch_column: str) -> tuple[list[str], list[list[str]]]:
        header = next(reader, None)
        if not header:
            raise TableError(f"{self.path}: table is empty")
        if arch_column not in header:
            raise TableError(f"{self.path}: no {arch_column!r} column (columns: {', '.join(header)})")
        seen: dict[str, int] = {}
        for i, name in enumerate(header):
            if name in seen:
                raise TableError(f"{self.path}: column {name!r} appears twice (columns {seen[name] + 1} and "
                                 f"{i + 1}); a table needs one value per metric")
            seen[name] = i
        a = header.index(arch_column)
        rows, first = [], {}
        for row in reader:
            line = reader.line_num
            if len(row) != len(header):
                raise TableError(f"{self.path}: line {line} has {len(row)} fields, header has {len(header)}")
            if row[a] in first:
                raise TableError(f"{self.path}: architecture {row[a][:80]!r} on lines {first[row[a]]} and {line}; "
                                 "a table needs one row per architecture")
            first[row[a]] = line
            rows.append(row)
        if not rows:
            raise TableError(f"{self.path}: table has a header but no rows")
        return header, rows

    def check_columns(self, names: Sequence[str]) -> None:
        """Raise :class:`TableError` naming the first column that the table lacks."""
        for name in names:
            if name not in self._col:
                close = difflib.get_close_matches(name, self.columns, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise TableError(f"{self.path}: no column {name!r}{hint}")

    def column(self, name: str) -> np.ndarray:
        """All values of one metric column, in row order."""
        self.check_columns([name])
        return self.values[:, self._col[name]]

    def lookup(self, arch: str, names: Sequence[str]) -> dict[str, float] | None:
        """Metrics of ``arch``, or ``None`` when the table does not hold it."""
        row = self.row_of.get(arch)
        if row is None:
            return None
        return {n: float(self.values[row, self._col[n]]) for n in names}

    def __len__(self) -> int:
        return len(self.archs)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise TableError(f"{path}: table file not found")
    if not path.is_file():
        raise TableError(f"{path}: not a regular file (a table is a CSV file)")


def _to_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


@lru_cache(maxsize=8)
def _load(path: str, mtime: float, arch_column: str) -> Table:
    return Table(path, arch_column)


def load_table(path: str | Path, arch_column: str = "arch") -> Table:
    """Load a table once per process (reloaded when the file changes)."""
    p = Path(path).resolve()
    _check_file(p)
    return _load(str(p), p.stat().st_mtime, arch_column)


class TableFitness(Fitness):
    """Looks up ``columns`` (objectives and report metrics) of each architecture in a table.

    ``cost``: the seconds one evaluation would take, a column of the table (e.g. a training-time column) or a
    number for every architecture; it becomes the trial's ``elapsed_s``, so the ``simulated`` backend
    (:class:`evonas.backends.SimulatedPool`) replays a search on its virtual clock as if each lookup
    trained the network. ``None``: the lookup's own (tiny) wall time.

    An architecture missing from the table is a failed evaluation, not an error.
    """

    inline = True

    def __init__(self, path: str | Path, columns: Sequence[str], arch_column: str = "arch",
                 cost: str | float | None = None):
        self.path = Path(path)
        self.columns = list(dict.fromkeys(columns))
        self.arch_column = arch_column
        if isinstance(cost, bool) or not (cost is None or isinstance(cost, (str, int, float))):
            raise TableError(f"cost: expected a column name or seconds, got {cost!r}")
        if isinstance(cost, (int, float)) and not (math.isfinite(cost) and cost >= 0):
            raise TableError(f"cost: must be >= 0 seconds, got {cost!r}")
        self.cost = cost if cost != "" else None
        self._table: Table | None = load_table(self.path, arch_column)
        self._table.check_columns(self.columns + ([self.cost] if isinstance(self.cost, str) else []))

    @property
    def table(self) -> Table:
        if self._table is None:  # after unpickling in a worker
            self._table = load_table(self.path, self.arch_column)
        return self._table

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_table": None}  # workers reload the file instead of receiving it

    def __call__(self, arch: Architecture, ctx: EvalContext) -> EvalResult:
        metrics = self.table.lookup(arch.string, self.columns)
        if metrics is None:
            return EvalResult.failed(f"architecture {arch.string!r} not in table {self.path.name}")
        if self.cost is None:
            return EvalResult(metrics)
        seconds = self.table.lookup(arch.string, [self.cost])[self.cost] if isinstance(self.cost, str) \
            else float(self.cost)
        return EvalResult(metrics, elapsed_s=seconds if math.isfinite(seconds) else 0.0)


@fitness_kind("table", {"table": ((str,), REQUIRED), "arch_column": ((str,), "arch"),
                        "cost": ((str, int, float), "")})
def build_table_fitness(cfg, section: Mapping[str, Any], space) -> TableFitness:
    """The ``table`` kind: ``table`` (CSV path, relative to the config), ``arch_column``, ``cost``."""
    cost = section.get("cost")
    columns = cfg.metric_columns() + ([cost] if isinstance(cost, str) and cost else [])
    path = cfg.resolve(section["table"])
    arch_column = section.get("arch_column", "arch")
    try:
        return TableFitness(path, columns, arch_column=arch_column, cost=section.get("cost") or None)
    except TableError as err:
        key, value = "table", section["table"]  # the file itself: unreadable, empty, duplicates
        if ": no column " in str(err):
            key, value = "objectives/report", columns
        if f"no {arch_column!r} column" in str(err):
            key, value = "arch_column", arch_column
        elif str(err).startswith("cost:") or f"no column {section.get('cost')!r}" in str(err):
            key, value = "cost", section.get("cost")
        raise cfg.error("fitness", key, value, str(err).removeprefix("cost: ")) from None
