"""Genome configs: shipped ones load, paths resolve against the file, mistakes name file, key, value."""

from __future__ import annotations

from pathlib import Path

import pytest

from evonas.config import ConfigError, load_config, parse_config
from evonas.fitness import CallableFitness, TableFitness, TrainingFitness
from evonas.fitness.fewshot import FewShotFitness
from evonas.spaces import SPACES, DAGSpace, NB201Space
from evonas.strategies import NSGA2, STRATEGIES, RegularizedEvolution

REPO = Path(__file__).resolve().parents[1]
GENOMES = sorted((REPO / "genomes").glob("*.toml"))


@pytest.mark.parametrize("path", GENOMES, ids=[p.name for p in GENOMES])
def test_every_shipped_config_loads_and_builds(path):
    cfg = load_config(path)
    space = cfg.build_space()
    assert isinstance(space, SPACES[cfg.space["name"]])
    strategy = cfg.build_strategy(space)
    assert isinstance(strategy, STRATEGIES[cfg.strategy["name"]]) and strategy.space is space
    assert [o.metric for o in strategy.objectives] == [o.metric for o in cfg.objectives]
    fitness = cfg.build_fitness(space)
    kinds = {"table": TableFitness, "callable": CallableFitness, "train": TrainingFitness,
             "fewshot": FewShotFitness}
    assert isinstance(fitness, kinds[cfg.fitness["kind"]])
    if cfg.fitness["kind"] == "table":  # every objective and report metric is a column of its table
        assert set(cfg.metric_columns()) <= set(fitness.columns) <= set(fitness.table.columns)


def test_nb201_configs_follow_the_nats_protocol():
    for ds in ("cifar10", "cifar100", "imagenet16"):
        cfg = load_config(REPO / "genomes" / f"nb201-{ds}.toml")
        assert [o.metric for o in cfg.objectives] == [f"{ds}_valid12"]
        assert cfg.report == [f"{ds}_test200"]
        assert isinstance(cfg.build_space(), NB201Space)


def test_multi_objective_config_minimises_latency():
    cfg = load_config(REPO / "genomes" / "nb201-cifar10-latency.toml")
    assert [(o.metric, o.goal) for o in cfg.objectives] == [("cifar10_valid12", "max"),
                                                          ("pi5_litert_latency_ms", "min")]
    assert isinstance(cfg.build_strategy(cfg.build_space()), NSGA2)


def test_dag_config_uses_a_custom_callable():
    cfg = load_config(REPO / "genomes" / "dag-custom.toml")
    assert isinstance(cfg.build_space(), DAGSpace)
    assert cfg.fitness["kind"] == "callable"


def write(tmp_path, text, name="c.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


BASE = """
[space]
name = "nb201"
[strategy]
name = "rea"
population = 10
sample = 3
[fitness]
kind = "table"
table = "{table}"
objectives = ["cifar10_valid12"]
report = ["cifar10_test200"]
[search]
budget = 20
"""


def test_relative_table_path_resolves_against_the_config_folder(tmp_path, table_path):
    sub = tmp_path / "configs"
    sub.mkdir()
    (tmp_path / "t.csv").write_bytes(table_path.read_bytes()[:200_000].rsplit(b"\n", 1)[0] + b"\n")
    cfg = load_config(write(sub, BASE.format(table="../t.csv")))
    fitness = cfg.build_fitness()
    assert fitness.path == sub / "../t.csv"


def test_defaults_fill_in(tmp_path, table_path):
    cfg = load_config(write(tmp_path, BASE.format(table=table_path)))
    assert cfg.search["seed"] == 0 and cfg.search["jobs"] == 1 and cfg.search["batch_size"] == 1
    assert isinstance(cfg.build_strategy(cfg.build_space()), RegularizedEvolution)


@pytest.mark.parametrize("edit, expected", [
    (("population = 10", "popluation = 10"), "[strategy] popluation = 10: unknown key; did you mean 'population'?"),
    (("budget = 20", "budget = -5"), "[search] budget = -5: must be >= 1"),
    (("budget = 20", "budget = \"ten\""), "[search] budget = 'ten': expected an integer"),
    (('name = "nb201"', 'name = "nb201"\nops = ["none", "conv9x9"]'), "[space] ops = ['none', 'conv9x9']"),
    (('name = "rea"', 'name = "reaa"'), "[strategy] name = 'reaa': unknown strategy; did you mean 'rea'?"),
    (('kind = "table"', 'kind = "tabel"'), "[fitness] kind = 'tabel': unknown fitness kind; did you mean 'table'?"),
    (("[search]", "[serach]"), "[serach]: unknown section; did you mean [search]?"),
    (('objectives = ["cifar10_valid12"]', 'objectives = ["best:acc"]'), "prefix must be 'max:' or 'min:'"),
])
def test_mistakes_name_file_key_and_value(tmp_path, table_path, edit, expected):
    path = write(tmp_path, BASE.format(table=table_path).replace(*edit))
    with pytest.raises(ConfigError) as err:
        cfg = load_config(path)
        cfg.build_strategy(cfg.build_space())
    message = str(err.value)
    assert message.startswith(str(path)) and expected in message and "\n" not in message


def test_missing_table_and_unknown_column_name_the_key(tmp_path, table_path):
    cfg = load_config(write(tmp_path, BASE.format(table="nowhere.csv")))
    with pytest.raises(ConfigError, match=r"\[fitness\] table = 'nowhere.csv': .*table file not found"):
        cfg.build_fitness()
    cfg = load_config(write(tmp_path, BASE.format(table=table_path).replace("cifar10_test200", "cifar10_tset200")))
    with pytest.raises(ConfigError, match="no column 'cifar10_tset200'; did you mean 'cifar10_test200'"):
        cfg.build_fitness()


def test_empty_and_syntax_errors(tmp_path):
    with pytest.raises(ConfigError, match="config is empty"):
        load_config(write(tmp_path, ""))
    with pytest.raises(ConfigError, match="TOML syntax error"):
        load_config(write(tmp_path, "[space\nname = 1"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.toml")


def test_parse_config_accepts_a_dict():
    cfg = parse_config({"space": {"name": "dag", "max_nodes": 5, "max_edges": 6},
                        "fitness": {"kind": "callable", "function": "math:fsum", "objectives": ["x"]}})
    assert cfg.build_space() == DAGSpace(max_nodes=5, max_edges=6)
