"""evonas: evolutionary neural architecture search with meta-learned warm starts."""

from evonas._version import __version__  # noqa: F401

from evonas.api import build_search, run_config, search  # noqa: E402
from evonas.config import ConfigError, RunConfig, load_config  # noqa: E402
from evonas.evaluator import Evaluator  # noqa: E402
from evonas.fitness import Architecture, EvalContext, EvalResult, TableFitness  # noqa: E402
from evonas.search import Search, SearchResult  # noqa: E402
from evonas.spaces import CellSpace, DAGSpace, NB201Space, SearchSpace, make_space  # noqa: E402
from evonas.store import MemoryStore, SQLiteStore, Store  # noqa: E402
from evonas.strategies import NSGA2, RandomSearch, RegularizedEvolution, Strategy, make_strategy  # noqa: E402
from evonas.trial import Objective, Trial  # noqa: E402
from evonas.data import DataSpec  # noqa: E402  (torch is imported only when training runs)
from evonas.fitness.train import TrainingFitness  # noqa: E402
from evonas.training import TrainSettings  # noqa: E402
from evonas.warmstart import WarmStartSettings  # noqa: E402

__all__ = ["__version__", "search", "build_search", "run_config", "load_config", "ConfigError", "RunConfig",
           "Evaluator", "Architecture", "EvalContext", "EvalResult", "TableFitness", "Search", "SearchResult",
           "SearchSpace", "NB201Space", "CellSpace", "DAGSpace", "make_space", "Store", "MemoryStore", "SQLiteStore",
           "Strategy", "RandomSearch", "RegularizedEvolution", "NSGA2", "make_strategy", "Objective", "Trial",
           "DataSpec", "TrainingFitness", "TrainSettings", "WarmStartSettings"]
