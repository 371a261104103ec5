"""Fitness functions that misbehave on purpose, for the hardening tests (loaded by path)."""

from __future__ import annotations

import ctypes
import os
import select
import sys
from pathlib import Path


def _block_forever() -> None:
    while True:  # no CPU, no sleeping: wait on nothing
        select.select([], [], [])


def background_child(arch, ctx, pid_dir: str = "", setsid: bool = False):
    """Leave a child behind that holds every inherited descriptor (the result pipe too); with ``setsid`` it
    leaves the process group and double-forks, so only its ancestry ties it to the evaluation. Returns once
    the child has written its pid file."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            if setsid:
                os.setsid()
                if os.fork():
                    os._exit(0)  # the daemon's parent leaves: the daemon is an orphan
            Path(pid_dir, f"{ctx.key}-{os.getpid()}.pid").write_text(str(os.getpid()))
            os.write(ready_w, b"1")
            _block_forever()
        finally:
            os._exit(0)
    os.close(ready_w)
    os.read(ready_r, 1)
    os.close(ready_r)
    if setsid:
        os.waitpid(pid, 0)
    return {"acc": float(len(arch.string) % 17 + ctx.seed % 5)}


def misbehave(arch, ctx, how: str = ""):
    """For cells with avg_pool on the first edge: ``exit`` (sys.exit), ``interrupt`` (KeyboardInterrupt),
    ``_exit`` (os._exit(1)) or ``segfault``; others score deterministically."""
    if "avg_pool_3x3~0|+" in arch.string:
        if how == "exit":
            sys.exit(3)
        if how == "interrupt":
            raise KeyboardInterrupt
        if how == "_exit":
            os._exit(1)
        if how == "segfault":
            ctypes.string_at(0)
    return {"acc": float(len(arch.string) % 17 + ctx.seed % 5)}
