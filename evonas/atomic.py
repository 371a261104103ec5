"""Atomic file writes: every export is written to a temporary file beside its target, then renamed over it.

A reader (or a process killed mid-write, or a full disk) therefore sees the old file or the new one, never
a truncated one. The temporary file is ``.NAME.PID.tmp`` in the target's folder (same file system, so the
rename is atomic) and is removed when the write fails.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


def temp_path(path: str | Path) -> Path:
    """The temporary name a write of ``path`` goes to before the rename."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """``open(path, mode)`` that writes a temporary file and renames it over ``path`` on success only."""
    if not any(c in mode for c in "wx"):
        raise ValueError(f"atomic_open: mode {mode!r} does not write")
    path = Path(path)
    tmp = temp_path(path)
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    try:
        with open(tmp, mode.replace("x", "w"), **kwargs) as fh:
            yield fh
            fh.flush()
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if err.filename:
            raise
        raise OSError(err.errno, f"cannot write ({err.strerror or err})", str(path)) from None  # name the file
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w", newline="") as fh:
        fh.write(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_with(path: str | Path, writer: Callable[[str], Any]) -> Path:
    """Let ``writer(temp_name)`` write a file by name (``torch.save``, ``savefig``, ``onnx.save``), then rename
    it over ``path``; the temporary file keeps ``path``'s suffix (some writers choose the format by it)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        writer(str(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path
