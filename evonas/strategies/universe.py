"""Candidate sets for model-based strategies: the whole space when it is small enough to enumerate, else
mutants of the best observations plus random samples."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from evonas.genome import Genome, make_genome
from evonas.spaces.base import SearchSpace


@dataclass
class Universe:
    """Every architecture of a space: genes, encodings, canonical hashes, and the row of each genome."""

    genes: np.ndarray
    X: np.ndarray
    hashes: list[str]
    row: dict[tuple[int, ...], int]
    first: np.ndarray  # bool per row: the first row of its canonical hash
    rows_of: dict[str, list[int]]

    def genome(self, i: int) -> Genome:
        return make_genome(self.genes[i])

    def free(self, taken: Sequence[str]) -> np.ndarray:
        """A mask of the rows a search may still propose: one per hash, none of the ``taken`` hashes."""
        mask = self.first.copy()
        for h in taken:
            self.take(mask, h)
        return mask

    def take(self, mask: np.ndarray, h: str) -> None:
        """Clear the rows of hash ``h`` in ``mask``."""
        for i in self.rows_of.get(h, ()):
            mask[i] = False


#: enumerated spaces, by their description
_CACHE: dict[str, Universe] = {}


def universe(space: SearchSpace, limit: int) -> Universe | None:
    """The enumerated space (cached per process), or ``None`` when it has more than ``limit`` members."""
    size = space.size()
    if size is None or size > limit:
        return None
    key = repr(sorted(space.describe().items()))
    if key not in _CACHE:
        genomes = list(space.enumerate())
        hashes = [space.canonical_hash(g) for g in genomes]
        rows_of: dict[str, list[int]] = {}
        for i, h in enumerate(hashes):
            rows_of.setdefault(h, []).append(i)
        first = np.zeros(len(genomes), dtype=bool)
        first[[rows[0] for rows in rows_of.values()]] = True
        if len(_CACHE) >= 4:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = Universe(np.asarray(genomes, dtype=np.int64),
                               np.stack([space.encode(g) for g in genomes]).astype(np.float32), hashes,
                               {tuple(int(x) for x in g): i for i, g in enumerate(genomes)}, first, rows_of)
    return _CACHE[key]


def sampled(space: SearchSpace, rng: np.random.Generator, parents: Sequence[Genome], mutate: Callable,
            n_mutants: int, n_random: int, taken: Callable[[str], bool]) -> list[Genome]:
    """Mutants of ``parents`` (round robin) and random samples, without ``taken`` hashes or repeats."""
    out, hashes = [], set()

    def add(g: Genome) -> None:
        h = space.canonical_hash(g)
        if h not in hashes and not taken(h):
            hashes.add(h)
            out.append(g)

    for k in range(n_mutants if parents else 0):
        add(mutate(parents[k % len(parents)]))
    for _ in range(n_random):
        add(space.sample(rng))
    return out
