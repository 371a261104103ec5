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
from evonas.config import load_config, parse_config
from evonas.store import STORE_NAME, SQLiteStore
from tiny_configs import table_toml as shared_table_toml

REPO = Path(__file__).resolve().parents[1]
FITNESS = Path(__file__).with_name("durable_fitness.py")


def table_toml(table: Path, *, budget: int = 12, search: str = "", fitness: str = "", objective: str = "acc") -> str:
    """A random search on ``table`` in batches of 4 (``search``/``fitness``: further lines of those sections)."""
    return shared_table_toml(table, objective, 'name = "random"', budget=budget, fitness=fitness,
                             search="batch_size = 4\n" + search)


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


# --- 4. isolated evaluations read their result as a message and leave nothing behind ------------------------
HOSTILE = Path(__file__).with_name("hostile_fitness.py")
ISOLATED = textwrap.dedent("""
    import json, sys
    import evonas
    from evonas.fitness import CallableFitness
    from evonas.spaces import NB201Space

    hostile, pid_dir, setsid, limit = sys.argv[1], sys.argv[2], sys.argv[3] == "1", float(sys.argv[4])
    fit = CallableFitness(hostile + ":background_child", {"pid_dir": pid_dir, "setsid": setsid})
    result = evonas.search(NB201Space(), fit, ["acc"], strategy="random", budget=4, seed=0, jobs=2, batch_size=2,
                           isolate=True, time_limit=limit)
    print(json.dumps([[t.status, t.error, t.elapsed_s] for t in result.trials]))
""")


def _gone(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("setsid, limit", [(False, 0.0), (True, 0.0), (False, 20.0)])
def test_background_children_neither_hang_an_isolated_run_nor_outlive_it(tmp_path, setsid, limit):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", ISOLATED, str(HOSTILE), str(pid_dir), str(int(setsid)),
                             str(limit)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        out, err = "", "hung"
    finally:
        with __import__("contextlib").suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        pids = [int(p.read_text()) for p in pid_dir.glob("*.pid")]
        alive = [pid for pid in pids if not _gone(pid)]
        for pid in alive:
            os.kill(pid, signal.SIGKILL)
    assert out, err[-2000:]
    trials = json.loads(out)
    assert [t[0] for t in trials] == ["ok"] * 4, trials  # never a timeout, never a hang
    assert all(t[2] < 10 for t in trials)
    assert len(pids) == 4 and not alive  # each evaluation's background child died with it


# --- 5. no stuck run directory ----------------------------------------------------------------------------
def test_a_run_killed_before_it_recorded_itself_starts_anew(tmp_path, small_table, capsys):
    cfg = tmp_path / "t.toml"
    cfg.write_text(table_toml(small_table))
    assert main(["run", str(cfg), "--out", str(tmp_path / "ref"), "--quiet"]) == 0
    reference = (tmp_path / "ref" / "history.csv").read_text()
    for i, args in enumerate([[], ["--resume"]]):
        out = tmp_path / f"stuck{i}"
        out.mkdir()
        (out / ".lock").write_text("")
        SQLiteStore(out / STORE_NAME).close()  # the SIGKILL came between creating run.db and recording the run
        assert main(["run", str(cfg), "--out", str(out), "--quiet", *args]) == 0, capsys.readouterr().err
        assert _strip_times((out / "history.csv").read_text()) == _strip_times(reference)
    out = tmp_path / "empty"
    out.mkdir()  # killed before the store existed
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--resume"]) == 0
    assert main(["run", str(cfg), "--out", str(tmp_path / "nowhere"), "--quiet", "--resume"]) == 2


def _strip_times(history: str) -> list[list[str]]:
    rows = list(csv.reader(history.splitlines()))
    drop = rows[0].index("elapsed_s")
    return [[v for i, v in enumerate(r) if i != drop] for r in rows]


def _open_store(path, barrier, errors):
    barrier.wait()
    try:
        SQLiteStore(path).close()
    except Exception as err:  # noqa: BLE001 - reported to the test
        errors.put(f"{type(err).__name__}: {err}")


def test_racing_processes_create_one_shared_cache_db(tmp_path):
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    for round_ in range(6):
        path = tmp_path / f"cache{round_}.db"
        barrier, errors = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_open_store, args=(path, barrier, errors)) for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        found = []
        while not errors.empty():
            found.append(errors.get())
        assert not found and all(p.exitcode == 0 for p in procs), (found, [p.exitcode for p in procs])
        with SQLiteStore(path) as store:
            assert store.schema_version == 2


def test_racing_runs_share_a_new_cache_db(tmp_path, small_table):
    cache = tmp_path / "shared" / "cache.db"
    procs = []
    for i in range(3):
        cfg = tmp_path / f"r{i}.toml"
        cfg.write_text(table_toml(small_table, search=f'cache = true\ncache_db = "{cache}"\nseed = {i}\n')
                       .replace("seed = 1\n", ""))
        procs.append(subprocess.Popen([sys.executable, "-m", "evonas.cli", "run", str(cfg), "--out",
                                       str(tmp_path / f"o{i}"), "--quiet"], stderr=subprocess.PIPE, text=True))
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errs


# --- 6. isolate = false: a fitness that exits or interrupts itself is a failed evaluation ----------------------
@pytest.mark.parametrize("how, jobs", [("exit", 1), ("interrupt", 1), ("exit", 2), ("interrupt", 2),
                                       ("_exit", 2), ("segfault", 2)])
def test_without_isolation_a_fitness_that_exits_or_crashes_fails_alone(tmp_path, capsys, how, jobs):
    cfg = tmp_path / "c.toml"
    cfg.write_text(textwrap.dedent(f"""\
        [space]
        name = "nb201"
        [strategy]
        name = "random"
        [fitness]
        kind = "callable"
        function = "{HOSTILE}:misbehave"
        objectives = ["acc"]
        params = {{ how = "{how}" }}
        [search]
        budget = 12
        seed = 3
        jobs = {jobs}
        batch_size = 4
        isolate = false
        """))
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert len(rows) == 12
    bad = [r for r in rows if "avg_pool_3x3~0|+" in r["arch"]]
    assert bad and all(r["status"] == "failed" for r in bad)
    assert all(r["status"] == "ok" for r in rows if r not in bad)  # the rest of each batch is kept
    want = {"exit": "SystemExit: 3", "interrupt": "KeyboardInterrupt raised by the fitness",
            "_exit": "worker died", "segfault": "worker died"}[how]
    assert all(want in r["error"] for r in bad)
    cfg.write_text(cfg.read_text().replace("budget = 12", "budget = 20"))
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--resume"]) == 0
    assert len(list(csv.DictReader((out / "history.csv").open()))) == 20


def test_a_real_interrupt_still_stops_an_inline_run():
    from evonas import interrupts

    def fitness(arch, ctx):
        if ctx.key == 3:
            interrupts.raise_interrupt(signal.SIGINT, None)  # what the handler does on a real Ctrl-C
        return {"acc": 1.0}

    from evonas.spaces import NB201Space

    result = evonas.search(NB201Space(), fitness, ["acc"], strategy="random", budget=8, seed=0)
    assert result.status == "interrupted" and len(result.trials) == 3


# --- 7. bounds: workers capped at the batch, finite time limits -------------------------------------------
def test_workers_are_capped_at_the_batch_size_and_it_is_said_once(tmp_path, small_table, capsys):
    from evonas.api import build_search

    cfg = tmp_path / "t.toml"
    cfg.write_text(table_toml(small_table, search="jobs = 1000\n"))
    search = build_search(load_config(cfg))
    assert search.evaluator.jobs == 4
    capsys.readouterr()
    cfg.write_text(table_toml(small_table, fitness=f'', search="jobs = 1000\n").replace(
        'kind = "table"', f'kind = "callable"\nfunction = "{FITNESS}:work"').replace(f'table = "{small_table}"', ""))
    main(["--log-level", "warning", "run", str(cfg), "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert err.count("jobs = 1000: using 4 workers (the batch size)") == 1, err
    with pytest.raises(ValueError, match="time_limit"):
        evonas.search("nb201", lambda a, c: {"acc": 1.0}, ["acc"], budget=2, time_limit=float("inf"),
                      isolate=True, jobs=2)


@pytest.mark.parametrize("value", ["inf", "1e300", "nan", "-1"])
def test_a_time_limit_must_be_finite_and_bounded(tmp_path, small_table, capsys, value):
    cfg = tmp_path / "t.toml"
    cfg.write_text(table_toml(small_table, search=f"time_limit = {value}\nisolate = true\n"))
    line = one_line_error(capsys, main(["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]))
    assert "[search] time_limit" in line and str(cfg) in line


# --- 8. one-line errors (exit 2) instead of tracebacks ----------------------------------------------------------
GOOD_ROW = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
TABLES = {
    "utf16": ("arch,acc\n" + GOOD_ROW + ",1.0\n").encode("utf-16"),
    "latin1": ("arch,acc,note\n" + GOOD_ROW + ",1.0,caf\u00e9\n").encode("latin-1"),
    "huge_cell": ("arch,acc,note\n" + GOOD_ROW + ',1.0,"' + "x" * 140_000 + '"\n').encode(),
    "header_only": b"arch,acc\n",
    "dup_column": ("arch,acc,acc\n" + GOOD_ROW + ",1.0,2.0\n").encode(),
    "dup_arch": ("arch,acc\n" + GOOD_ROW + ",1.0\n" + GOOD_ROW + ",2.0\n").encode(),
}
WANT = {"utf16": "UTF-16", "latin1": "not UTF-8", "huge_cell": "field larger than field limit",
        "header_only": "no rows", "dup_column": "column 'acc' appears twice", "dup_arch": "on lines 2 and 3"}


@pytest.mark.parametrize("kind", sorted(TABLES))
def test_hostile_tables_are_refused_in_one_line(tmp_path, capsys, kind):
    table = tmp_path / "t.csv"
    table.write_bytes(TABLES[kind])
    cfg = tmp_path / "t.toml"
    cfg.write_text(table_toml(table))
    line = one_line_error(capsys, main(["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]))
    assert str(table) in line and WANT[kind] in line
    assert not (tmp_path / "o").exists()


def test_a_bom_before_the_arch_column_is_not_part_of_it(tmp_path, capsys):
    from evonas.fitness.table import Table

    table = tmp_path / "t.csv"
    table.write_bytes(("arch,acc\n" + GOOD_ROW + ",1.0\n").encode("utf-8-sig"))
    assert Table(table).lookup(GOOD_ROW, ["acc"]) == {"acc": 1.0}


def _config_cases(tmp_path: Path, table: Path) -> dict[str, tuple[str, str]]:
    """name -> (TOML, what the error must say)."""
    base = table_toml(table)
    a_dir = tmp_path / "a_dir"
    a_dir.mkdir()
    return {
        "table_is_a_directory": (base.replace(str(table), str(a_dir)), "not a regular file"),
        "table_is_dev_null": (base.replace(str(table), "/dev/null"), "not a regular file"),
        "table_through_a_file": (base.replace(str(table), f"{table}/../../x.csv"), "table"),
        "cache_db_is_a_directory": (base + f'cache = true\ncache_db = "{a_dir}"\n', "[search] cache_db"),
        "cache_db_is_dev_null": (base + 'cache = true\ncache_db = "/dev/null"\n', "[search] cache_db"),
        "cache_db_through_a_file": (base + f'cache = true\ncache_db = "{table}/x.db"\n', "not a directory"),
        "out_is_dev_null": (base + 'out = "/dev/null"\n', "[search] out"),
        "out_is_a_file": (base + f'out = "{table}"\n', "not a directory"),
        "out_through_a_file": (base + f'out = "{table}/sub"\n', "not a directory"),
    }


def test_config_paths_that_name_no_usable_file_are_refused_in_one_line(tmp_path, small_table, capsys):
    for name, (text, want) in _config_cases(tmp_path, small_table).items():
        cfg = tmp_path / f"{name}.toml"
        cfg.write_text(text)
        line = one_line_error(capsys, main(["run", str(cfg), "--quiet"]))
        assert want in line and str(cfg) in line, (name, line)
    assert small_table.is_file()


def test_config_files_that_are_no_config_are_refused_in_one_line(tmp_path, capsys):
    cases = {"garbage.toml": bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)),
             "deep.toml": b"a = " + b"[" * 50_000 + b"]" * 50_000 + b"\n",
             "deep_tables.toml": b"a = " + b"{b = " * 5000 + b"1" + b"}" * 5000 + b"\n"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        line = one_line_error(capsys, main(["run", str(tmp_path / name), "--quiet"]))
        assert str(tmp_path / name) in line
    (tmp_path / "dir.toml").mkdir()
    for path in (tmp_path / "dir.toml", Path("/dev/null")):
        assert str(path) in one_line_error(capsys, main(["run", str(path), "--quiet"]))


def _corrupt(db: Path) -> None:
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) > 3 * page
    rng = np.random.default_rng(1)
    data[page:] = rng.integers(0, 256, len(data) - page, dtype=np.uint8).tobytes()  # keep the header page
    db.write_bytes(bytes(data))


def test_a_corrupt_store_is_one_line(table_run, tmp_path, capsys):
    _corrupt(table_run / STORE_NAME)
    capsys.readouterr()
    line = one_line_error(capsys, main(["run", str(tmp_path / "t.toml"), "--out", str(table_run), "--resume",
                                        "--quiet"]))
    assert str(table_run / STORE_NAME) in line


def test_a_full_disk_is_one_line_and_leaves_history_whole(table_run, tmp_path, capsys, monkeypatch):
    import evonas.atomic as atomic

    old = (table_run / "history.csv").read_text()
    real_open = open

    class Full:
        """A file on a full disk: writes fail with ENOSPC (no file name, like the real error)."""

        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            raise OSError(28, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr(atomic, "open", lambda *a, **k: Full(real_open(*a, **k)), raising=False)
    cfg = tmp_path / "t.toml"
    cfg.write_text(cfg.read_text().replace("budget = 12", "budget = 20"))
    line = one_line_error(capsys, main(["run", str(cfg), "--out", str(table_run), "--resume", "--quiet"]))
    assert str(table_run / "history.csv") in line and "No space left on device" in line
    assert (table_run / "history.csv").read_text() == old  # the old export, whole
    assert not list(table_run.glob(".*.tmp"))
    with SQLiteStore(table_run / STORE_NAME) as store:
        assert len(store.trials()) == 20  # no finished work lost
    monkeypatch.undo()
    assert main(["run", str(cfg), "--out", str(table_run), "--resume", "--quiet"]) == 0
    assert len(list(csv.DictReader((table_run / "history.csv").open()))) == 20


def _read_only(monkeypatch, root: Path) -> None:
    """Make ``root`` read-only: for real (chmod) when not root, else by failing writes below it as a
    read-only file system would (root ignores permission bits)."""
    import builtins
    import errno
    import io

    if os.geteuid() != 0:
        root.chmod(0o555)
        return

    def guard(path, flags_or_mode=None):
        p = Path(os.fsdecode(path)).absolute()
        if p == root or root in p.parents:
            raise OSError(errno.EROFS, "Read-only file system", str(p))

    real_mkdir, real_os_open, real_open = os.mkdir, os.open, builtins.open

    def mkdir(path, *a, **k):
        guard(path)
        return real_mkdir(path, *a, **k)

    def os_open(path, flags, *a, **k):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            guard(path)
        return real_os_open(path, flags, *a, **k)

    def open_(file, mode="r", *a, **k):
        if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
            guard(file)
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)


def test_read_only_storage_is_one_line(table_run, tmp_path, capsys, monkeypatch):
    cfg = tmp_path / "t.toml"
    ro = tmp_path / "ro"
    ro.mkdir()
    shutil.copytree(table_run, ro / "run")
    _read_only(monkeypatch, ro)
    try:
        for args in (["run", str(cfg), "--out", str(ro / "new"), "--quiet"],
                     ["report", str(ro / "run")],
                     ["export", str(ro / "run")]):
            line = one_line_error(capsys, main(args))
            assert str(ro) in line, line
    finally:
        monkeypatch.undo()
        ro.chmod(0o755)


# --- 10. shared cache: provenance of every reused result ------------------------------------------------------
def test_cached_trials_record_the_run_they_came_from(tmp_path, small_table):
    cache = tmp_path / "cache.db"
    for name, budget in (("a", 12), ("b", 20)):  # b repeats a's first 12 proposals (same seed)
        cfg = tmp_path / f"{name}.toml"
        cfg.write_text(table_toml(small_table, budget=budget, search=f'cache = true\ncache_db = "{cache}"\n'))
        assert main(["run", str(cfg), "--out", str(tmp_path / name), "--quiet"]) == 0
    with SQLiteStore(tmp_path / "b" / STORE_NAME) as store:
        trials = store.trials()
    cached = [t for t in trials if t.cached]
    assert cached and all(t.cache_source == str(tmp_path / "a" / STORE_NAME) for t in cached)
    assert all(t.cache_source == "" for t in trials if not t.cached)
    rows = list(csv.DictReader((tmp_path / "b" / "history.csv").open()))
    assert sum(r["cached"] == "1" for r in rows) == len(cached)
    assert {r["cache_source"] for r in rows if r["cached"] == "1"} == {str(tmp_path / "a" / STORE_NAME)}
    readme = (REPO / "README.md").read_text()
    assert "depend on what other runs cached" in readme


def test_a_version_1_store_is_migrated(tmp_path):
    from evonas.store import _SCHEMA

    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    for stmt in _SCHEMA:
        conn.execute(stmt.replace(",\n        cache_source TEXT)", ")"))
    conn.execute("INSERT INTO evaluations (key, arch, canonical_hash, status, metrics, cached) "
                 "VALUES (0, 'a', 'h', 'ok', '{\"acc\": 1.0}', 1)")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with SQLiteStore(db) as store:
        assert store.schema_version == 2
        (trial,) = store.trials()
        assert trial.cached and trial.cache_source == "" and trial.metrics == {"acc": 1.0}


@pytest.mark.parametrize("dataset, path", [("cifar10", "/dev/null"), ("npz", "DIR"), ("npz", "TABLE/x.npz")])
def test_data_paths_of_the_wrong_kind_are_refused_in_one_line(tmp_path, small_table, capsys, dataset, path):
    path = path.replace("DIR", str(tmp_path)).replace("TABLE", str(small_table))
    cfg = tmp_path / "train.toml"
    cfg.write_text(f'[space]\nname = "nb201"\n[fitness]\nkind = "train"\nobjectives = ["val_acc"]\n'
                   f'[data]\nname = "{dataset}"\npath = "{path}"\n[search]\nbudget = 2\n')
    line = one_line_error(capsys, main(["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]))
    assert "[data] path" in line and str(cfg) in line


class _ExitingGroup(__import__("evonas").fitness.Fitness):
    """Evaluates groups; a group holding the candidate with key 1 calls sys.exit / raises KeyboardInterrupt."""

    group = 2

    def __init__(self, how: str):
        self.how = how

    def __call__(self, arch, ctx):
        raise AssertionError("grouped")

    def evaluate_group(self, archs, ctxs):
        if any(c.key == 1 for c in ctxs):
            if self.how == "exit":
                sys.exit(4)
            raise KeyboardInterrupt
        return [{"acc": 1.0} for _ in ctxs]


@pytest.mark.parametrize("how", ["exit", "interrupt"])
def test_a_grouped_fitness_that_exits_fails_its_group_alone(how):
    from evonas.evaluator import Candidate, Evaluator

    from evonas import interrupts

    cands = [Candidate(k, GOOD_ROW, f"h{k}") for k in range(6)]
    with interrupts.handled():  # as in the search loop: a real Ctrl-C would be counted
        trials = Evaluator(_ExitingGroup(how), evonas.spaces.NB201Space(), required=["acc"]).evaluate(cands)
    assert [t.ok for t in trials] == [False, False, True, True, True, True]
    assert ("SystemExit: 4" if how == "exit" else "KeyboardInterrupt raised by the fitness") in trials[0].error
