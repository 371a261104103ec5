"""Leaderboard replay (``replay``): evaluate another task's best architectures in its order, nothing learned.

The baseline a meta-learned prior must beat: read a table (``leaderboard``, a CSV like the NAS-Bench-201 one),
sort its rows by ``column`` (``goal`` ``"max"``: highest first), and propose them in that order, skipping
architectures whose canonical hash was already proposed. The seed plays no part. When the leaderboard is
exhausted the proposals are random.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from evonas.genome import Genome
from evonas.strategies.base import Strategy, register_strategy


@register_strategy
class LeaderboardReplay(Strategy):
    """Another task's leaderboard, best first (see the module docstring)."""

    name = "replay"
    path_params = ("leaderboard",)

    def __init__(self, space, objectives, random_state=None, leaderboard: str | Path | None = None,
                 column: str | None = None, goal: str = "max", **kwargs: Any):
        super().__init__(space, objectives, random_state, **kwargs)
        from evonas.fitness.table import load_table

        if leaderboard is None or column is None:
            raise ValueError("replay: needs leaderboard (a table file) and column (the metric to order it by)")
        if goal not in ("max", "min"):
            raise ValueError(f"goal: must be 'max' or 'min', got {goal!r}")
        try:
            t = load_table(leaderboard)
            t.check_columns([column])
        except (OSError, ValueError) as err:
            raise ValueError(f"leaderboard: {err}") from None
        values = np.asarray(t.column(column), float)
        values = np.where(np.isfinite(values), values, -np.inf if goal == "max" else np.inf)
        order = np.argsort(-values if goal == "max" else values, kind="stable")
        self.leaderboard, self.column, self.goal = str(leaderboard), column, goal
        self.order = [t.archs[i] for i in order]
        self.position = 0

    def _next(self, pending: set[str]) -> Genome:
        while self.position < len(self.order):
            genome = self.space.from_string(self.order[self.position])
            self.position += 1
            h = self.space.canonical_hash(genome)
            if h not in self.seen and h not in pending:
                pending.add(h)
                return genome
        return self.fresh(self.toolbox.individual, pending)

    def ask(self, n: int) -> list[Genome]:
        pending: set[str] = set()
        return [self._next(pending) for _ in range(n)]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.position = int(state["position"])
