"""A run directory: its SQLite store (``run.db``), a lock, and the config check on resume.

``evonas run CONFIG --out DIR`` creates ``DIR/run.db`` and refuses a directory that already holds a run
(``--resume`` continues it, ``--force`` starts over). ``--resume`` refuses a config that differs from the
run's snapshot in anything that changes which evaluations are made (``--force`` resumes anyway); keys
that only say how far or where to run (``budget``, ``jobs``, ``backend``, ``address``, ``isolate``,
``max_consecutive_failures``, ``out``) may change: a larger budget continues the run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evonas.config import ConfigError, RunConfig
from evonas.store import STORE_NAME, SQLiteStore, StoreError

#: [search] keys that do not change which evaluations a run makes (free to change on resume)
EXECUTION_KEYS = frozenset({"budget", "jobs", "backend", "address", "isolate", "max_consecutive_failures", "out"})
CORE_SECTIONS = ("space", "strategy", "fitness", "search")
LOCK_NAME = ".lock"
log = logging.getLogger(__name__)


def config_snapshot(cfg: RunConfig) -> dict[str, Any]:
    """The effective config (defaults filled in, command-line overrides applied), JSON-serialisable."""
    snap = {"space": dict(cfg.space), "strategy": dict(cfg.strategy), "fitness": dict(cfg.fitness),
            "search": dict(cfg.search)}
    for section, value in cfg.raw.items():
        if section not in snap:
            snap[section] = value
    return json.loads(json.dumps(snap, default=str, sort_keys=True))


def identity_view(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The part of a snapshot that decides which evaluations are made."""
    view = {k: v for k, v in snapshot.items()}
    view["search"] = {k: v for k, v in snapshot.get("search", {}).items() if k not in EXECUTION_KEYS}
    return view


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def config_identity(cfg: RunConfig) -> str:
    return _digest(identity_view(config_snapshot(cfg)))


def fitness_identity(cfg: RunConfig, fitness: Any = None) -> str:
    """What a cached result is valid for: the fitness kind and its settings (the ``[fitness]`` section but
    its objectives/report, and every non-core section such as ``[data]``/``[training]``), the resolved
    table path, and the fitness's own ``identity()`` when it has one. Seeds are not part of it: a cached
    result stands for its architecture under this fitness."""
    snap = config_snapshot(cfg)
    parts: dict[str, Any] = {"fitness": {k: v for k, v in snap["fitness"].items() if k not in ("objectives", "report")}}
    if cfg.fitness.get("table"):
        parts["table"] = str(cfg.resolve(cfg.fitness["table"]).resolve())
    for section, value in snap.items():
        if section not in CORE_SECTIONS:
            parts[section] = value
    own = fitness.identity() if fitness is not None else None
    if own is not None:
        parts["own"] = own
    return f"{cfg.fitness['kind']}-{_digest(parts)}"


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            where = f"[{key}]" if not prefix else f"{prefix} {key}"
            if key not in old:
                out.append(f"{where} added ({json.dumps(new[key])})")
            elif key not in new:
                out.append(f"{where} removed (was {json.dumps(old[key])})")
            else:
                out.extend(_differences(old[key], new[key], where))
        return out
    return [] if old == new else [f"{prefix}: {json.dumps(old)} -> {json.dumps(new)}"]


@dataclass
class RunDir:
    """An open run directory: the store (and cache) of one run, locked against a second process."""

    path: Path
    store: SQLiteStore
    cache: SQLiteStore | None = None
    fitness_id: str = ""
    resumed: bool = False
    changes: list[str] = field(default_factory=list)
    _lock_fd: int | None = None
    _begin: dict[str, Any] = field(default_factory=dict)

    @property
    def db(self) -> Path:
        return self.store.path

    def begin(self) -> None:
        """Record the run (metadata, config snapshot) or this resume in the store."""
        if self._begin:
            self.store.set_meta(self._begin)
            self._begin = {}

    def close(self, status: str | None = None, **meta: Any) -> None:
        try:
            if status is not None:
                self.store.set_meta({"status": status, "updated_at": time.time(), **meta})
        finally:
            if self.cache is not None and self.cache is not self.store:
                self.cache.close()
            self.store.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None


def _lock(out: Path) -> int:
    import fcntl

    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 100, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise ConfigError(f"{out}: run directory in use by {holder}; wait for it or stop it first") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{socket.gethostname()}:{os.getpid()}\n".encode(), 0)
    return fd


def has_run(out: Path) -> int | None:
    """Number of evaluations (in flight included) of the run stored in ``out``, or None when there is none.

    A store without the run's metadata and without evaluations (a run killed between creating ``run.db``
    and recording itself) holds no run: it is started anew."""
    db = Path(out) / STORE_NAME
    if not db.is_file():
        return None
    try:
        with SQLiteStore(db) as store:
            n = sum(store.counts().values())
            return None if n == 0 and "identity" not in store.meta() else n
    except StoreError as err:
        raise ConfigError(str(err)) from None


def check_paths(cfg: RunConfig, out: Path) -> None:
    """Refuse a run directory that is not a directory (a file, ``/dev/null``, a path through a file) and a
    ``cache_db`` that is not a regular file, before anything is written."""
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            what = "is" if p == out else f"goes through {p}, which is"
            raise ConfigError(f"{cfg.where()}: [search] out (or --out) = {str(out)!r}: {what} not a directory")
    if cfg.search.get("cache") and cfg.search.get("cache_db"):
        db = cfg.resolve(cfg.search["cache_db"])
        if db.exists() and not db.is_file():
            raise cfg.error("search", "cache_db", cfg.search["cache_db"], f"{db} is not a regular file (a cache "
                            "is an SQLite file)")
        for p in db.parents:
            if p.exists() and not p.is_dir():
                raise cfg.error("search", "cache_db", cfg.search["cache_db"], f"goes through {p}, which is not "
                                "a directory")


def open_run(cfg: RunConfig, out: str | Path, *, resume: bool = False, force: bool = False,
             fitness: Any = None) -> RunDir:
    """Open (create, or reopen with ``resume``) the run directory ``out`` for ``cfg``.

    Raises :class:`ConfigError` (nothing written) when ``resume`` finds no run, when ``out`` already holds
    a run and neither ``resume`` nor ``force`` is given, or when the config changed and ``force`` is not.
    """
    out = Path(out)
    db = out / STORE_NAME
    check_paths(cfg, out)
    existing = has_run(out)
    if resume and existing is None and not out.is_dir():
        raise ConfigError(f"{out}: --resume: no run to resume here ({db} not found)")
    if resume and existing is None:  # a run killed while it started: nothing was recorded, start it
        log.info("%s holds no recorded run (a run stopped while starting): starting it", out)
        resume = False
    if not resume and existing is not None and not force:
        raise ConfigError(f"{out}: already holds a run ({existing} evaluations in {db}); pass --resume to "
                          "continue it, --force to start over, or another --out")
    snapshot = config_snapshot(cfg)
    identity = _digest(identity_view(snapshot))
    changes: list[str] = []
    if resume:
        with SQLiteStore(db) as peek:
            meta = peek.meta()
        if meta.get("identity") != identity:
            changes = _differences(identity_view(meta.get("config", {})), identity_view(snapshot))
            if not changes:
                changes = ["(config identity differs)"]
            if not force:
                more = f" (and {len(changes) - 2} more)" if len(changes) > 2 else ""
                raise ConfigError(f"{cfg.where()}: config differs from the run in {out}: "
                                  f"{'; '.join(changes[:2])}{more}; pass --force to resume anyway")
    out.mkdir(parents=True, exist_ok=True)
    lock = _lock(out)
    try:
        for name in ("history.csv", "summary.json"):  # exports a killed run left half-written
            for stale in out.glob(f".{name}.*.tmp"):
                stale.unlink(missing_ok=True)
        if not resume and not force and has_run(out) is not None:  # recorded while we waited for the lock
            raise ConfigError(f"{out}: already holds a run ({db}); pass --resume to continue it, --force to "
                              "start over, or another --out")
        if not resume and (existing is not None or db.exists()):  # --force, or an empty store: start over
            for name in (STORE_NAME, STORE_NAME + "-wal", STORE_NAME + "-shm", "history.csv", "summary.json"):
                (out / name).unlink(missing_ok=True)
        store = SQLiteStore(db)
        now = time.time()
        if resume:
            meta = store.meta()
            resumes = list(meta.get("resumes", []))
            resumes.append({"at": now, "host": socket.gethostname(), "pid": os.getpid(), "forced": bool(changes),
                            "changes": changes, "evaluations": sum(store.counts().values())})
            begin = {"resumes": resumes, "status": "running", "updated_at": now,
                     **({"config": snapshot, "identity": identity} if changes else {})}
        else:
            from evonas._version import __version__

            text = cfg.path.read_text() if cfg.path and cfg.path.is_file() else ""
            begin = {"evonas_version": __version__, "created_at": now, "updated_at": now,
                     "host": socket.gethostname(), "config_path": str(cfg.path) if cfg.path else None,
                     "config_text": text, "config": snapshot, "identity": identity,
                     "seed": cfg.search["seed"], "objectives": [o.metric if o.goal == "max" else f"min:{o.metric}"
                                                                for o in cfg.objectives],
                     "report": cfg.report, "status": "running", "resumes": []}
        cache, fid = None, ""
        if cfg.search.get("cache"):
            fid = fitness_identity(cfg, fitness)
            cache = SQLiteStore(cfg.resolve(cfg.search["cache_db"])) if cfg.search.get("cache_db") else store
            begin.update(fitness_id=fid, cache_db=str(cache.path))
    except BaseException:
        os.close(lock)
        raise
    return RunDir(out, store, cache, fid, resume, changes, lock, begin)
