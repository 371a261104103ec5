"""Loading user code named in a config: ``"package.module:name"`` or ``"path/to/file.py:name"``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any


def load_module(target: str, what: str, base_dir: Path | None = None) -> ModuleType:
    """Import ``"package.module"``, or load ``"path/to/file.py"`` (resolved against ``base_dir`` when
    relative) once per process. ``what`` starts the one-line ``ValueError`` raised when it cannot."""
    if not target.endswith(".py"):
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
