"""The search-space interface every space implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from functools import lru_cache

import networkx as nx
import numpy as np

from evonas.genome import Genome
from evonas.graphs import NOOP_OPS, canonical_hash


#: registry name -> space class (filled by :func:`register_space`)
SPACES: dict[str, type["SearchSpace"]] = {}


def register_space(cls: type["SearchSpace"]) -> type["SearchSpace"]:
    """Class decorator: ``[space] name = NAME`` for ``cls.name``."""
    SPACES[cls.name] = cls
    return cls


class SearchSpace(ABC):
    """A family of architectures encoded as fixed-length integer genomes.

    Variation operators (:meth:`mutate`, :meth:`crossover`) are pure: they return new genomes and never
    an invalid one. Strings round-trip through :meth:`to_string` / :meth:`from_string`.
    """

    #: registry name of the space (``[space] name`` in a genome config)
    name: str = ""

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Genome:
        """A uniformly random valid genome."""

    @abstractmethod
    def mutate(self, genome: Genome, rng: np.random.Generator) -> Genome:
        """A valid genome that differs from ``genome``."""

    @abstractmethod
    def crossover(self, a: Genome, b: Genome, rng: np.random.Generator) -> tuple[Genome, Genome]:
        """Two valid children mixing the parents' genes."""

    @abstractmethod
    def to_string(self, genome: Genome) -> str:
        """The architecture string (NAS-Bench-201 spaces: the table's ``arch`` format)."""

    @abstractmethod
    def from_string(self, text: str) -> Genome:
        """Parse an architecture string; raises ``ValueError`` naming what is wrong."""

    @abstractmethod
    def to_graph(self, genome: Genome) -> nx.DiGraph:
        """The phenotype: a DiGraph following the conventions of :mod:`evonas.graphs`."""

    @abstractmethod
    def encode(self, genome: Genome) -> np.ndarray:
        """Fixed-length float32 vector (one-hot ops and adjacency) for predictors."""

    @abstractmethod
    def is_valid(self, genome: Genome) -> bool:
        """Whether ``genome`` encodes a valid architecture of this space."""

    def enumerate(self) -> Iterator[Genome]:
        """Every valid genome (finite, small spaces only)."""
        raise NotImplementedError(f"space {self.name!r} cannot be enumerated")

    def size(self) -> int | None:
        """Number of valid genomes, when known without enumeration."""
        return None

    @property
    def encoding_size(self) -> int:
        """Length of :meth:`encode`'s vector."""
        return len(self.encode(self.sample(np.random.default_rng(0))))

    def canonical_hash(self, genome: Genome) -> str:
        """Equal for genomes whose pruned graphs are isomorphic (they compute the same function)."""
        return self.hash_string(self.to_string(genome))

    def hash_string(self, text: str) -> str:
        """:meth:`canonical_hash` of an architecture string, memoised."""
        return _hash_string(self, text)

    def hash_graph(self, graph: nx.DiGraph) -> str:
        """Canonical hash of a phenotype; spaces override it to choose their equivalence."""
        return canonical_hash(graph, NOOP_OPS)

    def describe(self) -> dict:
        """The parameters that identify this space (stored with runs, compared on resume)."""
        return {"name": self.name}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.describe() == other.describe()

    def __hash__(self) -> int:
        return hash(repr(sorted(self.describe().items())))

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "name")
        return f"{type(self).__name__}({params})"


@lru_cache(maxsize=200_000)
def _hash_string(space: SearchSpace, text: str) -> str:
    return space.hash_graph(space.to_graph(space.from_string(text)))
