"""Genome configs for the tests: small real-training runs on scikit-learn's digits, and table searches."""

from __future__ import annotations


def digits_toml(strategy: str, training: str, search: str, extra: str = "") -> str:
    """TOML of a real-training search on digits over NAS-Bench-201 cells (``val_acc`` searched, ``test_acc``
    reported); ``strategy``, ``training`` and ``search`` are the bodies of those sections, ``extra`` any
    further sections (e.g. ``[warm_start]``)."""
    return f"""[space]
name = "nb201"
[strategy]
{strategy}
[fitness]
kind = "train"
objectives = ["val_acc"]
report = ["test_acc"]
[data]
name = "digits"
[training]
{training}
{extra}
[search]
{search}
"""


def table_toml(table: object, metric: str, strategy: str, budget: int = 12, seed: int = 1, report: str = "",
               search: str = "", fitness: str = "") -> str:
    """TOML of a NAS-Bench-201 table search maximising ``metric`` (``report`` also reported); ``strategy`` is
    the body of that section, ``fitness`` and ``search`` further lines of those sections."""
    reported = f'report = ["{report}"]\n' if report else ""
    reported += f"{fitness}\n" if fitness else ""
    return f"""[space]
name = "nb201"
[strategy]
{strategy}
[fitness]
kind = "table"
table = "{table}"
objectives = ["{metric}"]
{reported}[search]
budget = {budget}
seed = {seed}
{search}
"""
