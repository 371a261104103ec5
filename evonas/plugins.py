"""Loading user code named in a config: ``"package.module:name"`` or ``"path/to/file.py:name"``.

Reading a run directory (``evonas report``, ``evonas export``) must not run code that the directory names:
a run directory is data, possibly received from someone else. Inside :func:`code_from` with
``trust=False`` every import of a module not already loaded raises :class:`UntrustedCode`; with
``trust=True`` each one is announced on stderr.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from types import ModuleType
from typing import Any


class UntrustedCode(ValueError):
    """Code named in data (a run directory) that the user did not allow to run."""


#: (where the names come from, trusted) while reading data that may name code; None: a config the user runs
_reading: ContextVar[tuple[str, bool] | None] = ContextVar("evonas_reading", default=None)


@contextlib.contextmanager
def code_from(where: str, trust: bool = False) -> Iterator[None]:
    """While reading ``where`` (a run directory): refuse to import code it names (``trust=False``), or
    import it and say so on stderr (``trust=True``)."""
    token = _reading.set((str(where), bool(trust)))
    try:
        yield
    finally:
        _reading.reset(token)


def _gate(target: str, what: str) -> None:
    reading = _reading.get()
    if reading is None:
        return
    where, trust = reading
    if not trust:
        raise UntrustedCode(f"{what}: {where} names code ({target!r}) that reading it would import and run; "
                            "pass --trust-code if you trust this run directory")
    print(f"evonas: --trust-code: importing {target!r}, named in {where}", file=sys.stderr)


def load_module(target: str, what: str, base_dir: Path | None = None) -> ModuleType:
    """Import ``"package.module"``, or load ``"path/to/file.py"`` (resolved against ``base_dir`` when
    relative) once per process. ``what`` starts the one-line ``ValueError`` raised when it cannot."""
    if not target.endswith(".py"):
        if target not in sys.modules:  # an already imported module runs no new code
            _gate(target, what)
        try:
            return importlib.import_module(target)
        except ImportError as err:
            raise ValueError(f"{what}: cannot import {target!r} ({err})") from None
    path = Path(target).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    path = path.resolve()
    name = f"evonas_user_{path.stem}_{abs(hash(str(path))):x}"
    if name in sys.modules:
        return sys.modules[name]
    if not path.is_file():
        raise ValueError(f"{what}: file {path} not found")
    _gate(str(path), what)
    file_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(file_spec)
    sys.modules[name] = module
    file_spec.loader.exec_module(module)
    return module


def load_object(spec: str, kind: str = "object", base_dir: Path | None = None) -> Any:
    """Import the object that ``spec`` names.

    ``"package.module:name"`` imports a module; ``"file.py:name"`` loads a source file, resolved against
    ``base_dir`` when relative. Raises ``ValueError`` with a one-line reason.
    """
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise ValueError(f"{kind} {spec!r}: expected 'package.module:name' or 'file.py:name'")
    module = load_module(target, f"{kind} {spec!r}", base_dir)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"{kind} {spec!r}: module {target!r} has no attribute {attr!r}") from None
