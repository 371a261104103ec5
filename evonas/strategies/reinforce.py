"""REINFORCE with a categorical policy per edge, the RL baseline of NAS-Bench-201 (Dong & Yang 2020).

As in the benchmark's reference implementation (AutoDL-Projects ``exps/NATS-algos/reinforce.py``,
after Williams 1992): one table of logits ``theta[edge, op]`` initialised to ``1e-3 * N(0, 1)``, a
cell sampled edge by edge from ``softmax(theta[edge])``, and after each evaluation one Adam step on
``-log pi(cell) * (reward - baseline)``, where the baseline is a bias-corrected exponential moving
average of the rewards (momentum ``ema``, updated with the reward before the advantage is taken). The
benchmark's scripts sweep the learning rate (0.001 to 0.5); NATS-Bench reports 0.01, the default here.
The reward is the first objective (negated when it is minimised); failed evaluations teach nothing.

Written with numpy (the gradient of a softmax log-probability is ``onehot - p``), so it needs no torch and
its state is plain JSON for resuming. With ``dedupe`` (the evonas default) an already-seen cell is
redrawn from the same policy, like every evonas strategy; ``dedupe = false`` is the paper's sampler.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from evonas.genome import Genome, make_genome
from evonas.spaces.cell import CellSpace
from evonas.strategies.base import Strategy, register_strategy
from evonas.trial import Trial


@register_strategy
class Reinforce(Strategy):
    """REINFORCE over a cell space's edges: ``lr`` (Adam, betas 0.9/0.999, eps 1e-8) and ``ema`` (the
    moving-average baseline's momentum)."""

    name = "reinforce"

    def __init__(self, space, objectives, random_state=None, lr: float = 0.01, ema: float = 0.9,
                 **kwargs: Any):
        super().__init__(space, objectives, random_state, **kwargs)
        if not isinstance(space, CellSpace):
            raise ValueError(f"space: reinforce needs a cell space (one op per edge), got {space.name!r}")
        if not lr > 0:
            raise ValueError(f"lr: must be > 0, got {lr}")
        if not 0 <= ema < 1:
            raise ValueError(f"ema: must be within [0, 1), got {ema}")
        self.lr, self.ema = float(lr), float(ema)
        self.betas, self.eps = (0.9, 0.999), 1e-8
        shape = (len(space.edges), len(space.ops))
        self.logits = 1e-3 * self.rng.standard_normal(shape)
        self.m, self.v, self.steps = np.zeros(shape), np.zeros(shape), 0
        self.baseline_num, self.baseline_den = 0.0, 0.0
        self.toolbox.register("sample", self.sample_policy)

    # --- the policy -------------------------------------------------------------------------------------
    def probabilities(self) -> np.ndarray:
        """``softmax(theta)`` per edge: shape (edges, ops)."""
        z = np.exp(self.logits - self.logits.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def sample_policy(self) -> Genome:
        """One cell drawn from the policy, edge by edge."""
        cdf = np.cumsum(self.probabilities(), axis=1)
        u = self.rng.random(len(cdf))
        genes = [min(int(np.searchsorted(row, x, side="right")), len(row) - 1) for row, x in zip(cdf, u)]
        return make_genome(genes)

    @property
    def baseline(self) -> float:
        """The bias-corrected moving average of the rewards so far (0 before the first)."""
        return self.baseline_num / self.baseline_den if self.baseline_den else 0.0

    def ask(self, n: int) -> list[Genome]:
        pending: set[str] = set()
        return [self.fresh(self.toolbox.sample, pending) for _ in range(n)]

    # --- learning ---------------------------------------------------------------------------------------
    def tell(self, genomes: Sequence[Genome], trials: Sequence[Trial]) -> None:
        super().tell(genomes, trials)
        for genome, trial in zip(genomes, trials):
            if trial.ok and genome.fitness.valid:
                self._step(genome, float(genome.fitness.wvalues[0]))

    def _step(self, genome: Genome, reward: float) -> None:
        if not np.isfinite(reward):
            return
        self.baseline_num = self.ema * self.baseline_num + (1 - self.ema) * reward
        self.baseline_den = self.ema * self.baseline_den + (1 - self.ema)
        onehot = np.zeros_like(self.logits)
        onehot[np.arange(len(genome)), list(genome)] = 1.0
        grad = -(reward - self.baseline) * (onehot - self.probabilities())  # d/dtheta of -log pi * advantage
        b1, b2 = self.betas
        self.steps += 1
        self.m = b1 * self.m + (1 - b1) * grad
        self.v = b2 * self.v + (1 - b2) * grad * grad
        m_hat, v_hat = self.m / (1 - b1 ** self.steps), self.v / (1 - b2 ** self.steps)
        self.logits = self.logits - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)

    # --- state ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "logits": self.logits.tolist(), "m": self.m.tolist(), "v": self.v.tolist(),
                "steps": self.steps, "baseline": [self.baseline_num, self.baseline_den]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.logits, self.m, self.v = (np.asarray(state[k], dtype=np.float64) for k in ("logits", "m", "v"))
        self.steps = int(state["steps"])
        self.baseline_num, self.baseline_den = (float(x) for x in state["baseline"])
