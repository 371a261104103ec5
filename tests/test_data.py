"""Dataset loaders on files written in the real formats (CIFAR python-pickle batches, .npz) and digits."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from evonas.data import DataError, DataSpec, load_dataset


def test_digits_splits_are_fixed_disjoint_and_normalised():
    d = load_dataset("digits")
    assert d.input_shape == (1, 8, 8) and d.num_classes == 10
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == 1797
    assert abs(len(d.y_test) / 1797 - 0.2) < 0.01 and abs(len(d.y_val) / (1797 - len(d.y_test)) - 0.15) < 0.01
    assert abs(float(d.x_train.mean())) < 1e-4 and abs(float(d.x_train.std()) - 1) < 1e-3
    for y in (d.y_train, d.y_val, d.y_test):  # stratified: every class in every split
        assert set(np.unique(y)) == set(range(10))
    # no image is in two splits
    rows = {split: {x.tobytes() for x in xs} for split, xs in
            (("train", d.x_train), ("val", d.x_val), ("test", d.x_test))}
    assert not rows["train"] & rows["test"] and not rows["val"] & rows["test"]
    again = load_dataset(DataSpec("digits", seed=0))
    assert np.array_equal(again.y_test, d.y_test)
    other = load_dataset(DataSpec("digits", seed=1))
    assert not np.array_equal(other.y_test, d.y_test)


def test_class_subsets_relabel():
    d = load_dataset(DataSpec("digits", classes=(7, 3)))
    assert d.num_classes == 2 and d.class_names == ["7", "3"]
    full = load_dataset("digits")
    assert len(d.y_test) == int((full.y_test == 7).sum() + (full.y_test == 3).sum())
    assert set(np.unique(d.y_train)) == {0, 1}
    with pytest.raises(DataError, match="distinct labels"):
        full.subset([3, 3])


def _batch(n, rng, label_key=b"labels", classes=10):
    return {b"batch_label": b"x", label_key: [int(v) for v in rng.integers(classes, size=n)],
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), b"filenames": [b"f"] * n}


def _dump(obj, path):
    with path.open("wb") as fh:
        pickle.dump(obj, fh)


def test_cifar10_python_batches(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    batches = [_batch(20, rng) for _ in range(5)]
    for i, b in enumerate(batches, start=1):
        _dump(b, root / f"data_batch_{i}")
    test = _batch(30, rng)
    _dump(test, root / "test_batch")
    names = [f"class{i}".encode() for i in range(10)]
    _dump({b"label_names": names, b"num_vis": 3072}, root / "batches.meta")
    # the parent folder works too (the archive's layout)
    d = load_dataset(DataSpec("cifar10", path=str(tmp_path), val_fraction=0.2))
    assert d.input_shape == (3, 32, 32) and d.num_classes == 10 and d.class_names[3] == "class3"
    assert len(d.y_train) + len(d.y_val) == 100 and len(d.y_test) == 30
    assert np.array_equal(d.y_test, np.asarray(test[b"labels"]))
    # row layout: 1024 red values, then green, then blue, each row-major; per-channel normalisation is an
    # increasing affine map, so each normalised channel correlates perfectly with the raw one
    raw = test[b"data"][0].reshape(3, 32, 32).astype(np.float64)
    for c in range(3):
        assert np.corrcoef(d.x_test[0, c].ravel(), raw[c].ravel())[0, 1] > 0.9999
    assert np.corrcoef(d.x_test[0, 0].ravel(), raw[1].ravel())[0, 1] < 0.5
    limited = load_dataset(DataSpec("cifar10", path=str(root), limit=10))
    assert len(limited.y_train) == 10


def test_cifar100_python_files(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    _dump({**_batch(50, rng, b"fine_labels", 100), b"coarse_labels": [0] * 50}, root / "train")
    test = _batch(10, rng, b"fine_labels", 100)
    _dump(test, root / "test")
    _dump({b"fine_label_names": [f"f{i}".encode() for i in range(100)], b"coarse_label_names": []}, root / "meta")
    d = load_dataset(DataSpec("cifar100", path=str(tmp_path)))
    assert d.num_classes == 100 and d.class_names[99] == "f99"
    assert np.array_equal(d.y_test, np.asarray(test[b"fine_labels"]))


def test_cifar_errors(tmp_path):
    with pytest.raises(DataError, match="no CIFAR batches"):
        load_dataset(DataSpec("cifar10", path=str(tmp_path)))
    _dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, tmp_path / "test_batch")
    _dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, tmp_path / "data_batch_1")
    with pytest.raises(DataError, match=r"shape \(2, 100\), expected \(N, 3072\)"):
        load_dataset(DataSpec("cifar10", path=str(tmp_path)))
    (tmp_path / "data_batch_1").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="not a CIFAR python-pickle batch"):
        load_dataset(DataSpec("cifar10", path=str(tmp_path)))
    with pytest.raises(DataError, match="needs a path"):
        load_dataset(DataSpec("cifar10"))


def test_npz_channels_last_with_labels_and_test_split(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "shapes.npz"
    x = rng.integers(0, 256, size=(60, 12, 12, 3), dtype=np.uint8)
    y = rng.choice([3, 10, 42], size=60)
    np.savez(path, x=x, y=y, x_test=x[:9], y_test=y[:9])
    d = load_dataset(DataSpec("npz", path=str(path)))
    assert d.input_shape == (3, 12, 12) and d.num_classes == 3 and d.class_names == ["3", "10", "42"]
    assert len(d.y_test) == 9 and np.array_equal(d.y_test, np.searchsorted([3, 10, 42], y[:9]))
    assert len(d.y_train) + len(d.y_val) == 60
    gray = tmp_path / "gray.npz"
    np.savez(gray, x=rng.random((40, 6, 6)).astype(np.float32), y=np.arange(40) % 4)
    g = load_dataset(DataSpec("npz", path=str(gray)))
    assert g.input_shape == (1, 6, 6) and len(g.y_test) > 0 and g.num_classes == 4


def test_npz_errors(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x=np.zeros((4, 5, 5)), labels=np.zeros(4))
    with pytest.raises(DataError, match=r"missing array\(s\) \['y'\]"):
        load_dataset(DataSpec("npz", path=str(path)))
    np.savez(path, x=np.zeros((4, 5, 5)), y=np.zeros(3, dtype=int))
    with pytest.raises(DataError, match="x has 4 examples but y has 3"):
        load_dataset(DataSpec("npz", path=str(path)))
    np.savez(path, x=np.zeros((4, 5)), y=np.zeros(4, dtype=int))
    with pytest.raises(DataError, match="expected images"):
        load_dataset(DataSpec("npz", path=str(path)))
    with pytest.raises(DataError, match="not found"):
        load_dataset(DataSpec("npz", path=str(tmp_path / "none.npz")))
