"""Reading pickles that hold data only (CIFAR python batches): a restricted unpickler.

``pickle.load`` runs whatever callable a file names, so a crafted ``data_batch_1`` runs code. The CIFAR
batches hold dicts, lists, bytes, str and ints (which need no import) and numpy arrays; the only globals a
batch may name are numpy's array and dtype reconstruction (under their numpy 1 and numpy 2 module paths),
and ``_codecs.encode`` with the latin-1 codec (how Python 3 writes bytes at protocols 0-2). Anything else
is refused with :class:`UnsafePickle`, naming the file and the global, before it is called.
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path
from typing import Any


class UnsafePickle(pickle.UnpicklingError):
    """A pickle naming a global that data files never need."""


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    if codecs.lookup(encoding).name != "iso8859-1":
        raise UnsafePickle(f"_codecs.encode with codec {encoding!r} (only latin-1 is allowed)")
    return codecs.encode(text, "latin1", errors)


def _dtype(*args: Any):
    import numpy as np

    dt = np.dtype(*args)
    if dt.hasobject:
        raise UnsafePickle(f"numpy dtype {dt} holds Python objects")
    return dt


def _allowed() -> dict[tuple[str, str], Any]:
    import numpy as np

    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1
        from numpy.core import multiarray, numeric
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): _dtype,
               ("_codecs", "encode"): _latin1_encode}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = multiarray._reconstruct
        allowed[(mod, "scalar")] = multiarray.scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(mod, "_frombuffer")] = numeric._frombuffer
    return allowed


class DataUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals of numpy arrays (see the module docstring)."""

    def __init__(self, file, *, encoding: str = "bytes", source: str = "<pickle>"):
        super().__init__(file, encoding=encoding)
        self._source = source
        self._allowed = _allowed()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickle(f"{self._source}: refuses to load global {module}.{name} (a data pickle holds "
                               "only dicts, lists, bytes, str, numbers and numpy arrays)") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickle(f"{self._source}: refuses a persistent id (not a data pickle)")


def load(path: str | Path, encoding: str = "bytes") -> Any:
    """Unpickle the data file ``path`` with :class:`DataUnpickler` (raises :class:`UnsafePickle` or
    another ``pickle.UnpicklingError``/``OSError``)."""
    path = Path(path)
    with path.open("rb") as fh:
        try:
            return DataUnpickler(io.BufferedReader(fh), encoding=encoding, source=str(path)).load()
        except UnsafePickle as err:
            if str(err).startswith(f"{path}: "):
                raise
            raise UnsafePickle(f"{path}: {err}") from None
