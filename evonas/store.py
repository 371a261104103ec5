"""Where a search records its trials and its strategy's state (the seam for durable stores)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from evonas.trial import Trial


class Store(ABC):
    """Record of a run: metadata, every trial as it completes, and the strategy's latest state."""

    #: whether the search should hand over strategy state after each batch (stores that can resume)
    durable: bool = True

    @abstractmethod
    def set_meta(self, meta: dict[str, Any]) -> None:
        """Store run metadata (config snapshot, seed, space description...)."""

    @abstractmethod
    def meta(self) -> dict[str, Any]:
        """The stored metadata."""

    @abstractmethod
    def add_trials(self, trials: Sequence[Trial]) -> None:
        """Append completed trials."""

    @abstractmethod
    def trials(self) -> list[Trial]:
        """All trials, ordered by step."""

    @abstractmethod
    def save_state(self, n_trials: int, state: dict[str, Any]) -> None:
        """Save the strategy state reached after ``n_trials`` trials."""

    @abstractmethod
    def load_state(self) -> tuple[int, dict[str, Any]] | None:
        """The latest ``(n_trials, state)``, or ``None``."""


class MemoryStore(Store):
    """Keeps everything in memory; the default for API use and benchmarks."""

    durable = False

    def __init__(self):
        self._meta: dict[str, Any] = {}
        self._trials: list[Trial] = []
        self._state: tuple[int, dict[str, Any]] | None = None

    def set_meta(self, meta: dict[str, Any]) -> None:
        self._meta = dict(meta)

    def meta(self) -> dict[str, Any]:
        return dict(self._meta)

    def add_trials(self, trials: Sequence[Trial]) -> None:
        self._trials.extend(trials)

    def trials(self) -> list[Trial]:
        return list(self._trials)

    def save_state(self, n_trials: int, state: dict[str, Any]) -> None:
        self._state = (n_trials, state)

    def load_state(self) -> tuple[int, dict[str, Any]] | None:
        return self._state
