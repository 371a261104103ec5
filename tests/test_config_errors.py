"""The broken-config corpus (tests/configs/broken/*.toml): every config error exits with code 2 and one
line naming the file, the key and the value; no traceback, and nothing written that looks like a result.

Each corpus file starts with ``# expect: TEXT``, a part of the message. ``@TABLE@`` stands for the
NAS-Bench-201 table, so that only the error the file is about can fire.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from evonas.cli import main

REPO = Path(__file__).resolve().parents[1]
CORPUS = sorted((Path(__file__).parent / "configs" / "broken").glob("*.toml"))


def materialise(src: Path, tmp_path: Path, table_path: Path) -> tuple[Path, str]:
    text = src.read_text()
    first = text.splitlines()[0] if text else ""
    assert first.startswith("# expect: "), f"{src.name}: first line must be '# expect: ...'"
    path = tmp_path / src.name
    path.write_text(text.replace("@TABLE@", str(table_path)))
    return path, first[len("# expect: "):].strip()


def test_the_corpus_covers_the_issue():
    names = {p.stem for p in CORPUS}
    assert {"syntax", "empty", "missing_fitness", "unknown_op", "unknown_column", "unknown_section",
            "negative_budget"} <= names and len(names) >= 30


@pytest.mark.parametrize("src", CORPUS, ids=[p.stem for p in CORPUS])
def test_broken_config_exits_2_with_one_line(src, tmp_path, table_path, capsys):
    path, expected = materialise(src, tmp_path, table_path)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("evonas: error: ") and str(path) in lines[0], lines[0]
    assert expected in lines[0], lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    assert not out.exists()  # nothing written, not even the run directory


@pytest.mark.parametrize("name", ["syntax", "unknown_column", "negative_budget"])
def test_broken_config_in_a_real_process(name, tmp_path, table_path):
    path, expected = materialise(Path(__file__).parent / "configs" / "broken" / f"{name}.toml", tmp_path, table_path)
    proc = subprocess.run([sys.executable, "-m", "evonas.cli", "run", str(path), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and expected in proc.stderr and str(path) in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, expected", [
    (["--jobs", "0"], "command line: --jobs = 0: must be >= 1"),
    (["--budget", "-3"], "command line: --budget = -3: must be >= 1"),
    (["--backend", "spark"], "command line: [search] backend = 'spark': unknown backend"),
    (["--address", "tcp://127.0.0.1:8786"], "command line: [search] address = 'tcp://127.0.0.1:8786'"),
    (["--backend", "threading"], "command line: [search] backend = 'threading': runs evaluations in the main"),
])
def test_bad_command_line_overrides_exit_2(args, expected, tmp_path, table_path, capsys):
    cfg = tmp_path / "ok.toml"
    cfg.write_text(f'[space]\nname = "nb201"\n[fitness]\nkind = "table"\ntable = "{table_path}"\n'
                   f'objectives = ["cifar10_valid12"]\n')
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet", *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
    assert not (tmp_path / "out").exists()
