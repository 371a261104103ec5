"""One evaluation in its own process tree, which ends with it.

:func:`run_in_child` forks a *supervisor* (the leader of a new process group, and on Linux a child
subreaper, so every orphaned descendant of the evaluation is re-parented to it, also one that left the
group with ``setsid``), which forks the *runner* that calls the function. The runner sends its result as
one length-prefixed message on a pipe; when the runner ends without one, the supervisor sends its exit
status. The parent reads one message (never waits for end-of-file, which a background child holding the
pipe would delay forever), or stops at the time limit, then kills the whole tree: every descendant of the
supervisor (a ``psutil`` snapshot, repeated until none is left running), the process group, and the
supervisor itself. Nothing the evaluation started outlives it.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_HEADER = struct.Struct("!Q")
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
#: seconds between checks that the supervisor is still alive while waiting for a message
_CHECK_S = 1.0


@dataclass
class Outcome:
    """How a child run ended: ``value`` (what the function returned) when ``returned``; else
    ``timed_out``, or ``exit_code`` (negative: killed by that signal) of the process that died."""

    returned: bool = False
    value: Any = None
    timed_out: bool = False
    exit_code: int = 0


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except Exception:  # noqa: BLE001 - best effort
        return False


def _send(fd: int, kind: str, value: Any) -> None:
    data = pickle.dumps((kind, value), protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _runner(fn: Callable[[], Any], w: int) -> None:
    code = 70
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # dies with the supervisor
        _send(w, "value", fn())
        code = 0
    finally:
        os._exit(code)


def _supervise(fn: Callable[[], Any], r: int, w: int, parent: int) -> None:
    try:
        os.close(r)
        os.setpgid(0, 0)
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # dies with the worker
        if os.getppid() != parent:
            os._exit(75)
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)  # orphans of the evaluation become this process's children
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's business
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        runner = os.fork()
        if runner == 0:
            _runner(fn, w)
        while True:  # reap the runner (report how it ended) and every orphan, until killed
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    pid = 0
                if pid == 0:
                    break
                if pid == runner:
                    with contextlib.suppress(OSError):
                        _send(w, "exit", os.waitstatus_to_exitcode(status))
            signal.sigwaitinfo({signal.SIGCHLD})
    finally:
        os._exit(0)


class _Reader:
    """Collects bytes from the pipe until one whole message arrived."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, chunk: bytes) -> tuple[str, Any] | None:
        self.buf += chunk
        if len(self.buf) < _HEADER.size:
            return None
        (size,) = _HEADER.unpack_from(self.buf)
        if len(self.buf) < _HEADER.size + size:
            return None
        return pickle.loads(bytes(self.buf[_HEADER.size:_HEADER.size + size]))


def descendants(pid: int) -> list:
    """The live (not zombie) descendants of ``pid`` (``psutil.Process`` objects)."""
    import psutil

    try:
        procs = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    out = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
    return out


def kill_tree(pid: int, alive: bool = True, rounds: int = 2000) -> None:
    """SIGKILL every descendant of ``pid`` (snapshots until none is left running: a process may fork while
    it is being killed), its process group (``pid`` leads it), and ``pid`` itself unless ``alive`` is False
    (already reaped)."""
    import psutil

    for _ in range(rounds):
        procs = descendants(pid) if alive else []
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.kill()
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        if not procs:
            break
        time.sleep(0.001)  # let the kernel deliver the kills before the next snapshot
    if alive:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def run_in_child(fn: Callable[[], Any], time_limit: float = 0.0) -> Outcome:
    """Call ``fn()`` in a forked process tree (see the module docstring); its result must pickle.
    ``time_limit`` (seconds, 0: none): kill the tree when it passes without a result."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    start = time.monotonic()
    parent = os.getpid()
    r, w = os.pipe()
    sup = os.fork()
    if sup == 0:
        _supervise(fn, r, w, parent)
    os.close(w)
    deadline = start + time_limit if time_limit and time_limit > 0 else None
    reader, message, timed_out, status = _Reader(), None, False, None
    try:
        poller = select.poll()  # not select(): no limit on the fd number (Dask workers hold many sockets)
        poller.register(r, select.POLLIN | select.POLLHUP | select.POLLERR)
        while message is None:
            wait = _CHECK_S if deadline is None else min(_CHECK_S, deadline - time.monotonic())
            ready = poller.poll(max(0, int(wait * 1000)) + 1) if wait > 0 else []
            if ready:
                chunk = os.read(r, 1 << 20)
                if not chunk:  # every writer is gone: the supervisor died
                    break
                message = reader.feed(chunk)
                continue
            if deadline is not None and time.monotonic() >= deadline:
                timed_out = True
                break
            pid, st = os.waitpid(sup, os.WNOHANG)
            if pid:  # the supervisor died (killed from outside) without a word
                status = st
                break
    finally:
        kill_tree(sup, alive=status is None)
        if status is None:
            _, status = os.waitpid(sup, 0)
        os.close(r)
    if message is not None and message[0] == "value":
        return Outcome(returned=True, value=message[1])
    if timed_out:
        return Outcome(timed_out=True)
    if message is not None:  # the runner ended without a result: its exit status
        return Outcome(exit_code=int(message[1]))
    return Outcome(exit_code=os.waitstatus_to_exitcode(status))
