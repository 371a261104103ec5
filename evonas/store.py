"""Where a search records its trials and its strategy's state (the seam for durable stores).

:class:`MemoryStore` keeps everything in memory (API use, benchmarks). :class:`SQLiteStore` is the
durable store of a run directory: one SQLite file (stdlib ``sqlite3``, WAL journal) holding the run's
metadata and config snapshot, every evaluation as it is dispatched and as it completes, and the search
state (strategy state plus the evaluations in flight) after each ask and each batch. Only the main
process writes; workers return :class:`~evonas.trial.Trial` objects. ``history.csv`` and
``summary.json`` are exports of it (:mod:`evonas.results`).

Schema (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`)::

    meta(key TEXT PRIMARY KEY, value TEXT)            -- JSON values: config snapshot, seed, status, ...
    evaluations(key INTEGER PRIMARY KEY, arch, canonical_hash, genes, status, reason, metrics, error,
                seed, elapsed_s, worker, attempts, cached, dispatched_at, finished_at, cache_source)
                                                      -- status: running | ok | failed; cache_source: the
                                                      -- store whose result a cached trial reused (v2)
    state(id INTEGER PRIMARY KEY CHECK (id = 1), n_told, state, saved_at)
                                                      -- the latest search state (JSON)
    cache(fitness_id, canonical_hash, metrics, elapsed_s, source, created_at,
          PRIMARY KEY (fitness_id, canonical_hash))   -- successful results, reusable across runs
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evonas.trial import Trial

SCHEMA_VERSION = 2
#: the store file inside a run directory
STORE_NAME = "run.db"
RUNNING = "running"


@dataclass(frozen=True)
class Dispatch:
    """An evaluation the search has asked for: its key (= step), genes, architecture and hash."""

    key: int
    genes: tuple[int, ...]
    arch: str
    canonical_hash: str

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "genes": list(self.genes), "arch": self.arch, "hash": self.canonical_hash}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Dispatch":
        return cls(int(d["key"]), tuple(int(g) for g in d["genes"]), str(d["arch"]), str(d["hash"]))


class Store(ABC):
    """Record of a run: metadata, every trial as it completes, the search's latest state, and a cache of
    results by (fitness identity, canonical hash).

    The whole contract :class:`evonas.search.Search` uses is declared here; :class:`MemoryStore` and
    :class:`SQLiteStore` implement all of it.
    """

    #: whether the search should hand over its state (stores that can resume)
    durable: bool = True
    #: the file this store lives in (``None``: in memory); cached results name it as their source
    path: Path | None = None

    @abstractmethod
    def set_meta(self, meta: dict[str, Any]) -> None:
        """Store (merge) run metadata (config snapshot, seed, space description...)."""

    @abstractmethod
    def meta(self) -> dict[str, Any]:
        """The stored metadata."""

    @abstractmethod
    def add_trials(self, trials: Sequence[Trial]) -> None:
        """Record completed trials (replacing their in-flight records)."""

    @abstractmethod
    def trials(self) -> list[Trial]:
        """All completed trials, ordered by step."""

    @abstractmethod
    def trial(self, key: int) -> Trial | None:
        """The completed trial of evaluation ``key``, if any."""

    @abstractmethod
    def discard_from(self, key: int) -> int:
        """Delete evaluations with key >= ``key`` (a resumed run redoes them); returns how many."""

    @abstractmethod
    def save_state(self, n_trials: int, state: dict[str, Any]) -> None:
        """Save the search state reached after ``n_trials`` trials were told to the strategy."""

    @abstractmethod
    def load_state(self) -> tuple[int, dict[str, Any]] | None:
        """The latest ``(n_trials, state)``, or ``None``."""

    @abstractmethod
    def cache_get(self, fitness_id: str, canonical_hash: str) -> tuple[dict[str, float], float] | None:
        """``(metrics, elapsed_s)`` of a successful evaluation of this architecture under this fitness."""

    def cache_entry(self, fitness_id: str, canonical_hash: str) -> tuple[dict[str, float], float, str] | None:
        """``(metrics, elapsed_s, source)``: :meth:`cache_get` and the store of the run that computed it
        (``""`` when the store does not record it)."""
        hit = self.cache_get(fitness_id, canonical_hash)
        return (*hit, "") if hit is not None else None

    @abstractmethod
    def cache_put(self, fitness_id: str, trials: Iterable[Trial], source: str = "") -> None:
        """Remember the successful, not-cached ``trials`` under ``fitness_id`` (first result kept)."""

    def record_dispatch(self, dispatches: Sequence[Dispatch], seeds: Sequence[int] = ()) -> None:
        """Note evaluations sent to workers (in flight until :meth:`add_trials` records them); a no-op for
        stores that do not track them."""

    def checkpoint(self, n_trials: int, state: dict[str, Any], dispatches: Sequence[Dispatch] = (),
                   seeds: Sequence[int] = ()) -> None:
        """:meth:`record_dispatch` and :meth:`save_state` in one transaction."""
        if dispatches:
            self.record_dispatch(dispatches, seeds)
        self.save_state(n_trials, state)

    def close(self) -> None:
        """Release the store's resources."""


class MemoryStore(Store):
    """Keeps everything in memory; the default for API use and benchmarks."""

    durable = False

    def __init__(self):
        self._meta: dict[str, Any] = {}
        self._trials: list[Trial] = []
        self._state: tuple[int, dict[str, Any]] | None = None
        self._cache: dict[tuple[str, str], tuple[dict[str, float], float]] = {}

    def set_meta(self, meta: dict[str, Any]) -> None:
        self._meta.update(meta)

    def meta(self) -> dict[str, Any]:
        return dict(self._meta)

    def add_trials(self, trials: Sequence[Trial]) -> None:
        self._trials.extend(trials)
        if any(a.step > b.step for a, b in zip(self._trials, self._trials[1:])):
            self._trials.sort(key=lambda t: t.step)

    def trials(self) -> list[Trial]:
        return list(self._trials)

    def trial(self, key: int) -> Trial | None:
        return next((t for t in reversed(self._trials) if t.step == key), None)

    def discard_from(self, key: int) -> int:
        kept = [t for t in self._trials if t.step < key]
        n = len(self._trials) - len(kept)
        self._trials = kept
        return n

    def save_state(self, n_trials: int, state: dict[str, Any]) -> None:
        self._state = (n_trials, state)

    def load_state(self) -> tuple[int, dict[str, Any]] | None:
        return self._state

    def cache_get(self, fitness_id: str, canonical_hash: str) -> tuple[dict[str, float], float] | None:
        hit = self._cache.get((fitness_id, canonical_hash))
        return (dict(hit[0]), hit[1]) if hit else None

    def cache_put(self, fitness_id: str, trials: Iterable[Trial], source: str = "") -> None:
        for t in trials:
            if t.ok and not t.cached:
                self._cache.setdefault((fitness_id, t.canonical_hash), (dict(t.metrics), t.elapsed_s))


class StoreError(RuntimeError):
    """A store file that cannot be used (newer schema, not an evonas store, locked)."""


class StoreFileError(StoreError, sqlite3.DatabaseError):
    """An SQLite error on a store's file (corrupt pages, full disk, read-only storage), naming the file."""


def _naming_the_file(method):
    """``method`` of a cursor, its SQLite errors turned into :class:`StoreFileError` naming the file."""
    def wrapped(self, *args):
        try:
            return method(self, *args)
        except sqlite3.Error as err:
            raise StoreFileError(f"{self.connection.path}: {err}") from None
    return wrapped


class _Cursor(sqlite3.Cursor):
    """A cursor whose SQLite errors name the store's file (:class:`StoreFileError`)."""

    execute = _naming_the_file(sqlite3.Cursor.execute)
    executemany = _naming_the_file(sqlite3.Cursor.executemany)
    fetchone = _naming_the_file(sqlite3.Cursor.fetchone)
    fetchall = _naming_the_file(sqlite3.Cursor.fetchall)
    __next__ = _naming_the_file(sqlite3.Cursor.__next__)


class _Connection(sqlite3.Connection):
    """A connection to a store's file whose errors name the file."""

    path = ""

    def execute(self, *args):
        return self.cursor(_Cursor).execute(*args)

    def executemany(self, *args):
        return self.cursor(_Cursor).executemany(*args)


def _connect(path: Path, **kwargs: Any) -> _Connection:
    try:
        conn = sqlite3.connect(str(path), factory=_Connection, **kwargs)
    except sqlite3.Error as err:
        raise StoreFileError(f"{path}: cannot open the store ({err})") from None
    conn.path = str(path)
    return conn


_SCHEMA = [
    """CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE evaluations (
        key INTEGER PRIMARY KEY,
        arch TEXT NOT NULL,
        canonical_hash TEXT NOT NULL,
        genes TEXT,
        status TEXT NOT NULL,
        reason TEXT,
        metrics TEXT NOT NULL DEFAULT '{}',
        error TEXT,
        seed INTEGER,
        elapsed_s REAL,
        worker TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        cached INTEGER NOT NULL DEFAULT 0,
        dispatched_at REAL,
        finished_at REAL,
        cache_source TEXT)""",
    """CREATE INDEX evaluations_hash ON evaluations (canonical_hash)""",
    """CREATE TABLE state (id INTEGER PRIMARY KEY CHECK (id = 1), n_told INTEGER NOT NULL,
        state TEXT NOT NULL, saved_at REAL NOT NULL)""",
    """CREATE TABLE cache (fitness_id TEXT NOT NULL, canonical_hash TEXT NOT NULL, metrics TEXT NOT NULL,
        elapsed_s REAL, source TEXT, created_at REAL NOT NULL, PRIMARY KEY (fitness_id, canonical_hash))""",
]
#: version -> statements upgrading a store from that version to the next
_MIGRATIONS: dict[int, list[str]] = {
    1: ["ALTER TABLE evaluations ADD COLUMN cache_source TEXT"],  # v2: where a cached result came from
}


def query_read_only(path: str | Path, sql: str) -> list[tuple]:
    """The rows of ``sql`` on a run store opened read-only (never locks out or alters a live run);
    raises ``sqlite3.Error`` when the file cannot be read."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default, separators=(",", ":"))


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in the run store (not JSON-serialisable)")


def failure_reason(trial: Trial) -> str | None:
    """A short category for a failed trial: timeout, worker_died, out_of_memory, non_finite,
    missing_metric or exception (``None`` when it succeeded)."""
    if trial.ok:
        return None
    error = (trial.error or "").lower()
    for prefix, reason in (("timeout:", "timeout"), ("worker died:", "worker_died"),
                           ("out of memory:", "out_of_memory")):
        if error.startswith(prefix):
            return reason
    if error.startswith("metric ") and (" is nan" in error or " is inf" in error or " is -inf" in error):
        return "non_finite"
    if "non-finite" in error or "nan" in error.split(":", 1)[0]:
        return "non_finite"
    if error.startswith("metric ") and "missing" in error:
        return "missing_metric"
    return "exception"


class SQLiteStore(Store):
    """The durable store of a run: one SQLite file, written by the main process only.

    ``synchronous`` is SQLite's ``PRAGMA synchronous`` (``"NORMAL"``: a committed evaluation survives the
    process being killed; ``"FULL"`` also survives power loss, at a cost per commit).
    """

    durable = True

    def __init__(self, path: str | Path, *, timeout: float = 30.0, synchronous: str = "NORMAL"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and not self.path.is_file():
            raise StoreError(f"{self.path}: not a regular file (a store is an SQLite file)")
        self._conn = _connect(self.path, timeout=timeout, isolation_level=None)
        try:
            self._journal_wal(timeout)
            if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
                raise ValueError(f"synchronous: {synchronous!r} (OFF, NORMAL, FULL or EXTRA)")
            self._conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._migrate()
        except sqlite3.DatabaseError as err:
            self._conn.close()
            raise StoreError(f"{self.path}: not a usable evonas store ({err})") from None

    def _journal_wal(self, timeout: float) -> None:
        """``PRAGMA journal_mode=WAL``, retried while another process holds the new file's lock (SQLite does
        not wait for it there: runs creating one shared cache_db at once)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.DatabaseError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

    # --- schema -----------------------------------------------------------------------------------------
    def _migrate(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: store schema version {version} is newer than this evonas "
                             f"({SCHEMA_VERSION}); upgrade evonas")
        if version == SCHEMA_VERSION:
            return
        with self._tx():
            # read again under the write lock: another process (a run sharing this cache_db) may have
            # created or upgraded the schema since
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                return
            if version == 0:
                tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if tables:
                    raise StoreError(f"{self.path}: holds tables {sorted(tables)} but no evonas schema version")
                for stmt in _SCHEMA:
                    self._conn.execute(stmt)
            else:
                while version < SCHEMA_VERSION:
                    for stmt in _MIGRATIONS[version]:
                        self._conn.execute(stmt)
                    version += 1
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _tx(self):
        return _Transaction(self._conn)

    # --- metadata ---------------------------------------------------------------------------------------
    def set_meta(self, meta: dict[str, Any]) -> None:
        with self._tx():
            self._conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                                   "SET value = excluded.value", [(k, _dumps(v)) for k, v in meta.items()])

    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self._conn.execute("SELECT key, value FROM meta")}

    # --- evaluations ------------------------------------------------------------------------------------
    def record_dispatch(self, dispatches: Sequence[Dispatch], seeds: Sequence[int] = ()) -> None:
        with self._tx():
            self._record_dispatch(dispatches, seeds)

    def _record_dispatch(self, dispatches: Sequence[Dispatch], seeds: Sequence[int]) -> None:
        now = time.time()
        seeds = list(seeds) or [None] * len(dispatches)
        self._conn.executemany(
            "INSERT INTO evaluations (key, arch, canonical_hash, genes, status, seed, dispatched_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET arch = excluded.arch, "
            "canonical_hash = excluded.canonical_hash, genes = excluded.genes, status = excluded.status, "
            "seed = excluded.seed, dispatched_at = excluded.dispatched_at, metrics = '{}', error = NULL, "
            "reason = NULL, finished_at = NULL",
            [(d.key, d.arch, d.canonical_hash, _dumps(list(d.genes)), RUNNING, s, now)
             for d, s in zip(dispatches, seeds)])

    def add_trials(self, trials: Sequence[Trial]) -> None:
        now = time.time()
        with self._tx():
            self._conn.executemany(
                "INSERT INTO evaluations (key, arch, canonical_hash, status, reason, metrics, error, seed, "
                "elapsed_s, worker, attempts, cached, finished_at, cache_source) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(key) DO UPDATE SET arch = excluded.arch, canonical_hash = excluded.canonical_hash, "
                "status = excluded.status, reason = excluded.reason, metrics = excluded.metrics, "
                "error = excluded.error, seed = excluded.seed, elapsed_s = excluded.elapsed_s, "
                "worker = excluded.worker, attempts = excluded.attempts, cached = excluded.cached, "
                "finished_at = excluded.finished_at, cache_source = excluded.cache_source",
                [(t.step, t.arch, t.canonical_hash, t.status, failure_reason(t), _dumps(t.metrics), t.error,
                  t.seed, t.elapsed_s, t.worker, int(t.attempts), int(t.cached),
                  now, t.cache_source or None) for t in trials])

    _TRIAL_COLUMNS = ("key, arch, canonical_hash, metrics, status, error, seed, elapsed_s, worker, attempts, cached, "
                      "cache_source")

    def trials(self) -> list[Trial]:
        rows = self._conn.execute(f"SELECT {self._TRIAL_COLUMNS} FROM evaluations WHERE status != ? "
                                  "ORDER BY key", (RUNNING,))
        return [_trial(r) for r in rows]

    def trial(self, key: int) -> Trial | None:
        row = self._conn.execute(f"SELECT {self._TRIAL_COLUMNS} FROM evaluations WHERE key = ? AND status != ?",
                                 (key, RUNNING)).fetchone()
        return _trial(row) if row else None

    def in_flight(self) -> list[int]:
        """Keys of evaluations dispatched but not completed (in flight, or lost in a crash)."""
        return [r[0] for r in self._conn.execute("SELECT key FROM evaluations WHERE status = ? ORDER BY key",
                                                 (RUNNING,))]

    def counts(self) -> dict[str, int]:
        """Number of evaluations per status."""
        return dict(self._conn.execute("SELECT status, COUNT(*) FROM evaluations GROUP BY status").fetchall())

    def rows(self) -> list[dict[str, Any]]:
        """Every evaluation row, as stored (for inspection and exports)."""
        cur = self._conn.execute("SELECT * FROM evaluations ORDER BY key")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur]

    def discard_from(self, key: int) -> int:
        with self._tx():
            return self._conn.execute("DELETE FROM evaluations WHERE key >= ?", (key,)).rowcount

    # --- search state -----------------------------------------------------------------------------------
    def save_state(self, n_trials: int, state: dict[str, Any]) -> None:
        with self._tx():
            self._save_state(n_trials, state)

    def _save_state(self, n_trials: int, state: dict[str, Any]) -> None:
        self._conn.execute("INSERT INTO state (id, n_told, state, saved_at) VALUES (1, ?, ?, ?) "
                           "ON CONFLICT(id) DO UPDATE SET n_told = excluded.n_told, state = excluded.state, "
                           "saved_at = excluded.saved_at", (int(n_trials), _dumps(state), time.time()))

    def checkpoint(self, n_trials: int, state: dict[str, Any], dispatches: Sequence[Dispatch] = (),
                   seeds: Sequence[int] = ()) -> None:
        with self._tx():
            if dispatches:
                self._record_dispatch(dispatches, seeds)
            self._save_state(n_trials, state)

    def load_state(self) -> tuple[int, dict[str, Any]] | None:
        row = self._conn.execute("SELECT n_told, state FROM state WHERE id = 1").fetchone()
        return (int(row[0]), json.loads(row[1])) if row else None

    # --- cache ------------------------------------------------------------------------------------------
    def cache_get(self, fitness_id: str, canonical_hash: str) -> tuple[dict[str, float], float] | None:
        entry = self.cache_entry(fitness_id, canonical_hash)
        return entry[:2] if entry is not None else None

    def cache_entry(self, fitness_id: str, canonical_hash: str) -> tuple[dict[str, float], float, str] | None:
        row = self._conn.execute("SELECT metrics, elapsed_s, source FROM cache WHERE fitness_id = ? AND "
                                 "canonical_hash = ?", (fitness_id, canonical_hash)).fetchone()
        return (json.loads(row[0]), float(row[1] or 0.0), row[2] or "") if row else None

    def cache_put(self, fitness_id: str, trials: Iterable[Trial], source: str = "") -> None:
        rows = [(fitness_id, t.canonical_hash, _dumps(t.metrics), t.elapsed_s, source, time.time())
                for t in trials if t.ok and not t.cached]
        if rows:
            with self._tx():
                self._conn.executemany("INSERT OR IGNORE INTO cache (fitness_id, canonical_hash, metrics, "
                                       "elapsed_s, source, created_at) VALUES (?,?,?,?,?,?)", rows)

    def cache_size(self, fitness_id: str | None = None) -> int:
        if fitness_id is None:
            return int(self._conn.execute("SELECT COUNT(*) FROM cache").fetchone()[0])
        return int(self._conn.execute("SELECT COUNT(*) FROM cache WHERE fitness_id = ?", (fitness_id,)).fetchone()[0])

    def close(self) -> None:
        try:
            self._conn.close()
        except sqlite3.Error:  # pragma: no cover
            pass

    def __enter__(self) -> "SQLiteStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any exception, KeyboardInterrupt included)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")


def _trial(row: Sequence[Any]) -> Trial:
    key, arch, h, metrics, status, error, seed, elapsed, worker, attempts, cached, source = row
    return Trial(step=int(key), arch=arch, canonical_hash=h, metrics=_metrics(metrics), status=status,
                 error=error, seed=int(seed or 0), elapsed_s=float(elapsed or 0.0), worker=worker or "",
                 attempts=int(attempts or 1), cached=bool(cached), cache_source=source or "")


def _metrics(text: str) -> dict[str, float]:
    return {k: (math.nan if v is None else float(v)) for k, v in json.loads(text or "{}").items()}
