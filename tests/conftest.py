"""Shared fixtures: the NAS-Bench-201 table from ../shared (never copied into the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TABLE = Path(os.environ.get("EVONAS_TABLE", REPO.parent / "shared" / "data" / "nasbench201.csv"))


@pytest.fixture(scope="session")
def table_path() -> Path:
    if not TABLE.is_file():
        pytest.fail(f"NAS-Bench-201 table not found at {TABLE} (set EVONAS_TABLE)")
    return TABLE


@pytest.fixture(scope="session")
def nb201_table(table_path):
    from evonas.fitness.table import load_table

    return load_table(table_path)


@pytest.fixture
def small_table(tmp_path) -> Path:
    """A user table in the same format: an arch column plus metric columns, a few NB201 cells."""
    from evonas.spaces import NB201Space
    import numpy as np

    space = NB201Space()
    rng = np.random.default_rng(0)
    path = tmp_path / "mini.csv"
    lines = ["arch,acc,latency"]
    for i, g in enumerate(space.enumerate()):
        if i % 7 == 0:
            lines.append(f"{space.to_string(g)},{rng.uniform(10, 90):.3f},{rng.uniform(1, 5):.3f}")
    path.write_text("\n".join(lines) + "\n")
    return path
