"""Real short training: the ``train`` fitness kind.

Each individual's graph is built as a network (:mod:`evonas.models`), optionally warm-started from a
Reptile-meta-learned initializer (:mod:`evonas.warmstart`), trained for a small budget on the user's data
(:mod:`evonas.data`) and scored on the validation split; the test split is reported.

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

import math
import os
import shutil
import sys
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evonas.config import EXTRA_SECTIONS, RunConfig, fitness_kind
from evonas.data import DATASETS, DataSpec
from evonas.fitness.base import Architecture, EvalContext, EvalResult
from evonas.warmstart import WarmStartSettings, validate_warm_start  # registers [warm_start]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "constant")
AUGMENTS = ("none", "crop", "crop-flip")
#: the folder of a run directory that holds the warm-start files (snapshots, trained weights)
WARM_DIR = "warm_start"
#: metrics a ``train`` evaluation returns
METRICS = ("val_acc", "val_loss", "test_acc", "test_loss", "train_loss", "train_time_s", "steps", "params",
           "warm_frac")


@dataclass(frozen=True)
class TrainSettings:
    """How one individual is built and trained. ``steps`` wins over ``epochs`` when both are set."""

    C: int = 16
    N: int = 5
    steps: int = 0
    epochs: float = 0.0
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    schedule: str = "cosine"
    warmup: int = 0
    augment: str = "none"
    eval_batch_size: int = 512
    device: str = "auto"
    threads: int = 1
    grad_clip: float = 5.0
    ops_modules: tuple[str, ...] = ()

    def __post_init__(self):
        for key, ok in (("C", self.C >= 1), ("N", self.N >= 1), ("steps", self.steps >= 0),
                        ("epochs", self.epochs >= 0), ("batch_size", self.batch_size >= 1),
                        ("optimizer", self.optimizer in OPTIMIZERS), ("lr", self.lr > 0),
                        ("momentum", 0 <= self.momentum < 1), ("weight_decay", self.weight_decay >= 0),
                        ("label_smoothing", 0 <= self.label_smoothing < 1),
                        ("schedule", self.schedule in SCHEDULES), ("warmup", self.warmup >= 0),
                        ("augment", self.augment in AUGMENTS), ("eval_batch_size", self.eval_batch_size >= 1),
                        ("threads", self.threads >= 0), ("grad_clip", self.grad_clip >= 0)):
            if not ok:
                raise ValueError(f"{key}: invalid value {getattr(self, key)!r}" + {
                    "optimizer": f" (one of {', '.join(OPTIMIZERS)})", "schedule": f" (one of {', '.join(SCHEDULES)})",
                    "augment": f" (one of {', '.join(AUGMENTS)})"}.get(key, ""))
        if self.device != "auto" and not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device: {self.device!r} (auto, cpu, cuda or cuda:N)")

    def total_steps(self, n_train: int) -> int:
        """Optimiser steps for a training split of ``n_train`` examples (at least 1)."""
        if self.steps:
            return int(self.steps)
        epochs = self.epochs or 1.0
        return max(1, math.ceil(epochs * n_train / self.batch_size))


# --- devices and threads --------------------------------------------------------------------------------
def cpu_count() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def select_device(setting: str = "auto", key: int = 0) -> str:
    """``"auto"``: ``cuda:{key mod GPUs}`` when CUDA is present (round-robin), else ``"cpu"``."""
    import torch

    if setting != "auto":
        return setting
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return f"cuda:{int(key) % n}" if n else "cpu"


def worker_threads(threads: int = 0, jobs: int = 1) -> int:
    """Torch threads for one evaluation: ``threads`` if set, else cores / concurrent workers (at least 1)."""
    if threads:
        return int(threads)
    cores = cpu_count()
    workers = cores if jobs == -1 else max(1, int(jobs))
    return max(1, cores // workers)


_DEVICE_DATA: dict[tuple, tuple] = {}


def device_arrays(data, device: str):
    """``(x_train, y_train, x_val, y_val, x_test, y_test)`` as tensors on ``device``, cached per process
    (small datasets stay resident on the GPU)."""
    import torch

    key = (id(data), data.name, len(data.y_train), str(device))
    if key not in _DEVICE_DATA:
        if len(_DEVICE_DATA) >= 4:
            _DEVICE_DATA.pop(next(iter(_DEVICE_DATA)))
        _DEVICE_DATA[key] = (data, tuple(torch.as_tensor(a).to(device) for a in (
            data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test)))
    return _DEVICE_DATA[key][1]


# --- training -------------------------------------------------------------------------------------------
class NonFiniteLoss(RuntimeError):
    """Training diverged (NaN or infinite loss)."""


def _schedule(settings: TrainSettings, total: int):
    def factor(step: int) -> float:
        if settings.warmup and step < settings.warmup:
            return (step + 1) / settings.warmup
        if settings.schedule == "constant":
            return 1.0
        span = max(1, total - settings.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - settings.warmup) / span)))

    return factor


def _augment(x, mode: str, gen):
    """Per-example random crop (pad 1/8 of the side, reflect) and, for ``crop-flip``, horizontal flips."""
    import torch
    import torch.nn.functional as F

    b, _, h, w = x.shape
    pad = max(1, h // 8)
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    rows = (torch.arange(h, device=x.device)[None, :] + dy[:, None])  # (B, H)
    cols = (torch.arange(w, device=x.device)[None, :] + dx[:, None])  # (B, W)
    xp = xp.gather(2, rows[:, None, :, None].expand(b, x.shape[1], h, xp.shape[3]))
    out = xp.gather(3, cols[:, None, None, :].expand(b, x.shape[1], h, w))
    if mode == "crop-flip":
        flip = (torch.rand(b, generator=gen) < 0.5).to(x.device)
        out = torch.where(flip[:, None, None, None], out.flip(3), out)
    return out


def train_steps(model, x, y, settings: TrainSettings, *, steps: int, seed: int, device: str,
                lr: float | None = None, schedule: bool = True) -> dict[str, float]:
    """Train ``model`` in place for ``steps`` minibatch steps on tensors ``x``, ``y`` (already on ``device``).

    Returns ``train_loss`` (mean over the last quarter of steps) and ``steps``; raises
    :class:`NonFiniteLoss` when the loss stops being finite.
    """
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(int(seed) & 0x7FFF_FFFF_FFFF_FFFF)
    params = [p for p in model.parameters() if p.requires_grad]
    lr = float(lr if lr is not None else settings.lr)
    if settings.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=settings.momentum, nesterov=settings.momentum > 0,
                              weight_decay=settings.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=settings.weight_decay)
    factor = _schedule(settings, steps) if schedule else (lambda step: 1.0)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
    cuda = str(device).startswith("cuda")
    n = len(y)
    bs = min(settings.batch_size, n)
    order = torch.randperm(n, generator=gen).to(x.device)
    pos = 0
    tail = max(1, steps // 4)
    tail_sum = torch.zeros((), device=x.device)
    model.train()
    for step in range(steps):
        if pos + bs > n:
            order = torch.randperm(n, generator=gen).to(x.device)
            pos = 0
        idx = order[pos:pos + bs]
        pos += bs
        xb, yb = x[idx], y[idx]
        if settings.augment != "none":
            xb = _augment(xb, settings.augment, gen)
        for group in opt.param_groups:
            group["lr"] = lr * factor(step)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss = loss_fn(model(xb), yb)
        if not cuda or step % 25 == 24 or step == steps - 1:
            if not torch.isfinite(loss).item():
                raise NonFiniteLoss(f"non-finite training loss ({loss.item()}) at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if settings.grad_clip:
            nn.utils.clip_grad_norm_(params, settings.grad_clip)
        opt.step()
        if step >= steps - tail:
            tail_sum += loss.detach().float()
    return {"train_loss": float(tail_sum.item()) / tail, "steps": float(steps)}


def recalibrate_bn(model, x, *, batch_size: int = 512, limit: int = 2048) -> None:
    """Re-estimate BatchNorm running statistics as exact averages over (up to ``limit``) training examples.

    After a few hundred steps the momentum-averaged statistics still carry the initial (or meta-learned)
    values and the early weights; evaluation in eval mode then misjudges short-trained networks.
    """
    import torch
    from torch import nn

    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns or len(x) == 0:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: exact mean over the batches seen
    model.train()
    with torch.no_grad():
        for i in range(0, min(len(x), limit), batch_size):
            model(x[i:i + batch_size])
    for m, momentum in zip(bns, saved):
        m.momentum = momentum


def evaluate(model, x, y, *, device: str, batch_size: int = 512) -> tuple[float, float]:
    """``(accuracy, mean cross-entropy)`` of ``model`` in eval mode."""
    import torch
    import torch.nn.functional as F

    model.eval()
    correct, total_loss = 0, 0.0
    cuda = str(device).startswith("cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
        for i in range(0, len(y), batch_size):
            logits = model(x[i:i + batch_size]).float()
            total_loss += float(F.cross_entropy(logits, y[i:i + batch_size], reduction="sum").item())
            correct += int((logits.argmax(1) == y[i:i + batch_size]).sum().item())
    n = max(1, len(y))
    return correct / n, total_loss / n


def build_for(graph, data, settings: TrainSettings, seed: int):
    """The network of ``graph`` for ``data``, with PyTorch's default init drawn from ``seed`` (on CPU)."""
    import torch

    from evonas.models import build_model

    torch.manual_seed(int(seed) & 0x7FFF_FFFF_FFFF_FFFF)
    return build_model(graph, in_channels=data.in_channels, num_classes=data.num_classes, C=settings.C,
                       N=settings.N)


def short_train(graph, data, settings: TrainSettings, *, seed: int, device: str = "cpu", init=None,
                steps: int | None = None) -> tuple[Any, dict[str, float]]:
    """Build, (warm-start,) train and score one architecture. Returns ``(model, metrics)``; raises
    :class:`NonFiniteLoss` when training diverges."""
    model = build_for(graph, data, settings, seed)
    metrics: dict[str, float] = {}
    if init is not None:
        metrics["warm_frac"] = init.apply(model)
    model.to(device)
    x_tr, y_tr, x_va, y_va, x_te, y_te = device_arrays(data, device)
    total = int(steps) if steps is not None else settings.total_steps(len(y_tr))
    start = time.perf_counter()
    metrics.update(train_steps(model, x_tr, y_tr, settings, steps=total, seed=seed, device=device))
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)
    metrics["train_time_s"] = time.perf_counter() - start
    recalibrate_bn(model, x_tr, batch_size=settings.eval_batch_size)
    metrics["val_acc"], metrics["val_loss"] = evaluate(model, x_va, y_va, device=device,
                                                       batch_size=settings.eval_batch_size)
    metrics["test_acc"], metrics["test_loss"] = evaluate(model, x_te, y_te, device=device,
                                                         batch_size=settings.eval_batch_size)
    metrics["params"] = float(sum(p.numel() for p in model.parameters()))
    return model, metrics


def import_ops_modules(specs: Sequence[str], base_dir: Path | None = None) -> None:
    """Import modules that register ops: ``"package.module"`` or ``"path/to/file.py"``."""
    from evonas.plugins import load_module

    for spec in specs:
        load_module(spec, f"ops module {spec!r}", base_dir)


# --- the fitness ----------------------------------------------------------------------------------------
class TrainingFitness:
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
    def _initializer(self):
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

    def __call__(self, arch: Architecture, ctx: EvalContext) -> EvalResult:
        import torch

        torch.set_num_threads(worker_threads(self.settings.threads, self.jobs))
        import_ops_modules(self.settings.ops_modules, self.base_dir)
        device = ctx.device or select_device(self.settings.device, ctx.key)
        data = self.dataset()
        init = self._initializer()
        budget = dict(ctx.budget or {})
        try:
            model, metrics = short_train(arch.graph, data, self.settings, seed=ctx.seed, device=device, init=init,
                                         steps=budget.get("steps"))
        except NonFiniteLoss as err:
            return EvalResult.failed(str(err))
        if self.weights_dir:
            from evonas.export import save_weights

            save_weights(model, self.weights_dir, ctx.key)
        if self.online and self.workdir is not None:
            state = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()
                     if v.is_floating_point()}
            tmp = os.path.join(self.workdir, f".trained-{ctx.key}.pt.tmp")
            torch.save(state, tmp)
            os.replace(tmp, os.path.join(self.workdir, f"trained-{ctx.key}.pt"))
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
    "threads": ((int,), 1), "grad_clip": ((float, int), 5.0), "ops_modules": ((list,), []),
}


def _check_section(cfg: RunConfig, section: str, data: Mapping[str, Any], schema) -> dict[str, Any]:
    from evonas.config import _check_keys

    return _check_keys(cfg.where(), section, data, schema)


def _blame_error(cfg: RunConfig, section: str, values: Mapping[str, Any], err: Exception):
    key = str(err).split(":", 1)[0].strip()
    if key not in values:
        key = next(iter(values), "name")
    return cfg.error(section, key, values.get(key), str(err).split(":", 1)[-1].strip())


def validate_data(section: Mapping[str, Any], cfg: RunConfig, name: str = "data") -> DataSpec:
    """``[data]`` (or a table named ``name``) -> :class:`DataSpec` (paths resolved against the config's
    folder)."""
    values = _check_section(cfg, name, section, _DATA_KEYS)
    if values["name"] not in DATASETS:
        raise cfg.error(name, "name", values["name"], f"unknown dataset (known: {', '.join(DATASETS)})")
    if values["name"] != "digits" and not values["path"]:
        raise cfg.error(name, "path", values["path"], f"dataset {values['name']!r} needs a path (no downloads)")
    if values["path"]:
        path = cfg.resolve(values["path"])
        if not path.exists():
            raise cfg.error(name, "path", values["path"], f"{path} not found")
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


def validate_training(section: Mapping[str, Any], cfg: RunConfig) -> TrainSettings:
    """``[training]`` -> :class:`TrainSettings`."""
    values = _check_section(cfg, "training", section, _TRAINING_KEYS)
    for key in ("epochs", "lr", "momentum", "weight_decay", "label_smoothing", "grad_clip"):
        values[key] = float(values[key])
    if not all(isinstance(m, str) and m for m in values["ops_modules"]):
        raise cfg.error("training", "ops_modules", values["ops_modules"], "expected a list of module names or .py paths")
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


EXTRA_SECTIONS["data"] = validate_data
EXTRA_SECTIONS["training"] = validate_training


def _section(cfg: RunConfig, name: str, validate):
    if name in cfg.extra:
        return cfg.extra[name]
    return validate(cfg.raw.get(name, {}), cfg)


@fitness_kind("train", {})
def _train_fitness(cfg: RunConfig, section: Mapping[str, Any], space) -> TrainingFitness:
    data = _section(cfg, "data", validate_data)
    settings = _section(cfg, "training", validate_training)
    warm = cfg.extra.get("warm_start")
    if warm is None and "warm_start" in cfg.raw:
        warm = validate_warm_start(cfg.raw["warm_start"], cfg)
    if warm is not None and not warm.enabled:
        warm = None
    _check_ops(cfg, space, settings)
    unknown = [m for m in cfg.metric_columns() if m not in METRICS]
    if unknown:
        raise cfg.error("fitness", "objectives/report", unknown[0],
                        f"not a metric of kind 'train' (it returns: {', '.join(METRICS)})")
    if warm is not None and warm.init:
        _check_init(cfg, warm, settings)
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


__all__ = ["TrainSettings", "TrainingFitness", "short_train", "train_steps", "evaluate", "build_for",
           "select_device", "worker_threads", "device_arrays", "NonFiniteLoss", "METRICS", "validate_data",
           "validate_training"]
