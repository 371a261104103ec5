"""Every code snippet of README.md and every script in scripts/ runs.

README fenced blocks tagged ``bash``/``sh``/``shell`` or ``python`` are run in order, in one scratch
directory laid out like a checkout (copies of ``genomes/`` and ``scripts/``, ``../shared`` linked), so later blocks
see what earlier ones wrote (``evonas run ... --out runs/x`` then ``evonas report runs/x``). ``evonas``,
``python`` and ``pip`` resolve to this interpreter's environment. A comment line right before a fence marks
the block (only the last comment before it counts):

* ``<!-- skip-test -->`` or ``<!-- skip-test: why -->``: not run (installs, GPUs, clusters, long runs);
* ``<!-- test-timeout: 120 -->``: seconds allowed instead of the default 60;
* ``<!-- test-env: EVONAS_X=1 -->``: extra environment variables (space-separated ``KEY=VALUE``).

Blocks that install software (``pip install``, ``python -m venv``...) are skipped (no network here).
Scripts in ``scripts/`` run with no arguments unless a line ``# test-args: ...`` in them gives some;
``# test-skip: why`` skips one and ``# test-timeout: N`` allows N seconds (default 120).
The default suite keeps to about a minute; mark long blocks ``skip-test`` and show the short version.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SCRIPTS = REPO / "scripts"
SHELL = {"bash", "sh", "shell", "console"}
PYTHON = {"python", "py", "python3"}
DEFAULT_TIMEOUT = 60.0

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)[^\n]*$")
_DIRECTIVE = re.compile(r"<!--\s*(skip-test|test-timeout|test-env)\s*:?\s*(.*?)\s*-->")


@dataclass
class Block:
    """One fenced code block of a markdown file."""

    lang: str
    code: str
    line: int  # 1-based line of the opening fence
    skip: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    env: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"README.md:{self.line}:{self.lang}"


def parse_blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text`` with the directives of the comment lines just before each fence."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent = m.group("fence"), m.group("indent")
        start, body = i, []
        i += 1
        while i < len(lines) and not (lines[i].strip().startswith(fence[0] * len(fence))
                                      and set(lines[i].strip()) == {fence[0]}):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1  # the closing fence
        block = Block(m.group("lang").lower(), "\n".join(body) + "\n", start + 1)
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        # directives on the comment lines right above the fence (several comments may stack)
        while k >= 0 and lines[k].strip().startswith("<!--") and lines[k].strip().endswith("-->"):
            for name, value in _DIRECTIVE.findall(lines[k]):
                if name == "skip-test":
                    block.skip = block.skip or value or "marked skip-test"
                elif name == "test-timeout":
                    block.timeout = float(value)
                elif name == "test-env":
                    block.env.update(item.split("=", 1) for item in shlex.split(value) if "=" in item)
            k -= 1
        blocks.append(block)
    return blocks


def _readme_blocks() -> list[Block]:
    if not README.is_file():
        return []
    return [b for b in parse_blocks(README.read_text()) if b.lang in SHELL | PYTHON]


BLOCKS = _readme_blocks()


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["VIRTUAL_ENV"] = str(Path(sys.executable).parent.parent)
    env["MPLBACKEND"] = "Agg"
    env["PIP_NO_INDEX"] = "1"  # never the network, whatever a snippet asks
    env.pop("PYTHONPATH", None)
    env.update(extra or {})
    return env


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """``root/repo`` with copies of the checkout's genomes/, scripts/, benchmarks/ (so that a script that
    writes beside itself, e.g. ``REPO/runs``, writes here and not into the checkout) and ``root/shared``
    linked to the data."""
    import shutil

    root = tmp_path_factory.mktemp("docs")
    repo = root / "repo"
    repo.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "runs", "out", "results")
    for name in ("genomes", "scripts", "benchmarks", "examples"):
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, repo / name, ignore=ignore)
    for name in ("README.md", "pyproject.toml", "BENCHMARKS.md"):
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, repo / name)
    shared = REPO.parent / "shared"
    if shared.exists():
        (root / "shared").symlink_to(shared)
    return repo


_done: set[int] = set()
#: blocks that install software are never run (no network); mark a block skip-test to say so explicitly
_INSTALL = re.compile(r"\b(pip3?|uv pip|conda|apt(-get)?) install\b|\bpython3? -m venv\b")


def _run_block(block: Block, cwd: Path) -> subprocess.CompletedProcess:
    if block.lang in SHELL:
        code = "\n".join(line[2:] if line.startswith("$ ") else line for line in block.code.splitlines())
        cmd = ["bash", "-euo", "pipefail", "-c", code]
    else:
        cmd = [sys.executable, "-c", block.code]
    return subprocess.run(cmd, cwd=cwd, env=_env(block.env), capture_output=True, text=True,
                          timeout=block.timeout)


def test_readme_has_runnable_snippets():
    if not README.is_file():
        pytest.skip("README.md not written yet")
    assert BLOCKS, "README.md has no ```bash or ```python block"


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[b.id for b in BLOCKS])
def test_readme_block(index: int, scratch: Path):
    # blocks build on each other: run the earlier ones first when this one is selected alone
    for k in range(index):
        if k not in _done and not BLOCKS[k].skip and not _INSTALL.search(BLOCKS[k].code):
            _done.add(k)
            _run_block(BLOCKS[k], scratch)
    block = BLOCKS[index]
    _done.add(index)
    if block.skip:
        pytest.skip(block.skip)
    if _INSTALL.search(block.code):
        pytest.skip("installs packages (no network in tests)")
    try:
        proc = _run_block(block, scratch)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.id} took over {block.timeout:g}s; shorten it or mark it "
                    "<!-- test-timeout: N --> / <!-- skip-test -->")
    assert proc.returncode == 0, (f"{block.id} exited {proc.returncode}\n--- block ---\n{block.code}"
                                  f"--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-3000:]}")


def _scripts() -> list[Path]:
    return sorted(SCRIPTS.glob("*.py")) + sorted(SCRIPTS.glob("*.sh")) if SCRIPTS.is_dir() else []


def _script_directive(path: Path, name: str) -> str | None:
    m = re.search(rf"^#\s*{name}:\s*(.*)$", path.read_text(), re.M)
    return m.group(1).strip() if m else None


@pytest.mark.parametrize("path", _scripts(), ids=lambda p: f"scripts/{p.name}")
def test_script_runs(path: Path, scratch: Path):
    why = _script_directive(path, "test-skip")
    if why:
        pytest.skip(why)
    args = shlex.split(_script_directive(path, "test-args") or "")
    timeout = float(_script_directive(path, "test-timeout") or 120)
    runner = [sys.executable] if path.suffix == ".py" else ["bash"]
    try:
        proc = subprocess.run([*runner, str(scratch / "scripts" / path.name), *args], cwd=scratch, env=_env(),
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"scripts/{path.name} took over {timeout:g}s; give it a short run with a line "
                    "'# test-args: ...' (or '# test-timeout: N', '# test-skip: why')")
    assert proc.returncode == 0, f"scripts/{path.name} exited {proc.returncode}\n{proc.stderr[-3000:]}"


# --- the block parser itself ---------------------------------------------------------------------------
def test_parse_blocks_reads_fences_and_directives():
    text = "\n".join([
        "# Title", "", "```bash", "evonas --version", "```", "",
        "<!-- skip-test: needs a GPU -->", "```bash", "evonas run big.toml", "```",
        "<!-- test-timeout: 5 -->", "<!-- test-env: A=1 B=two -->", "", "```python", "print(1)", "```",
        "```toml", "[space]", "```", "  ````py", "  x = '```'", "  ````",
    ])
    blocks = parse_blocks(text)
    assert [(b.lang, b.line) for b in blocks] == [("bash", 3), ("bash", 8), ("python", 14), ("toml", 17),
                                                  ("py", 20)]
    assert blocks[0].skip is None and blocks[1].skip == "needs a GPU"
    assert blocks[2].timeout == 5 and blocks[2].env == {"A": "1", "B": "two"} and blocks[2].skip is None
    assert blocks[4].code == "x = '```'\n"


def test_a_failing_block_fails(scratch: Path):
    proc = _run_block(Block("bash", "evonas run does-not-exist.toml\necho unreachable\n", 1), scratch)
    assert proc.returncode == 2 and "unreachable" not in proc.stdout
    proc = _run_block(Block("python", "import evonas, sys\nsys.exit(0 if evonas.__version__ else 1)\n", 1),
                      scratch)
    assert proc.returncode == 0
