"""Meta-learned fitness predictors: encodings, the ranking model, meta-training (imports torch)."""

from evonas.predictor.encoding import ArchEncoder, Task, TaskSpec, encode_table, parse_tasks, table_tasks
from evonas.predictor.meta import check_space, meta_train
from evonas.predictor.model import MetaRankPredictor, NotFittedError, concordance

__all__ = ["ArchEncoder", "Task", "TaskSpec", "parse_tasks", "table_tasks", "encode_table", "MetaRankPredictor",
           "NotFittedError", "concordance", "meta_train", "check_space"]
