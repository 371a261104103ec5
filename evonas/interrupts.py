"""Telling a real interrupt of the run (Ctrl-C, SIGTERM) from a ``KeyboardInterrupt`` a fitness raises.

While :func:`handled` is active (the search loop), SIGINT (and SIGTERM, with :func:`stop_on_sigterm`)
raise ``KeyboardInterrupt`` through :func:`raise_interrupt`, which counts them. A ``KeyboardInterrupt``
out of a fitness with no signal counted since it started is the fitness's own: a failed evaluation, not
the end of the run.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_received = 0


def raise_interrupt(signum, frame) -> None:
    """A signal handler: count the signal, then raise ``KeyboardInterrupt`` (a graceful stop)."""
    global _received
    _received += 1
    raise KeyboardInterrupt


def received() -> int:
    """How many interrupting signals this process has received through :func:`raise_interrupt`."""
    return _received


def is_real(seen: int) -> bool:
    """Whether a ``KeyboardInterrupt`` caught now may come from a signal received since ``received()`` was
    ``seen`` (True also when this process's SIGINT handler is not ours and could have raised it)."""
    handler = signal.getsignal(signal.SIGINT)
    if handler is raise_interrupt:
        return _received != seen
    return handler is not signal.SIG_IGN


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Route SIGINT through :func:`raise_interrupt` (main thread, default handler only) while inside."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    signal.signal(signal.SIGINT, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def stop_on_sigterm() -> None:
    """SIGTERM (batch schedulers) stops the run gracefully, like Ctrl-C."""
    signal.signal(signal.SIGTERM, raise_interrupt)


def ignore_sigint() -> None:
    """In a worker process: a Ctrl-C is the main process's business (it stops the run and the workers)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
