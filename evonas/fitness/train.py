"""The ``train`` fitness kind: real short training, and its ``[data]``, ``[training]`` and ``[warm_start]``
config sections.

Each individual's graph is built as a network (:mod:`evonas.models`), optionally warm-started from a
Reptile-meta-learned initializer (:mod:`evonas.warmstart`), trained for a small budget on the user's data
(:mod:`evonas.data`) with the primitives of :mod:`evonas.training` and scored on the validation split; the
test split is reported.

* Budget in ``steps`` or ``epochs``; SGD with (Nesterov) momentum or AdamW; cosine schedule with optional
  warm-up; label smoothing.
* Device chosen automatically: CUDA when present (evaluation ``key`` round-robin over the GPUs, so several
  small models share each GPU), else CPU. bf16 autocast on GPU; datasets are moved to the device once per
  process and stay there. On CPU a given seed gives the same result (same thread count).
* A non-finite training loss makes a failed evaluation, not a crash.
* Threads: each evaluation sets ``torch.set_num_threads(threads)``; the default 1 means ``jobs`` workers
  use ``jobs`` cores and never oversubscribe them (small networks also train fastest single-threaded, and
  results do not depend on ``jobs``: thread count changes float rounding). ``threads = 0`` takes cores /
  ``jobs`` per worker, for wide networks on many cores.

Genome config::

    [fitness]
    kind = "train"
    objectives = ["val_acc"]
    report = ["test_acc"]

    [data]                 # digits (embedded) | cifar10 | cifar100 | npz
    name = "digits"

    [training]
    C = 8
    N = 1
    steps = 200            # or epochs = 5

torch is imported only when training runs, so table searches do not pay for it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from evonas.data import BUILTIN_DATASETS, DATASETS, DataSpec
from evonas.fitness.base import Architecture, EvalContext, EvalResult, Fitness
from evonas.registry import check_keys, config_section, fitness_kind
from evonas.training import (NonFiniteLoss, TrainSettings, import_ops_modules, save_weights, select_device,
                             short_train, worker_threads)
from evonas.warmstart import Initializer, WarmStartSettings

#: an :class:`evonas.config.RunConfig` (not imported here: the config imports the fitness kinds)
RunConfig = Any

#: the folder of a run directory that holds the warm-start files (snapshots, trained weights)
WARM_DIR = "warm_start"
#: metrics a ``train`` evaluation returns
METRICS = ("val_acc", "val_loss", "test_acc", "test_loss", "train_loss", "train_time_s", "steps", "params",
           "warm_frac")


# --- the fitness ----------------------------------------------------------------------------------------
class TrainingFitness(Fitness):
    """``(arch, ctx) -> metrics`` by short training; picklable, so joblib workers run it.

    With a warm start (``warm``, a :class:`evonas.warmstart.WarmStartSettings`), the main process prepares
    the initializer before the first batch (:meth:`before_batch`: loads ``warm.init`` or meta-trains one)
    and writes a snapshot that workers load. In online mode, workers also save each individual's trained
    weights, and :meth:`after_batch` (main process, after each batch, in evaluation order) moves the
    initializer toward them and writes the next snapshot: a batch's individuals all start from the same
    snapshot, so results depend on ``batch_size`` but not on the number of workers.

    In a run directory (:meth:`use_run_dir`, done by ``evonas run``) these files live in ``DIR/warm_start/``
    and :meth:`state_dict` (stored with every checkpoint) names the snapshot of the trials told so far, so
    ``--resume`` after a crash continues the initializer exactly instead of meta-training again.
    """

    inline = False

    def __init__(self, data: DataSpec | str = "digits", settings: TrainSettings | None = None,
                 warm: WarmStartSettings | None = None, *, space=None, jobs: int = 1, seed: int = 0,
                 base_dir: str | Path | None = None, log: bool = True):
        if warm is not None and space is None and not warm.init:
            raise ValueError("warm: meta-training the initializer needs the search space (space=...)")
        self.space = space
        self.data = DataSpec(name=data) if isinstance(data, str) else data
        self.settings = settings or TrainSettings()
        self.warm = warm
        self.jobs = int(jobs)
        self.seed = int(seed)
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self.log = log
        self.init_path: str | None = None
        self.init_version = 0
        self.workdir: str | None = None
        #: set by the run (``evonas.export.keep_best_weights``): workers save each trained network here
        self.weights_dir: str | None = None
        self._init = None  # main process: the live Initializer
        self._finalizer = None
        # resumable online warm start (a run directory: :meth:`use_run_dir`)
        self._persistent = False  # workdir lives in the run directory: checkpoints reference its files
        self._seen = 0  # trials passed to after_batch (batch mode: the trials told); names init-<seen>.pt
        self._resume: dict | None = None  # fitness state of the checkpoint a resumed run continues from
        self._refs: list[str] = []  # init files referenced by the last two state_dict() calls
        self._applied: list[str] = []  # trained files after_batch used since the last state_dict()
        self._prev_applied: list[str] = []  # ... and those of the call before (deleted at the next call)

    # pickling: workers get settings and the current snapshot path, never the live initializer
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_init"] = None
        state["_finalizer"] = None
        state["_resume"] = None
        state["_refs"], state["_applied"], state["_prev_applied"] = [], [], []
        return state

    @property
    def online(self) -> bool:
        return bool(self.warm is not None and self.warm.online)

    def dataset(self):
        from evonas.data import load_dataset

        return load_dataset(self.data)

    def _ensure_workdir(self) -> str:
        if self.workdir is None:
            self.workdir = tempfile.mkdtemp(prefix="evonas-warm-")
            self._finalizer = weakref.finalize(self, shutil.rmtree, self.workdir, True)
        elif self._persistent:
            os.makedirs(self.workdir, exist_ok=True)
        return self.workdir

    def use_run_dir(self, out: str | Path) -> None:
        """Keep the warm-start files in the run directory ``out`` (``out/warm_start/``; called by
        :func:`evonas.api.run_config` before a resume): snapshots and the trained weights of updates not yet
        covered by a checkpoint then survive a crash, and :meth:`state_dict` can reference them."""
        if self.init_path is not None:
            raise RuntimeError("use_run_dir: the initializer is already prepared")
        self.workdir = str((Path(out) / WARM_DIR).resolve())
        self._persistent = True

    # --- checkpoints (main process; evonas.search.Search stores them with its own state) ---------------
    def state_dict(self) -> dict[str, Any]:
        """The warm-start state a checkpoint covers: the initializer reached after the trials told so far,
        as the name of its (already written, never rewritten) file in the run directory. Prepares the
        initializer first when the run has not yet (a crash in the first batch then skips meta-training).

        Files no checkpoint can need any more are deleted here: a call's predecessor has been committed, so
        init files other than the last two referenced and trained weights applied before the previous call
        go. Empty without a warm start or a run directory (nothing survives the process then)."""
        if self.warm is None or not self._persistent:
            return {}
        if self.init_path is None:
            self.before_batch()
        ref = os.path.basename(self.init_path)
        for name in self._prev_applied:
            _unlink(os.path.join(self.workdir, name))
        self._prev_applied, self._applied = self._applied, []
        if not self._refs or self._refs[-1] != ref:
            self._refs = (self._refs + [ref])[-2:]
        self._prune_inits(keep=self._refs)
        return {"version": 1, "init": ref, "seen": self._seen, "updates": self._init.updates,
                "obsolete": list(self._prev_applied)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a checkpoint's :meth:`state_dict` (read when the initializer is first needed)."""
        self._resume = dict(state) if state else None

    def _prune_inits(self, keep: Sequence[str]) -> None:
        for p in Path(self.workdir).glob("init-*.pt"):
            if p.name not in keep:
                _unlink(p)

    def _clear_workdir(self) -> None:
        """A fresh run in a run directory: files of an earlier run there (``--force``) are no state of it."""
        if os.path.isdir(self.workdir):
            for pattern in ("init-*.pt", "trained-*.pt", ".*.tmp"):
                for p in Path(self.workdir).glob(pattern):
                    _unlink(p)

    def _load_checkpointed(self) -> bool:
        """Resume: the initializer from the checkpoint's file (no meta-training); False when it is missing."""
        from evonas.warmstart import Initializer

        state, self._resume = self._resume, None
        name = str(state.get("init", ""))
        path = os.path.join(self.workdir, name)
        try:
            if not name or os.path.basename(name) != name:
                raise ValueError(f"{name!r}: not a file name")
            init = Initializer.load(path, match_norm=self.warm.match_norm)
            if init.updates != int(state.get("updates", init.updates)):
                raise ValueError(f"{path}: holds {init.updates} updates, the checkpoint {state['updates']}")
        except ValueError as err:
            print(f"evonas: warning: cannot continue the warm-start initializer of the checkpoint ({err}); "
                  "preparing it afresh: the resumed run may differ from an uninterrupted one", file=sys.stderr)
            return False
        self._init = init
        self.init_path = path
        self._seen = int(state.get("seen", 0))
        self._refs = [name]
        for obsolete in state.get("obsolete", []):  # applied before the checkpoint that now holds
            _unlink(os.path.join(self.workdir, os.path.basename(str(obsolete))))
        self._prune_inits(keep=self._refs)
        for p in Path(self.workdir).glob(".*.tmp"):  # half-written when the run was killed
            _unlink(p)
        if self.log:
            print(f"evonas: warm start resumed from {path} ({init.updates} updates)", file=sys.stderr)
        return True

    # --- main-process hooks (called by the Evaluator) ---------------------------------------------------
    def before_batch(self, candidates: Sequence[Any] = ()) -> None:
        """Prepare the warm-start initializer once (main process): the checkpoint's when resuming."""
        if self.warm is None or self.init_path is not None:
            return
        import torch

        from evonas.warmstart import prepare_initializer

        torch.set_num_threads(worker_threads(self.settings.threads, 1))
        import_ops_modules(self.settings.ops_modules, self.base_dir)
        if self._persistent:
            if self._resume and self._load_checkpointed():
                return
            self._clear_workdir()
        start = time.perf_counter()
        if self.log and self.warm.meta_steps and not self.warm.init:
            print(f"evonas: meta-training the warm-start initializer ({self.warm.meta_steps} Reptile steps)...",
                  file=sys.stderr)
        self._init = prepare_initializer(self.warm, self.data, self.settings, space=self.space, seed=self.seed,
                                         base_dir=self.base_dir)
        if self.log and self.warm.meta_steps and not self.warm.init:
            print(f"evonas: meta-trained {len(self._init.meta)} tensors in {time.perf_counter() - start:.1f}s",
                  file=sys.stderr)
        self._write_snapshot()

    def _write_snapshot(self) -> None:
        workdir = self._ensure_workdir()
        old = self.init_path
        self.init_version += 1
        path = os.path.join(workdir, f"init-{self._seen}.pt")
        self._init.save(path)
        self.init_path = path
        # in a run directory the previous snapshot may be what the last checkpoint references (state_dict
        # prunes it once a later checkpoint covers this one)
        if old and old != path and os.path.exists(old) and not self._persistent:
            os.remove(old)
        if self.warm.save:
            target = Path(self.warm.save)
            if not target.is_absolute() and self.base_dir is not None:
                target = self.base_dir / target
            target.parent.mkdir(parents=True, exist_ok=True)
            self._init.save(target)

    def after_batch(self, candidates: Sequence[Any], trials: Sequence[Any]) -> None:
        """Online mode: nudge the initializer toward each successful individual's trained weights."""
        if self.online and self._init is None and self._resume:  # resumed with the whole batch already done
            self.before_batch()
        if not self.online or self._init is None or self.workdir is None:
            return
        import torch

        moved = False
        for trial in sorted(trials, key=lambda t: t.step):
            self._seen += 1
            name = f"trained-{trial.step}.pt"
            path = os.path.join(self.workdir, name)
            if getattr(trial, "cached", False) or not os.path.exists(path):
                continue
            if trial.ok:
                state = torch.load(path, map_location="cpu", weights_only=True)
                self._init.update(state, lr=self.warm.online_lr)
                moved = True
            if self._persistent:  # the last checkpoint may still need it: state_dict deletes it later
                self._applied.append(name)
            else:
                os.remove(path)
        if moved:
            self._write_snapshot()

    # --- worker side -----------------------------------------------------------------------------------
    # --- export (evonas.export) -------------------------------------------------------------------------
    def keep_weights(self, directory: str | Path) -> bool:
        """Workers save each trained network in ``directory`` (``step-KEY.pt``)."""
        self.weights_dir = str(Path(directory).resolve())
        return True

    def initializer(self):
        """The warm-start initializer evaluations start from (``None`` without a warm start)."""
        if self.warm is None:
            return None
        if self.init_path is None:  # not called through an Evaluator: prepare here
            self.before_batch()
        if self._init is not None:
            return self._init
        from evonas.warmstart import load_initializer_cached

        if not os.path.exists(self.init_path):
            raise RuntimeError(f"warm-start snapshot {self.init_path} not found: warm starts need workers that "
                               "share the main process's filesystem (local loky/threading workers)")
        init = load_initializer_cached(self.init_path)
        init.match_norm = self.warm.match_norm
        return init

    @property
    def group(self) -> int:
        """Individuals a worker trains at once (``[training] group``; :meth:`evaluate_group`)."""
        return self.settings.group

    def _prepare(self, ctx: EvalContext, slot: int):
        """In the worker: threads and ops modules set up; ``(device, data, initializer)``."""
        import torch

        torch.set_num_threads(worker_threads(self.settings.threads, self.jobs))
        import_ops_modules(self.settings.ops_modules, self.base_dir)
        return ctx.device or select_device(self.settings.device, slot), self.dataset(), self.initializer()

    def __call__(self, arch: Architecture, ctx: EvalContext) -> EvalResult:
        device, data, init = self._prepare(ctx, ctx.key)
        try:
            model, metrics = short_train(arch.graph, data, self.settings, seed=ctx.seed, device=device, init=init,
                                         steps=dict(ctx.budget or {}).get("steps"))
        except NonFiniteLoss as err:
            return EvalResult.failed(str(err))
        return self._finish(model, metrics, ctx.key)

    def evaluate_group(self, archs: Sequence[Architecture], ctxs: Sequence[EvalContext]) -> list[EvalResult]:
        """Train ``archs`` at once on one device (:func:`evonas.multitrain.short_train_group`), each from its
        context's seed: on CPU each result equals its :meth:`__call__` bit for bit. Groups go round-robin
        over the GPUs."""
        from evonas.multitrain import short_train_group

        device, data, init = self._prepare(ctxs[0], ctxs[0].key // max(1, self.group))
        outcomes = short_train_group([a.graph for a in archs], data, self.settings, seeds=[c.seed for c in ctxs],
                                     device=device, init=init, steps=[dict(c.budget or {}).get("steps") for c in ctxs])
        return [EvalResult.failed(str(out)) if isinstance(out, NonFiniteLoss) else self._finish(*out, ctx.key)
                for out, ctx in zip(outcomes, ctxs)]

    def _finish(self, model, metrics: dict[str, float], key: int) -> EvalResult:
        """Save what the run keeps of a trained network (weights, online warm-start state)."""
        import torch

        if self.weights_dir:
            save_weights(model, self.weights_dir, key)
        if self.online and self.workdir is not None:
            state = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()
                     if v.is_floating_point()}
            tmp = os.path.join(self.workdir, f".trained-{key}.pt.tmp")
            torch.save(state, tmp)
            os.replace(tmp, os.path.join(self.workdir, f"trained-{key}.pt"))
        return EvalResult(metrics)


def _unlink(path) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


# --- config sections ------------------------------------------------------------------------------------
_DATA_KEYS: dict[str, tuple[tuple[type, ...], Any]] = {
    "name": ((str,), "digits"), "path": ((str,), ""), "val_fraction": ((float, int), 0.15),
    "test_fraction": ((float, int), 0.2), "limit": ((int,), 0), "seed": ((int,), 0), "classes": ((list,), []),
}
_TRAINING_KEYS: dict[str, tuple[tuple[type, ...], Any]] = {
    "C": ((int,), 16), "N": ((int,), 5), "steps": ((int,), 0), "epochs": ((float, int), 0.0),
    "batch_size": ((int,), 64), "optimizer": ((str,), "sgd"), "lr": ((float, int), 0.05),
    "momentum": ((float, int), 0.9), "weight_decay": ((float, int), 5e-4),
    "label_smoothing": ((float, int), 0.1), "schedule": ((str,), "cosine"), "warmup": ((int,), 0),
    "augment": ((str,), "none"), "eval_batch_size": ((int,), 512), "device": ((str,), "auto"),
    "threads": ((int,), 1), "grad_clip": ((float, int), 5.0), "ops_modules": ((list,), []), "group": ((int,), 1),
}


def _check_section(cfg: RunConfig, section: str, data: Mapping[str, Any], schema) -> dict[str, Any]:
    return check_keys(cfg.where(), section, data, schema)


def _blame_error(cfg: RunConfig, section: str, values: Mapping[str, Any], err: Exception):
    key = str(err).split(":", 1)[0].strip()
    if key not in values:
        key = next(iter(values), "name")
    return cfg.error(section, key, values.get(key), str(err).split(":", 1)[-1].strip())


@config_section("data")
def validate_data(section: Mapping[str, Any], cfg: RunConfig, name: str = "data") -> DataSpec:
    """``[data]`` (or a table named ``name``) -> :class:`DataSpec` (paths resolved against the config's
    folder)."""
    values = _check_section(cfg, name, section, _DATA_KEYS)
    if values["name"] not in DATASETS:
        raise cfg.error(name, "name", values["name"], f"unknown dataset (known: {', '.join(DATASETS)})")
    if values["name"] not in BUILTIN_DATASETS and not values["path"]:
        raise cfg.error(name, "path", values["path"], f"dataset {values['name']!r} needs a path (no downloads)")
    if values["path"]:
        path = cfg.resolve(values["path"])
        if not path.exists():
            raise cfg.error(name, "path", values["path"], f"{path} not found")
        if values["name"] == "npz" and not path.is_file():
            raise cfg.error(name, "path", values["path"], f"{path} is not a regular file (an .npz file)")
        if values["name"] != "npz" and not path.is_dir():
            raise cfg.error(name, "path", values["path"], f"{path} is not a directory (the extracted batches)")
        values["path"] = str(path)
    for key in ("val_fraction", "test_fraction"):
        if not 0 <= values[key] < 1:
            raise cfg.error(name, key, values[key], "must be in [0, 1)")
    if values["limit"] < 0:
        raise cfg.error(name, "limit", values["limit"], "must be >= 0 (0: all)")
    if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in values["classes"]):
        raise cfg.error(name, "classes", values["classes"], "expected a list of class labels (integers >= 0)")
    values["classes"] = tuple(values["classes"])
    values["val_fraction"] = float(values["val_fraction"])
    values["test_fraction"] = float(values["test_fraction"])
    return DataSpec(**values)


@config_section("training")
def validate_training(section: Mapping[str, Any], cfg: RunConfig) -> TrainSettings:
    """``[training]`` -> :class:`TrainSettings`."""
    values = _check_section(cfg, "training", section, _TRAINING_KEYS)
    for key in ("epochs", "lr", "momentum", "weight_decay", "label_smoothing", "grad_clip"):
        values[key] = float(values[key])
    if not all(isinstance(m, str) and m for m in values["ops_modules"]):
        raise cfg.error("training", "ops_modules", values["ops_modules"],
                        "expected a list of module names or .py paths")
    values["ops_modules"] = tuple(values["ops_modules"])
    try:
        settings = TrainSettings(**values)
    except ValueError as err:
        raise _blame_error(cfg, "training", values, err) from None
    try:
        import_ops_modules(settings.ops_modules, cfg.base_dir)
    except ValueError as err:
        raise cfg.error("training", "ops_modules", list(settings.ops_modules), str(err)) from None
    return settings


@fitness_kind("train", {})
def _train_fitness(cfg: RunConfig, section: Mapping[str, Any], space) -> TrainingFitness:
    data = cfg.section("data")
    settings = cfg.section("training")
    warm = cfg.section("warm_start") if "warm_start" in cfg.extra or "warm_start" in cfg.raw else None
    if warm is not None and not warm.enabled:
        warm = None
    _check_ops(cfg, space, settings)
    unknown = [m for m in cfg.metric_columns() if m not in METRICS]
    if unknown:
        raise cfg.error("fitness", "objectives/report", unknown[0],
                        f"not a metric of kind 'train' (it returns: {', '.join(METRICS)})")
    if warm is not None and warm.init:
        _check_init(cfg, warm, settings)
    if settings.group > 1 and cfg.search.get("isolate", True):
        raise cfg.error("training", "group", settings.group, "a group trains in one worker process, not one forked "
                        "process per evaluation: set [search] isolate = false (and no time_limit)")
    return TrainingFitness(data, settings, warm, space=space, jobs=cfg.search.get("jobs", 1),
                           seed=cfg.search.get("seed", 0), base_dir=cfg.base_dir)


def _check_init(cfg: RunConfig, warm: WarmStartSettings, settings: TrainSettings) -> None:
    """A trained initializer must match the network width and depth it is loaded into."""
    from evonas.warmstart import Initializer

    try:
        info = Initializer.load(warm.init).info
    except ValueError as err:
        raise cfg.error("warm_start", "init", warm.init, str(err)) from None
    for key in ("C", "N"):
        if key in info and int(info[key]) != getattr(settings, key):
            raise cfg.error("warm_start", "init", warm.init, f"initializer was trained with {key}={info[key]}, "
                            f"but [training] {key} = {getattr(settings, key)}")


def _check_ops(cfg: RunConfig, space, settings: TrainSettings) -> None:
    from evonas.graphs import NOOP_OPS
    from evonas.models.ops import OPS

    ops = getattr(space, "ops", ())
    missing = [op for op in ops if op not in OPS and op not in NOOP_OPS]
    if missing:
        raise cfg.error("space", "ops", list(ops), f"no model for op {missing[0]!r}; register it with "
                        "evonas.models.register_op in a module listed in [training] ops_modules")




# --- [warm_start] ---------------------------------------------------------------------------------
_WARM_KEYS: dict[str, tuple[tuple[type, ...], Any]] = {
    "enabled": ((bool,), True), "init": ((str,), ""), "meta_steps": ((int,), 200), "inner_steps": ((int,), 20),
    "inner_lr": ((float, int), 0.0), "inner_batch": ((int,), 0), "outer_lr": ((float, int), 1.0),
    "ways": ((int,), 0), "permute_labels": ((bool,), True), "task_fraction": ((float, int), 0.5),
    "datasets": ((list,), []), "search_data": ((bool,), True), "online": ((bool,), False),
    "online_lr": ((float, int), 0.1), "match_norm": ((bool,), True), "save": ((str,), ""),
    "seed": ((int,), -1),
}


@config_section("warm_start")
def validate_warm_start(section: Mapping[str, Any], cfg: RunConfig) -> WarmStartSettings:
    """``[warm_start]`` -> :class:`WarmStartSettings` (paths resolved against the config's folder)."""
    values = check_keys(cfg.where(), "warm_start", section, _WARM_KEYS)
    for key in ("inner_lr", "outer_lr", "task_fraction", "online_lr"):
        values[key] = float(values[key])
    if values["init"]:
        path = cfg.resolve(values["init"])
        if not path.is_file():
            raise cfg.error("warm_start", "init", values["init"], f"initializer file {path} not found "
                            "(make one with: evonas meta train-init CONFIG --out FILE)")
        values["init"] = str(path)
    if values["save"]:
        values["save"] = str(cfg.resolve(values["save"]))
    specs = []
    for item in values["datasets"]:
        if not isinstance(item, dict):
            raise cfg.error("warm_start", "datasets", item, "expected tables like {name = \"npz\", path = \"...\"}")
        specs.append(validate_data(item, cfg, name="warm_start.datasets"))
    values["datasets"] = tuple(specs)
    try:
        return WarmStartSettings(**values)
    except ValueError as err:
        key = str(err).split(":", 1)[0].strip()
        key = key if key in values else "meta_steps"
        raise cfg.error("warm_start", key, section.get(key, values.get(key)),
                        str(err).split(":", 1)[-1].strip()) from None



def meta_train_config(cfg: RunConfig, *, steps: int | None = None, seed: int | None = None,
                      progress: bool = False) -> tuple[Initializer, float]:
    """Meta-train the initializer a ``train`` config describes (``evonas meta train-init``): its space,
    ``[data]``, ``[training]`` and ``[warm_start]`` (its ``init`` is ignored: training starts afresh).
    Returns the initializer and the seconds it took."""
    import torch

    from evonas.warmstart import prepare_initializer

    if cfg.fitness.get("kind") != "train":
        raise cfg.error("fitness", "kind", cfg.fitness.get("kind"),
                        "meta train-init needs a config that trains networks (kind = \"train\")")
    space = cfg.build_space()
    data = cfg.section("data")
    settings = cfg.section("training")
    warm = cfg.extra.get("warm_start") or WarmStartSettings()
    warm = replace(warm, init="", meta_steps=int(steps if steps is not None else warm.meta_steps or 200))
    if seed is not None:
        warm = replace(warm, seed=int(seed))
    torch.set_num_threads(worker_threads(settings.threads, 1))
    start = time.perf_counter()
    init = prepare_initializer(warm, data, settings, space=space, seed=int(cfg.search.get("seed", 0)),
                               base_dir=cfg.base_dir, progress=progress)
    init.info.update({"data": data.name, "config": str(cfg.path) if cfg.path else ""})
    return init, time.perf_counter() - start


__all__ = ["TrainingFitness", "METRICS", "WARM_DIR", "validate_data", "validate_training", "validate_warm_start",
           "meta_train_config"]
