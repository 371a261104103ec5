"""Fitness functions for the durability tests (loaded by path, as a config's ``function = "file.py:name"``).

Each result depends only on the architecture string and the evaluation seed, so any run with the same seed
must reproduce it whatever the workers, the backend, or crashes in between.
"""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path

import numpy as np


def _score(arch, ctx) -> dict[str, float]:
    rng = np.random.default_rng(ctx.seed)
    s = arch.string
    return {"acc": 10.0 * s.count("conv_3x3") + 4.0 * s.count("conv_1x1") + 2.0 * s.count("skip")
            + rng.normal(), "noise": float(rng.random())}


def _burn(seconds: float) -> None:
    """Spend ``seconds`` of CPU time (not sleeping)."""
    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
        x += 1


def work(arch, ctx, cost: float = 0.0):
    """Costs ``cost`` seconds of CPU; deterministic metrics."""
    if cost:
        _burn(cost)
    return _score(arch, ctx)


def crash_group(arch, ctx, at: int = 5, marker: str = "", cost: float = 0.0):
    """At evaluation ``at`` (once: ``marker`` file), SIGKILL the run's whole process group: a machine crash.
    (The run is started as a session leader; an isolated evaluation has a process group of its own.)"""
    if cost:
        _burn(cost)
    if ctx.key == at and marker and not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        os.killpg(os.getsid(0), signal.SIGKILL)
    return _score(arch, ctx)


def kill_self(arch, ctx):
    """Kills its own process (SIGKILL) for cells with avg_pool on the first edge."""
    if "avg_pool_3x3~0|+" in arch.string:
        os.kill(os.getpid(), signal.SIGKILL)
    return _score(arch, ctx)


def exit_hard(arch, ctx):
    """Leaves without a word for cells with avg_pool on the first edge (os._exit)."""
    if "avg_pool_3x3~0|+" in arch.string:
        os._exit(3)
    return _score(arch, ctx)


def hang(arch, ctx):
    """Never returns for cells with avg_pool on the first edge (blocks forever, no CPU)."""
    if "avg_pool_3x3~0|+" in arch.string:
        import threading

        threading.Event().wait()
    return _score(arch, ctx)


def bad_values(arch, ctx):
    """NaN for cells starting with none, +inf for skip_connect: non-finite metrics."""
    out = _score(arch, ctx)
    if arch.string.startswith("|none~0|"):
        out["acc"] = math.nan
    elif arch.string.startswith("|skip_connect~0|"):
        out["acc"] = math.inf
    return out


def cuda_oom(arch, ctx):
    """Raises torch's real CUDA out-of-memory error type for cells with conv_3x3 on the first edge."""
    if arch.string.startswith("|nor_conv_3x3~0|"):
        import torch

        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    return _score(arch, ctx)


def always_fails(arch, ctx):
    raise RuntimeError("broken fitness")


def flaky_once(arch, ctx, marker_dir: str = ""):
    """Fails the first attempt of every evaluation (a transient failure), succeeds on the retry."""
    mark = Path(marker_dir) / f"seen-{ctx.key}"
    if not mark.exists():
        mark.write_text("1")
        raise OSError("transient: device busy")
    return _score(arch, ctx)
