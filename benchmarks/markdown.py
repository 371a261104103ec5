"""Each benchmark script owns one section of BENCHMARKS.md, replaced in place on every run."""

from __future__ import annotations

import re
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
HEADER = ("# evonas benchmarks\n\nEvery figure below is written by a script in `benchmarks/`; each section "
          "names the command that reproduces it and the machine it ran on.\n")


def write_section(name: str, body: str, path: Path = BENCHMARKS_MD) -> Path:
    """Replace (or append) the section ``name`` of ``path`` with ``body`` (markdown)."""
    text = path.read_text() if path.exists() else HEADER
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
    return path


def machine() -> str:
    """A one-line description of this machine (CPU count and model, torch device when present)."""
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    desc = f"{os.cpu_count()} CPU cores ({cpu}), Python {platform.python_version()}"
    try:
        import torch

        if torch.cuda.is_available():
            desc += f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return desc


def resolve_sizes(ap, args, sizes: dict[str, tuple[int, int]]) -> list[str]:
    """Fill each unset option ``name`` of ``sizes`` (name -> (full, --quick) default), reject values below 1
    with ``ap.error``, and return the options given on the command line (for the section's command)."""
    given = [f"--{key.replace('_', '-')} {getattr(args, key)}" for key in sizes if getattr(args, key) is not None]
    for key, (full, quick) in sizes.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
        elif getattr(args, key) < 1:
            ap.error(f"--{key.replace('_', '-')}: must be >= 1, got {getattr(args, key)}")
    return given


def publish(name: str, body: str, res: dict, args) -> None:
    """Print a benchmark's section, write ``--json`` and, unless ``--no-markdown`` (or ``--quick`` without
    ``--md``), the section ``name`` of BENCHMARKS.md (or ``--md``)."""
    import json

    print(body)
    if args.json:
        Path(args.json).write_text(json.dumps(res, default=float))
    if args.markdown and (args.md or not args.quick):
        write_section(name, body, *([Path(args.md)] if args.md else []))


def header(*columns: str) -> list[str]:
    """A markdown table's header and rule lines."""
    return ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]


def claims(verdicts) -> list[str]:
    """The "must-show claims" subsection: one row per ``(claim, holds, measured)``."""
    rows = [f"| {claim} | {'yes' if ok else '**no**'} | {measured} |" for claim, ok, measured in verdicts]
    return ["", "### The issue's must-show claims, as measured", "", *header("claim", "holds", "measured"), *rows]


def training_parser(doc: str, quick_help: str, work: str | None = None):
    """The command line shared by the real-training benchmarks: ``--quick``, ``--jobs``, ``--seed``,
    ``--json``, ``--work`` (when ``work`` is a default folder), ``--no-markdown`` and ``--render``."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results here")
    if work is not None:
        parser.add_argument("--work", default=work, help="folder for the meta-trained initializers")
    parser.add_argument("--no-markdown", action="store_true", help="do not touch BENCHMARKS.md")
    parser.add_argument("--render", metavar="JSON", help="no run: write BENCHMARKS.md from a saved --json result")
    return parser


def run_or_render(args, run, settings=lambda res: res) -> dict:
    """``run(mode)`` (``"quick"`` or ``"full"``), or with ``--render`` the saved result, whose mode and seed
    (found in ``settings(res)``) then set ``args.quick`` and ``args.seed`` for the section's command."""
    import json

    if not args.render:
        return run("quick" if args.quick else "full")
    res = json.loads(Path(args.render).read_text())
    args.quick, args.seed = settings(res)["mode"] == "quick", settings(res)["seed"]
    return res


def save_result(args, res: dict, name: str, markdown, extra: str = "") -> None:
    """Write ``--json`` (unless rendering) and, unless ``--no-markdown``, the section ``name`` of
    BENCHMARKS.md from ``markdown(res, command)``; the command is ``benchmarks/NAME.py`` with the flags used."""
    import json

    if args.json and not args.render:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    if not args.no_markdown:
        cmd = f"python benchmarks/{name}.py" + (" --quick" if args.quick else "") + (
            f" --seed {args.seed}" if args.seed else "") + extra
        write_section(name, markdown(res, cmd))
