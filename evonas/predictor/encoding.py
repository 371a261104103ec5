"""Architectures as predictor inputs, and tasks as (inputs, targets) pairs read from a table."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evonas.genome import Genome
from evonas.spaces import SearchSpace, make_space


class ArchEncoder:
    """The space's fixed-length encoding (one-hot op per edge for cell spaces) of strings or genomes."""

    def __init__(self, space: SearchSpace | str = "nb201"):
        self.space = make_space(space) if isinstance(space, str) else space

    @property
    def n_features(self) -> int:
        return self.space.encoding_size

    def transform(self, archs: Iterable[str | Genome | Sequence[int]]) -> np.ndarray:
        """Rows of float32 encodings; raises ``ValueError`` naming an architecture the space rejects."""
        rows = []
        for a in archs:
            genome = self.space.from_string(a) if isinstance(a, str) else a
            if not isinstance(a, str) and not self.space.is_valid(genome):
                raise ValueError(f"genome {list(a)!r} is not valid in space {self.space.name!r}")
            rows.append(self.space.encode(genome))
        if not rows:
            return np.zeros((0, self.n_features), dtype=np.float32)
        return np.stack(rows).astype(np.float32)


@dataclass(frozen=True)
class TaskSpec:
    """A metric column to rank by: ``"col"`` / ``"max:col"`` (higher is better) or ``"min:col"``."""

    column: str
    sign: float = 1.0

    @classmethod
    def parse(cls, text: str) -> "TaskSpec":
        text = text.strip()
        goal, sep, col = text.partition(":")
        if not sep:
            return cls(goal, 1.0)
        if goal not in ("max", "min") or not col:
            raise ValueError(f"task {text!r}: expected COLUMN, max:COLUMN or min:COLUMN")
        return cls(col, 1.0 if goal == "max" else -1.0)

    @property
    def name(self) -> str:
        return self.column if self.sign > 0 else f"min:{self.column}"


@dataclass
class Task:
    """One task's observations: ``X`` encodings, ``y`` scores (higher is better), ``archs`` strings."""

    name: str
    X: np.ndarray
    y: np.ndarray
    archs: list[str]


def parse_tasks(specs: str | Sequence[str]) -> list[TaskSpec]:
    """``"a,b,min:c"`` or a list of such items; rejects an empty list and duplicates."""
    items = [s for part in ([specs] if isinstance(specs, str) else specs) for s in str(part).split(",")]
    items = [s.strip() for s in items if s.strip()]
    if not items:
        raise ValueError("tasks: need at least one COLUMN")
    out = [TaskSpec.parse(s) for s in items]
    names = [t.name for t in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"tasks: duplicate task {sorted(dup)[0]!r}")
    return out


def table_tasks(table_path: str | Path, specs: str | Sequence[str], space: SearchSpace | str = "nb201") -> list[Task]:
    """Each task spec as a :class:`Task` over the table's rows (rows whose value is not finite dropped)."""
    from evonas.fitness.table import load_table

    table = load_table(table_path)
    parsed = parse_tasks(specs)
    table.check_columns([t.column for t in parsed])
    X_all = encode_table(table_path, space)
    tasks = []
    for spec in parsed:
        values = table.column(spec.column) * spec.sign
        keep = np.isfinite(values)
        if keep.sum() < 2:
            raise ValueError(f"task {spec.name!r}: fewer than 2 finite values in {table.path}")
        tasks.append(Task(spec.name, X_all[keep], values[keep].astype(np.float64),
                          [a for a, k in zip(table.archs, keep) if k]))
    return tasks


_ENCODED: dict[tuple, np.ndarray] = {}


def encode_table(table_path: str | Path, space: SearchSpace | str = "nb201") -> np.ndarray:
    """Encodings of every row of a table (memoised per table file and space)."""
    from evonas.fitness.table import load_table

    table = load_table(table_path)
    encoder = ArchEncoder(space)
    key = (str(table.path.resolve()), table.path.stat().st_mtime, repr(sorted(encoder.space.describe().items())))
    if key not in _ENCODED:
        try:
            _ENCODED[key] = encoder.transform(table.archs)
        except ValueError as err:
            raise ValueError(f"{table.path}: {err}") from None
    return _ENCODED[key]
