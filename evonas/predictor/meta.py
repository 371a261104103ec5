"""Meta-training a predictor on the tasks of a table (``evonas meta train-predictor``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evonas.predictor.encoding import table_tasks
from evonas.predictor.model import MetaRankPredictor
from evonas.spaces import SearchSpace, make_space


def meta_train(table: str | Path, tasks: str | Sequence[str], space: SearchSpace | str = "nb201",
               random_state: int | None = 0, **params: Any) -> MetaRankPredictor:
    """A :class:`MetaRankPredictor` meta-trained on ``tasks`` (``"col,min:col,..."``) of ``table``.

    ``params`` are the predictor's constructor parameters. The space and tasks are recorded in the
    predictor (``meta_``) so a search can check it was trained for its space.
    """
    space = make_space(space) if isinstance(space, str) else space
    data = table_tasks(table, tasks, space)
    X = np.concatenate([t.X for t in data])
    y = np.concatenate([t.y for t in data])
    labels = np.concatenate([[t.name] * len(t.y) for t in data])
    model = MetaRankPredictor(random_state=random_state, **params)
    model.fit(X, y, tasks=labels)
    model.meta_ = {"space": space.describe(), "table": str(Path(table).resolve()),
                   "tasks": [t.name for t in data], "n_rows": [int(len(t.y)) for t in data]}
    return model


def check_space(model: MetaRankPredictor, space: SearchSpace, where: str = "predictor") -> None:
    """Raise ``ValueError`` when ``model`` was trained on a different space or encoding."""
    trained = (getattr(model, "meta_", None) or {}).get("space")
    if trained is not None and trained != space.describe():
        raise ValueError(f"{where}: trained on space {trained}, the search uses {space.describe()}")
    if model.n_features_in_ != space.encoding_size:
        raise ValueError(f"{where}: expects {model.n_features_in_} features, space {space.name!r} encodes "
                         f"{space.encoding_size}")
