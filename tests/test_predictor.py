"""The meta-learned ranking predictor: validation, meta-training, few-shot adaptation, persistence, CLI."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from scipy.stats import kendalltau
from sklearn.base import clone

from evonas.cli import main
from evonas.fitness.table import TableError, load_table
from evonas.predictor import (MetaRankPredictor, NotFittedError, concordance, encode_table, meta_train,
                              parse_tasks, table_tasks)

TINY = dict(steps=60, n_members=2, hidden=(32,), embed=8, batch_size=128)


@pytest.fixture(scope="module")
def table(table_path):  # conftest's fixture: fails (not skips) when the table is missing
    return load_table(table_path)


@pytest.fixture(scope="module")
def X(table_path):
    return encode_table(table_path)


@pytest.fixture(scope="module")
def meta(table_path):
    """Meta-trained on CIFAR-100 and ImageNet16-120 (the CIFAR-10 leave-one-out predictor), tiny."""
    return meta_train(table_path, "cifar100_test200,imagenet16_test200", random_state=0, **TINY)


def tau(model, X, y, **kw):
    return kendalltau(model.predict(X, **kw), y)[0]


# --- validation ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key,value", [("n_members", 0), ("hidden", (0,)), ("embed", 0), ("steps", -1),
                                       ("lr", 0.0), ("adapt_method", "maml"), ("residual", -0.1),
                                       ("prior_trust", 1.5), ("random_state", -1), ("pair_evidence", 0.0),
                                       ("batch_size", 1), ("top_weight", float("nan"))])
def test_bad_params_raise_naming_the_key(key, value):
    X = np.eye(4, dtype=np.float32)
    with pytest.raises(ValueError, match=f"^{key}:"):
        MetaRankPredictor(**{key: value}).fit(X, np.arange(4.0))


def test_bad_inputs_and_unfitted():
    model = MetaRankPredictor(**TINY)
    with pytest.raises(NotFittedError):
        model.predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="^X:"):
        model.fit(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match="^y:"):
        model.fit(np.zeros((5, 3)), np.zeros(4))
    with pytest.raises(ValueError, match="^y:.*NaN"):
        model.fit(np.zeros((3, 3)), [1.0, np.nan, 2.0])
    with pytest.raises(ValueError, match="^tasks:.*at least 2"):
        model.fit(np.eye(3), [1.0, 2.0, 3.0], tasks=["a", "a", "b"])
    model.fit(np.eye(3, dtype=np.float32), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="^X: has 4 features"):
        model.predict(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="^trust:"):
        model.adapt(np.eye(3), [1.0, 2.0, 3.0], trust=2.0)


def test_parse_tasks_and_table_tasks(table):
    specs = parse_tasks("cifar10_test200, min:cifar10_params_m")
    assert [(s.column, s.sign, s.name) for s in specs] == [("cifar10_test200", 1.0, "cifar10_test200"),
                                                         ("cifar10_params_m", -1.0, "min:cifar10_params_m")]
    with pytest.raises(ValueError, match="duplicate"):
        parse_tasks("a,a")
    with pytest.raises(ValueError, match="at least one"):
        parse_tasks(" , ")
    with pytest.raises(ValueError, match="max:COLUMN or min:COLUMN"):
        parse_tasks("best:a")
    tasks = table_tasks(table.path, "min:cifar10_params_m,cifar10_naswot")
    assert np.array_equal(tasks[0].y, -table.column("cifar10_params_m"))
    assert len(tasks[1].y) == int(np.isfinite(table.column("cifar10_naswot")).sum()) < len(table)  # -inf dropped
    assert tasks[0].X.shape == (len(table), 30)
    with pytest.raises(TableError, match="did you mean 'cifar10_test200'"):
        table_tasks(table.path, "cifar10_tst200")


def test_concordance():
    assert concordance([1, 2, 3], [10, 20, 30]) == (1.0, 3)
    assert concordance([3, 2, 1], [10, 20, 30]) == (-1.0, 3)
    assert concordance([1, 1, 1], [5, 5, 5]) == (0.0, 0)
    # weighted: swapping the near-tie (1 vs 2) barely counts
    assert concordance([2, 1, 3], [1, 2, 100]) == pytest.approx((1 / 3, 3))
    t, n = concordance([2, 1, 3], [1, 2, 100], weighted=True)
    assert n == 3 and t == pytest.approx(196 / 198)


# --- meta-training and prediction ------------------------------------------------------------------------
def test_meta_trained_prior_ranks_the_held_out_dataset(meta, X, table):
    y = table.column("cifar10_test200")
    assert meta.tasks_ == ["cifar100_test200", "imagenet16_test200"]
    assert meta.meta_["space"]["name"] == "nb201"
    best_zero_cost = max(kendalltau(table.column(c), y)[0] for c in ("cifar10_logsynflow", "cifar10_synflow"))
    assert tau(meta, X, y) > best_zero_cost  # > 0.63 with 60 steps of a 2-member, 32-unit model
    mean, std = meta.predict(X[:50], return_std=True)
    assert mean.shape == std.shape == (50,) and (std > 0).all()
    # the prior's top pick is a top-2% CIFAR-10 cell
    assert y[int(np.argmax(meta.predict(X)))] >= np.quantile(y, 0.98)


def test_fit_is_deterministic_in_random_state(X, table):
    y = table.column("cifar10_test200")[:400]
    a = MetaRankPredictor(random_state=3, **TINY).fit(X[:400], y).predict(X[:100])
    b = MetaRankPredictor(random_state=3, **TINY).fit(X[:400], y).predict(X[:100])
    c = MetaRankPredictor(random_state=4, **TINY).fit(X[:400], y).predict(X[:100])
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_sklearn_clone_and_params(meta):
    copy = clone(meta)
    assert copy.get_params() == meta.get_params()
    assert not hasattr(copy, "members_")
    assert meta.set_params(prior_trust=0.3).prior_trust == 0.3
    meta.set_params(prior_trust=0.5)


# --- adaptation ------------------------------------------------------------------------------------------
def test_adapt_follows_a_task_the_prior_gets_wrong(meta, X, table):
    y = -table.column("cifar10_test200")  # the prior ranks this task upside down
    obs = np.random.default_rng(0).choice(len(X), 40, replace=False)
    assert tau(meta, X, y) < -0.5
    meta.adapt(X[obs], y[obs])
    try:
        assert meta.trust_ == 0.0
        assert tau(meta, X, y) > 0.3  # learned from 40 observations alone
        assert tau(meta, X, y, prior=True) < -0.5  # the prior itself is untouched
    finally:
        meta.reset()


def test_adapt_keeps_a_good_prior_and_shrinks_uncertainty(meta, X, table):
    y = table.column("cifar10_test200")
    obs = np.random.default_rng(1).choice(len(X), 50, replace=False)
    prior_tau = tau(meta, X, y)
    _, prior_std = meta.predict(X, return_std=True)
    meta.adapt(X[obs], y[obs])
    try:
        assert meta.trust_ > 0.5 and meta.n_adapted_ == 50
        assert tau(meta, X, y) > prior_tau - 0.03
        _, std = meta.predict(X, return_std=True)
        assert np.median(std) < np.median(prior_std)
    finally:
        meta.reset()
    assert tau(meta, X, y) == prior_tau  # reset: the prior again


def test_adapt_restarts_from_the_prior(meta, X, table):
    y = table.column("cifar100_test200")
    a, b = np.arange(0, 30), np.arange(100, 130)
    meta.adapt(X[a], y[a]).adapt(X[b], y[b])
    twice = meta.predict(X[:200])
    once = meta.reset().adapt(X[b], y[b]).predict(X[:200])
    meta.reset()
    assert np.array_equal(twice, once)


def test_finetune_and_none_adaptation(meta, X, table):
    y = table.column("cifar10_test200")
    obs = np.arange(0, 15625, 500)
    prior = meta.predict(X[:300])
    ft = copy.copy(meta).set_params(adapt_method="finetune", adapt_steps=20)
    ft.adapt(X[obs], y[obs])
    assert ft.adapted_members_ is not None and not np.allclose(ft.predict(X[:300]), prior)
    assert np.array_equal(ft.predict(X[:300], prior=True), prior)
    meta.set_params(adapt_method="none").adapt(X[obs], y[obs])
    try:
        assert np.array_equal(meta.predict(X[:300]), prior)
    finally:
        meta.set_params(adapt_method="head").reset()


def test_scratch_fit_on_few_observations(X, table):
    y = table.column("cifar10_test200")
    obs = np.random.default_rng(2).choice(len(X), 100, replace=False)
    model = MetaRankPredictor(random_state=0, **TINY).fit(X[obs], y[obs])
    assert model.tasks_ == ["0"]
    assert 0.2 < tau(model, X, y) < 0.8  # learns something from 100 cells, far from the meta prior


# --- persistence and CLI ---------------------------------------------------------------------------------
def test_save_load_roundtrip(meta, X, tmp_path):
    path = meta.save(tmp_path / "sub" / "p.pt")
    back = MetaRankPredictor.load(path)
    assert back.get_params() == meta.get_params()
    assert back.tasks_ == meta.tasks_ and back.meta_ == meta.meta_
    assert np.array_equal(back.predict(X[:500]), meta.predict(X[:500]))
    m1, s1 = back.predict(X[:20], return_std=True)
    m2, s2 = meta.predict(X[:20], return_std=True)
    assert np.allclose(s1, s2)
    (tmp_path / "junk.pt").write_text("not a predictor")
    with pytest.raises(ValueError, match="not a predictor file"):
        MetaRankPredictor.load(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="not found"):
        MetaRankPredictor.load(tmp_path / "missing.pt")
    with pytest.raises(NotFittedError):
        MetaRankPredictor().save(tmp_path / "x.pt")


def test_cli_train_predictor(tmp_path, capsys, table_path):
    out = tmp_path / "pred.pt"
    rc = main(["meta", "train-predictor", "--table", str(table_path), "--tasks",
               "cifar100_test200,min:cifar10_params_m", "--out", str(out), "--steps", "5", "--members", "1"])
    assert rc == 0
    assert "1-member ranking predictor" in capsys.readouterr().out
    model = MetaRankPredictor.load(out)
    assert model.tasks_ == ["cifar100_test200", "min:cifar10_params_m"] and model.steps == 5
    rc = main(["meta", "train-predictor", "--table", str(table_path), "--tasks", "cifar100_tst200", "--out",
               str(tmp_path / "x.pt")])
    err = capsys.readouterr().err
    assert rc == 2 and "did you mean 'cifar100_test200'" in err and err.count("\n") == 1
    rc = main(["meta", "train-predictor", "--table", str(tmp_path / "none.csv"), "--tasks", "a", "--out",
               str(tmp_path / "x.pt")])
    assert rc == 2 and "not found" in capsys.readouterr().err
    rc = main(["meta", "train-predictor", "--table", str(table_path), "--tasks", "a", "--out", str(tmp_path / "x.pt"),
               "--members", "0"])
    assert rc == 2 and "--members = 0" in capsys.readouterr().err


def test_evidence_weighs_the_meta_head_against_a_plain_linear_head(meta, X, table):
    y = table.column("cifar10_test200")
    obs = np.random.default_rng(3).choice(len(X), 60, replace=False)
    meta.adapt(X[obs], y[obs])
    try:
        assert meta.meta_weight_ > 0.9  # the meta-features explain CIFAR-10 far better
    finally:
        meta.reset()
    # meta-features learned from labels shuffled over the cells describe nothing
    rng = np.random.default_rng(0)
    noise = MetaRankPredictor(random_state=0, **TINY).fit(X, rng.permutation(table.column("cifar100_test200")))
    noise.adapt(X[obs], y[obs])
    with_fallback = tau(noise, X, y)
    assert noise.meta_weight_ < 0.6  # 0.44: the linear head takes over more and more with data
    noise.set_params(fallback=0.0).adapt(X[obs], y[obs])
    assert noise.meta_weight_ == 1.0
    assert with_fallback > tau(noise, X, y) + 0.05
