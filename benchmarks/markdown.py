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
