"""Hardening (issue 14): run directories are data, crafted files run no code, nothing hangs or sticks, and
bad input of every kind is one line on stderr with exit code 2. Crafted files are made in the tests."""

from __future__ import annotations

import ast
import csv
import json
import os
import pickle
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import evonas
from evonas.cli import main
from evonas.config import ConfigError, load_config, parse_config
from evonas.store import STORE_NAME, SQLiteStore

REPO = Path(__file__).resolve().parents[1]
FITNESS = Path(__file__).with_name("durable_fitness.py")


def table_toml(table: Path, *, budget: int = 12, search: str = "", fitness: str = "", objective: str = "acc") -> str:
    return textwrap.dedent(f"""\
        [space]
        name = "nb201"
        [strategy]
        name = "random"
        [fitness]
        kind = "table"
        table = "{table}"
        objectives = [{json.dumps(objective)}]
        {fitness}
        [search]
        budget = {budget}
        seed = 1
        batch_size = 4
        """) + search


def one_line_error(capsys, code: int) -> str:
    """The CLI exited with 2 and wrote exactly one line (no traceback) to stderr; returns it."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("evonas: error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def table_run(tmp_path, small_table):
    cfg = tmp_path / "t.toml"
    cfg.write_text(table_toml(small_table))
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    return out


# --- 1. reading a run directory imports no code ------------------------------------------------------------
EVIL = textwrap.dedent("""\
    from pathlib import Path
    Path({marker!r}).write_text("imported")
    from evonas.spaces import NB201Space

    class Space(NB201Space):
        pass
    """)


@pytest.mark.parametrize("form", ["file", "module"])
def test_report_and_export_import_no_code_named_in_a_run_directory(table_run, tmp_path, capsys, monkeypatch,
                                                                   form):
    marker = tmp_path / "IMPORTED"
    plugin = tmp_path / "plugins" / "evil_space_mod.py"
    plugin.parent.mkdir()
    plugin.write_text(EVIL.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(plugin.parent))
    summary = json.loads((table_run / "summary.json").read_text())
    summary["space"]["name"] = f"{plugin}:Space" if form == "file" else "evil_space_mod:Space"
    (table_run / "summary.json").write_text(json.dumps(summary))
    capsys.readouterr()
    assert main(["report", str(table_run)]) == 0
    assert main(["export", str(table_run), "--out", str(tmp_path / "a.json")]) == 2
    err = capsys.readouterr().err
    assert not marker.exists()
    assert "--trust-code" in err
    assert main(["export", str(table_run), "--trust-code", "--out", str(tmp_path / "a.json")]) == 0
    assert marker.exists()
    assert "--trust-code: importing" in capsys.readouterr().err


# --- 2. the exported module is code made only of escaped literals --------------------------------------------
def test_a_metric_name_cannot_inject_code_into_the_exported_module(tmp_path):
    from evonas.api import run_config
    from evonas.export import export

    marker = tmp_path / "PWNED"
    name = f'acc"""; import pathlib; pathlib.Path(r"{marker}").touch(); """ \\'
    assert ":" not in name.replace(str(marker), "")
    table = tmp_path / "t.csv"
    from evonas.spaces import NB201Space

    space = NB201Space()
    with table.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["arch", name])
        for i, g in enumerate(space.enumerate()):
            w.writerow([space.to_string(g), i / 100])
    doc = {"space": {"name": "nb201"}, "strategy": {"name": "random"},
           "fitness": {"kind": "table", "table": str(table), "objectives": [name]},
           "search": {"budget": 6, "seed": 0}}
    out = tmp_path / 'run"""x'
    run_config(parse_config(doc), out)
    files = export(out, "torch", tmp_path / "net.py", program=False)
    source = files[0].read_text()
    tree = ast.parse(source)
    doc = "".join(ast.get_docstring(tree).split())  # the metrics line is wrapped
    assert "".join(name.split()) in doc and str(out.resolve()) in doc
    exec(compile(tree, str(files[0]), "exec"), {"__name__": "exported", "__file__": str(files[0])})
    assert not marker.exists()


# --- 3. CIFAR batches through a restricted unpickler ---------------------------------------------------------
class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _cifar_batch(n: int = 20, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"training batch 1 of 5", b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"img{i}.png".encode() for i in range(n)]}


def test_cifar_batches_cannot_run_code(tmp_path):
    from evonas.data import DataError, DataSpec, _load_cached

    def load_dataset(spec):  # the loader caches by the folder's mtime, which rewriting a file keeps
        from evonas.data import load_dataset

        _load_cached.cache_clear()
        return load_dataset(spec)

    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for protocol in (2, 4, 5):  # the real files are protocol 2 (Python 2's cPickle)
        for i in range(1, 3):
            (root / f"data_batch_{i}").write_bytes(pickle.dumps(_cifar_batch(seed=i), protocol=protocol))
        (root / "test_batch").write_bytes(pickle.dumps(_cifar_batch(seed=9), protocol=protocol))
        (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"cat"] * 10}, protocol=protocol))
        data = load_dataset(DataSpec("cifar10", path=str(tmp_path), val_fraction=0.2))
        assert data.num_classes == 10 and data.x_train.shape[1:] == (3, 32, 32)
    marker = tmp_path / "PWNED"
    evil = _cifar_batch()
    evil[b"labels"] = _Payload(marker)
    (root / "data_batch_2").write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(DataError) as info:
        load_dataset(DataSpec("cifar10", path=str(tmp_path), val_fraction=0.2))
    message = str(info.value)
    assert not marker.exists()
    assert str(root / "data_batch_2") in message and "posix.system" in message and "\n" not in message
    evil_array = _cifar_batch()
    evil_array[b"data"] = np.array([_Payload(marker)], dtype=object)
    (root / "data_batch_2").write_bytes(pickle.dumps(evil_array, protocol=5))
    with pytest.raises(DataError, match="data_batch_2"):
        load_dataset(DataSpec("cifar10", path=str(tmp_path), val_fraction=0.2))
    assert not marker.exists()


# --- 9. every export is written to a temporary file and renamed ----------------------------------------------
def test_every_export_is_replaced_atomically(table_run, tmp_path):
    from evonas.export import export

    def inodes(paths):
        return {p: os.stat(p).st_ino for p in paths}

    # a kept descriptor of the old file pins its inode: a rewrite in place keeps it, a rename does not
    outputs = [table_run / "history.csv", table_run / "summary.json"]
    cfg = tmp_path / "t.toml"
    held = [open(p) for p in outputs]
    before = inodes(outputs)
    assert main(["run", str(cfg), "--out", str(table_run), "--resume", "--quiet"]) == 0
    assert all(before[p] != os.stat(p).st_ino for p in outputs)
    assert main(["report", str(table_run)]) == 0
    report_files = [table_run / "report.html", *sorted((table_run / "figures").glob("*.png"))]
    held += [open(p, "rb") for p in report_files]
    before = inodes(report_files)
    assert main(["report", str(table_run)]) == 0
    assert all(before[p] != os.stat(p).st_ino for p in report_files)
    files = export(table_run, "arch", tmp_path / "a.json") + export(table_run, "torch", tmp_path / "n.py",
                                                                    program=False)
    held += [open(p, "rb") for p in files]
    before = inodes(files)
    export(table_run, "arch", tmp_path / "a.json")
    export(table_run, "torch", tmp_path / "n.py", program=False)
    assert all(before[p] != os.stat(p).st_ino for p in files)
    for fh in held:
        fh.close()
    assert not list(table_run.glob(".*.tmp")) and not list(tmp_path.glob(".*.tmp*"))


def test_a_failed_rewrite_leaves_the_old_history_whole(table_run, tmp_path, monkeypatch):
    import evonas.results as results

    old = (table_run / "history.csv").read_bytes()
    calls = {"n": 0}
    real = results._cell

    def failing(value):
        calls["n"] += 1
        if calls["n"] > 5:
            raise OSError(28, "No space left on device")
        return real(value)

    monkeypatch.setattr(results, "_cell", failing)
    with pytest.raises(OSError):
        results.write_history(table_run / "history.csv", SQLiteStore(table_run / STORE_NAME).trials(), ["acc"])
    assert (table_run / "history.csv").read_bytes() == old
    assert not list(table_run.glob(".*.tmp"))
