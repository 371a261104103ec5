"""Loading user code named in a config: ``"package.module:name"`` or ``"path/to/file.py:name"``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any


def load_object(spec: str, kind: str = "object", base_dir: Path | None = None) -> Any:
    """Import the object that ``spec`` names.

    ``"package.module:name"`` imports a module; ``"file.py:name"`` loads a source file, resolved against
    ``base_dir`` when relative. Raises ``ValueError`` with a one-line reason.
    """
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise ValueError(f"{kind} {spec!r}: expected 'package.module:name' or 'file.py:name'")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        path = path.resolve()
        if not path.is_file():
            raise ValueError(f"{kind} {spec!r}: file {path} not found")
        mod_name = f"evonas_user_{path.stem}_{abs(hash(str(path))):x}"
        module = sys.modules.get(mod_name)
        if module is None:
            file_spec = importlib.util.spec_from_file_location(mod_name, path)
            module = importlib.util.module_from_spec(file_spec)
            sys.modules[mod_name] = module
            file_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as err:
            raise ValueError(f"{kind} {spec!r}: cannot import {target!r} ({err})") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"{kind} {spec!r}: module {target!r} has no attribute {attr!r}") from None
