"""Torch training primitives: settings, devices and threads, minibatch training, BatchNorm recalibration,
evaluation, building and short-training one network, saving its weights.

No config and no fitness here (the ``train`` kind is :mod:`evonas.fitness.train`); torch is imported
inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "constant")
AUGMENTS = ("none", "crop", "crop-flip")


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
    group: int = 1  # >1: a worker trains that many individuals at once (evonas.multitrain; isolate = false)

    def __post_init__(self):
        for key, ok in (("C", self.C >= 1), ("N", self.N >= 1), ("steps", self.steps >= 0),
                        ("epochs", self.epochs >= 0), ("batch_size", self.batch_size >= 1),
                        ("optimizer", self.optimizer in OPTIMIZERS), ("lr", self.lr > 0),
                        ("momentum", 0 <= self.momentum < 1), ("weight_decay", self.weight_decay >= 0),
                        ("label_smoothing", 0 <= self.label_smoothing < 1),
                        ("schedule", self.schedule in SCHEDULES), ("warmup", self.warmup >= 0),
                        ("augment", self.augment in AUGMENTS), ("eval_batch_size", self.eval_batch_size >= 1),
                        ("threads", self.threads >= 0), ("grad_clip", self.grad_clip >= 0), ("group", self.group >= 1)):
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


class TrainStepper:
    """One network's minibatch training, one step at a time: :func:`train_steps` runs it to the end, and
    :mod:`evonas.multitrain` interleaves several. Same arguments as :func:`train_steps`; the model is put
    in train mode."""

    def __init__(self, model, x, y, settings: TrainSettings, *, steps: int, seed: int, device: str,
                 lr: float | None = None, schedule: bool = True):
        import torch
        from torch import nn

        self.model, self.x, self.y, self.settings, self.steps = model, x, y, settings, int(steps)
        self.gen = torch.Generator().manual_seed(int(seed) & 0x7FFF_FFFF_FFFF_FFFF)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.lr = float(lr if lr is not None else settings.lr)
        if settings.optimizer == "sgd":
            self.opt = torch.optim.SGD(self.params, lr=self.lr, momentum=settings.momentum,
                                       nesterov=settings.momentum > 0, weight_decay=settings.weight_decay)
        else:
            self.opt = torch.optim.AdamW(self.params, lr=self.lr, weight_decay=settings.weight_decay)
        self.factor = _schedule(settings, self.steps) if schedule else (lambda step: 1.0)
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
        self.cuda = str(device).startswith("cuda")
        self.n = len(y)
        self.bs = min(settings.batch_size, self.n)
        self.order = torch.randperm(self.n, generator=self.gen).to(x.device)
        self.pos = 0
        self.tail = max(1, self.steps // 4)
        self.tail_sum = torch.zeros((), device=x.device)
        self.done_steps = 0
        model.train()

    @property
    def done(self) -> bool:
        return self.done_steps >= self.steps

    def step(self) -> None:
        """One optimiser step; raises :class:`NonFiniteLoss` when the loss stops being finite."""
        import torch
        from torch import nn

        step, steps, settings = self.done_steps, self.steps, self.settings
        if self.pos + self.bs > self.n:
            self.order = torch.randperm(self.n, generator=self.gen).to(self.x.device)
            self.pos = 0
        idx = self.order[self.pos:self.pos + self.bs]
        self.pos += self.bs
        xb, yb = self.x[idx], self.y[idx]
        if settings.augment != "none":
            xb = _augment(xb, settings.augment, self.gen)
        for group in self.opt.param_groups:
            group["lr"] = self.lr * self.factor(step)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda):
            loss = self.loss_fn(self.model(xb), yb)
        if not self.cuda or step % 25 == 24 or step == steps - 1:
            if not torch.isfinite(loss).item():
                raise NonFiniteLoss(f"non-finite training loss ({loss.item()}) at step {step}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if settings.grad_clip:
            nn.utils.clip_grad_norm_(self.params, settings.grad_clip)
        self.opt.step()
        if step >= steps - self.tail:
            self.tail_sum += loss.detach().float()
        self.done_steps += 1

    def result(self) -> dict[str, float]:
        """``train_loss`` (mean over the last quarter of steps) and ``steps``."""
        return {"train_loss": float(self.tail_sum.item()) / self.tail, "steps": float(self.steps)}


def train_steps(model, x, y, settings: TrainSettings, *, steps: int, seed: int, device: str,
                lr: float | None = None, schedule: bool = True) -> dict[str, float]:
    """Train ``model`` in place for ``steps`` minibatch steps on tensors ``x``, ``y`` (already on ``device``).

    Returns ``train_loss`` (mean over the last quarter of steps) and ``steps``; raises
    :class:`NonFiniteLoss` when the loss stops being finite.
    """
    stepper = TrainStepper(model, x, y, settings, steps=steps, seed=seed, device=device, lr=lr, schedule=schedule)
    while not stepper.done:
        stepper.step()
    return stepper.result()


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


#: PyTorch's default init draws from the process-wide generator: seeding it and building must not interleave
#: between threads (the ``threading`` backend), or the weights depend on the schedule
_BUILD_LOCK = threading.Lock()


def build_for(graph, data, settings: TrainSettings, seed: int):
    """The network of ``graph`` for ``data``, with PyTorch's default init drawn from ``seed`` (on CPU);
    thread-safe: concurrent builds get the same weights as builds one at a time."""
    import torch

    from evonas.models import build_model

    with _BUILD_LOCK:
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
    metrics.update(score_trained(model, (x_tr, y_tr, x_va, y_va, x_te, y_te), settings, device=device))
    return model, metrics


def score_trained(model, arrays, settings: TrainSettings, *, device: str) -> dict[str, float]:
    """A trained ``model``'s BatchNorm recalibrated on the training split, then ``val_acc``, ``val_loss``,
    ``test_acc``, ``test_loss`` and ``params``; ``arrays`` as :func:`device_arrays` returns them."""
    x_tr, _, x_va, y_va, x_te, y_te = arrays
    recalibrate_bn(model, x_tr, batch_size=settings.eval_batch_size)
    metrics: dict[str, float] = {}
    metrics["val_acc"], metrics["val_loss"] = evaluate(model, x_va, y_va, device=device,
                                                       batch_size=settings.eval_batch_size)
    metrics["test_acc"], metrics["test_loss"] = evaluate(model, x_te, y_te, device=device,
                                                         batch_size=settings.eval_batch_size)
    metrics["params"] = float(sum(p.numel() for p in model.parameters()))
    return metrics


def import_ops_modules(specs: Sequence[str], base_dir: Path | None = None) -> None:
    """Import modules that register ops: ``"package.module"`` or ``"path/to/file.py"``."""
    from evonas.plugins import load_module

    for spec in specs:
        load_module(spec, f"ops module {spec!r}", base_dir)


def save_weights(model, directory: str | Path, key: int) -> Path | None:
    """Write ``model``'s state dict to ``directory/step-KEY.pt`` atomically (worker side). A worker that
    cannot write there (e.g. a cluster node without the run's file system) logs a warning and goes on:
    the export then retrains."""
    import logging

    import torch

    path = Path(directory) / f"step-{key}.pt"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
        os.replace(tmp, path)
    except OSError as err:
        logging.getLogger("evonas.export").warning("cannot keep the weights of evaluation %d in %s: %s", key,
                                                   directory, err)
        return None
    return path


__all__ = ["TrainSettings", "short_train", "train_steps", "TrainStepper", "score_trained", "evaluate", "build_for",
           "recalibrate_bn", "select_device", "worker_threads", "device_arrays", "NonFiniteLoss",
           "import_ops_modules", "save_weights"]
