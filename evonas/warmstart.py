"""Reptile-meta-learned weight initializer for every architecture of a space.

Parameter names of the built networks encode (position, op) (see :mod:`evonas.models.networks`), so one
dictionary of meta-parameters keyed by state-dict name covers the whole space: each (position, op) the space
can instantiate, plus stem, reductions and head. An architecture loads the names it has; nothing else.

Meta-training (Reptile, Nichol et al. 2018) repeats: sample a task (a dataset, a class subset, a random
part of its training split), sample an architecture, build it from the meta-weights, train it ``k`` steps,
and move the meta-weights of the names that architecture used toward the trained values,
``phi <- phi + eps * (theta - phi)``, with ``eps`` annealed linearly to 0. BatchNorm running statistics are
meta-parameters too.

Loading into a network (``match_norm``, on by default) rescales each conv kernel to the norm of PyTorch's
default init for that tensor: Reptile's meta-weights have 2-3x larger kernel norms than a fresh init, and
behind BatchNorm that only slows the short training that follows (measured in ``benchmarks/warm_start.py``:
without it, the initializer lost to the default init after 30 steps on held-out digits).

Online mode: during a search, each evaluated individual's trained weights nudge the initializer
(``eps = online_lr``); see :class:`evonas.training.TrainingFitness` for how workers and the main process
share it.

Files: ``torch.save`` of a plain dict (``format``, ``info``, ``meta``), loaded with ``weights_only=True``.

Genome config::

    [warm_start]
    meta_steps = 300       # meta-train at the start of the run (or: init = "init.pt", a trained file)
    inner_steps = 20
    online = true          # individuals' trained weights keep nudging it
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from evonas.data import DataSpec

if TYPE_CHECKING:  # pragma: no cover
    import torch

FORMAT = "evonas-init"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class WarmStartSettings:
    """The ``[warm_start]`` section. ``init``: a trained initializer file; otherwise ``meta_steps`` Reptile
    steps at the start of the run (0: start from PyTorch's default init, useful with ``online``)."""

    enabled: bool = True
    init: str = ""
    meta_steps: int = 200
    inner_steps: int = 20
    inner_lr: float = 0.0
    inner_batch: int = 0
    outer_lr: float = 1.0
    ways: int = 0
    permute_labels: bool = True
    task_fraction: float = 0.5
    datasets: tuple[DataSpec, ...] = ()
    search_data: bool = True
    online: bool = False
    online_lr: float = 0.1
    match_norm: bool = True
    save: str = ""
    seed: int = -1

    def __post_init__(self):
        for key, ok in (("meta_steps", self.meta_steps >= 0), ("inner_steps", self.inner_steps >= 1),
                        ("inner_lr", self.inner_lr >= 0), ("inner_batch", self.inner_batch >= 0),
                        ("outer_lr", 0 < self.outer_lr <= 1), ("ways", self.ways >= 0 and self.ways != 1),
                        ("task_fraction", 0 < self.task_fraction <= 1), ("online_lr", 0 < self.online_lr <= 1)):
            if not ok:
                raise ValueError(f"{key}: invalid value {getattr(self, key)!r}")
        if not self.search_data and not self.datasets:
            raise ValueError("search_data: false needs tasks from [warm_start] datasets")


# --- the initializer ------------------------------------------------------------------------------------
class Initializer:
    """Meta-parameters keyed by state-dict name, with ``info`` describing the builder settings."""

    def __init__(self, meta: Mapping[str, "torch.Tensor"], info: Mapping[str, Any] | None = None, *,
                 match_norm: bool = True):
        self.meta = {k: v.detach().to("cpu", copy=True).float() for k, v in meta.items()}
        self.info = dict(info or {})
        self.updates = int(self.info.get("updates", 0))
        #: rescale loaded conv kernels to the norm of the network's own fresh init (see :meth:`apply`)
        self.match_norm = bool(match_norm)

    @classmethod
    def from_space(cls, space, *, in_channels: int, num_classes: int, C: int, N: int, seed: int = 0,
                   info: Mapping[str, Any] | None = None) -> "Initializer":
        """PyTorch's default init of every (position, op) ``space`` can instantiate (the networks of
        :func:`evonas.models.covering_graphs`), drawn from ``seed``."""
        import torch

        from evonas.models import build_model, covering_graphs

        meta: dict[str, torch.Tensor] = {}
        for k, graph in enumerate(covering_graphs(space)):
            torch.manual_seed(int(seed) + k)
            model = build_model(graph, in_channels=in_channels, num_classes=num_classes, C=C, N=N)
            for name, value in model.state_dict().items():
                if value.is_floating_point() and name not in meta:
                    meta[name] = value
        base = {"space": space.describe(), "in_channels": int(in_channels), "num_classes": int(num_classes),
                "C": int(C), "N": int(N)}
        return cls(meta, {**base, **(info or {})})

    def apply(self, model, match_norm: bool | None = None) -> float:
        """Load the meta-weights ``model`` has a name (and shape) for; returns the fraction of its float
        state tensors loaded.

        With :attr:`match_norm` (the default), each loaded conv kernel (4-D) is rescaled to the norm of the
        tensor it replaces, i.e. of PyTorch's default init: the meta-learned *directions* are kept, but
        training grows kernel norms (2-3x after a few hundred SGD steps), and behind BatchNorm a larger
        norm only lowers the effective learning rate of the short training that follows.
        """
        import torch

        match_norm = self.match_norm if match_norm is None else match_norm
        state = model.state_dict()
        names = [k for k, v in state.items() if v.is_floating_point()]
        hit = {k: self.meta[k] for k in names if k in self.meta and self.meta[k].shape == state[k].shape}
        with torch.no_grad():
            for k, v in hit.items():
                if match_norm and v.dim() == 4:
                    scale = state[k].norm() / v.norm().clamp_min(1e-12)
                    state[k].copy_(v * scale)
                else:
                    state[k].copy_(v)
        return len(hit) / max(1, len(names))

    def update(self, trained: Mapping[str, "torch.Tensor"], lr: float) -> int:
        """Reptile outer step toward ``trained`` (a state dict) for the names it holds; names new to the
        initializer are adopted as they are. Returns the number of tensors moved."""
        moved = 0
        for k, v in trained.items():
            if not v.is_floating_point():
                continue
            v = v.detach().to("cpu").float()
            cur = self.meta.get(k)
            if cur is None:
                self.meta[k] = v.clone()
            elif cur.shape == v.shape:
                cur.add_(v - cur, alpha=float(lr))
            else:
                continue
            moved += 1
        self.updates += 1
        return moved

    def state(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": FORMAT_VERSION, "info": {**self.info, "updates": self.updates},
                "meta": self.meta}

    def save(self, path: str | Path) -> Path:
        """``torch.save`` to ``path`` (atomically: written aside, then renamed)."""
        import os

        import torch

        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(self.state(), tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path, *, match_norm: bool = True) -> "Initializer":
        """Read a file written by :meth:`save` (``weights_only=True``: no code runs)."""
        import torch

        try:
            state = torch.load(Path(path), map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise ValueError(f"{path}: initializer file not found") from None
        except Exception as err:  # noqa: BLE001
            raise ValueError(f"{path}: not an evonas initializer ({type(err).__name__}: {err})") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT or "meta" not in state:
            raise ValueError(f"{path}: not an evonas initializer (no {FORMAT!r} format tag)")
        return cls(state["meta"], state.get("info", {}), match_norm=match_norm)

    def __len__(self) -> int:
        return len(self.meta)


def load_initializer_cached(path: str) -> Initializer:
    """:meth:`Initializer.load`, once per process per file (snapshot files are never rewritten in place; a
    run directory reused by ``--force`` may hold a new file under an old name: the cache keys on its stat)."""
    import os

    st = os.stat(path)
    return _load_initializer_cached(str(path), st.st_ino, st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=2)
def _load_initializer_cached(path: str, ino: int, mtime_ns: int, size: int) -> Initializer:
    return Initializer.load(path)


# --- meta-training --------------------------------------------------------------------------------------
def _task(data, ways: int, permute: bool, fraction: float, rng: np.random.Generator):
    """``(x, y)`` numpy arrays of one task: ``ways`` classes of ``data``'s training split (random subset and
    label order when ``permute``), a random ``fraction`` of their examples."""
    k = data.num_classes
    ways = min(ways, k)
    if permute:
        classes = rng.choice(k, size=ways, replace=False)
    else:
        classes = np.sort(rng.choice(k, size=ways, replace=False)) if ways < k else np.arange(k)
    lut = np.full(k, -1, dtype=np.int64)
    lut[classes] = np.arange(ways)
    idx = np.flatnonzero(lut[data.y_train] >= 0)
    n = max(ways, int(round(fraction * len(idx))))
    idx = np.sort(rng.choice(idx, size=min(n, len(idx)), replace=False))
    return data.x_train[idx], lut[data.y_train[idx]]


def meta_train(space, datasets: Sequence, settings, warm: WarmStartSettings, *, seed: int = 0,
               init: Initializer | None = None, ways: int | None = None, device: str = "cpu",
               progress: bool = False) -> Initializer:
    """Reptile on ``datasets`` (:class:`evonas.data.Dataset`; tasks drawn uniformly among them) for
    ``warm.meta_steps`` steps; ``settings`` (:class:`evonas.training.TrainSettings`) give C, N and the inner
    optimiser (``warm.inner_lr``/``inner_batch`` override lr and batch size; constant schedule)."""
    import torch

    from evonas.models import build_model
    from evonas.training import NonFiniteLoss, train_steps

    if not datasets:
        raise ValueError("meta_train: no task datasets")
    rng = np.random.default_rng(int(seed))
    ways = int(ways or warm.ways or datasets[0].num_classes)
    if init is None:
        init = Initializer.from_space(space, in_channels=datasets[0].in_channels, num_classes=ways, C=settings.C,
                                      N=settings.N, seed=int(rng.integers(2**31)))
    inner = replace(settings, lr=warm.inner_lr or settings.lr, batch_size=warm.inner_batch or settings.batch_size,
                    schedule="constant", warmup=0)
    steps = int(warm.meta_steps)
    bar = None
    if progress:
        import sys

        from tqdm import tqdm

        bar = tqdm(total=steps, desc="meta-train", unit="step", file=sys.stderr, dynamic_ncols=True)
    diverged = 0
    for it in range(steps):
        data = datasets[int(rng.integers(len(datasets)))]
        x, y = _task(data, ways, warm.permute_labels, warm.task_fraction, rng)
        graph = space.to_graph(space.sample(rng))
        torch.manual_seed(int(rng.integers(2**31)))
        model = build_model(graph, in_channels=data.in_channels, num_classes=min(ways, data.num_classes),
                            C=settings.C, N=settings.N)
        init.apply(model, match_norm=False)  # plain Reptile inside; norm matching is for deployment
        model.to(device)
        xt, yt = torch.as_tensor(x).to(device), torch.as_tensor(y).to(device)
        try:
            train_steps(model, xt, yt, inner, steps=warm.inner_steps, seed=int(rng.integers(2**31)), device=device)
        except NonFiniteLoss:
            diverged += 1
            continue
        finally:
            if bar is not None:
                bar.update(1)
        eps = warm.outer_lr * (1.0 - it / steps)
        init.update(model.state_dict(), lr=eps)
    if bar is not None:
        bar.close()
    init.info.update({"meta_steps": int(init.info.get("meta_steps", 0)) + steps, "inner_steps": warm.inner_steps,
                      "diverged": diverged, "seed": int(seed)})
    return init


def task_datasets(warm: WarmStartSettings, target: DataSpec) -> list:
    """The datasets meta-training draws tasks from: the search's own (``search_data``) and ``datasets``."""
    from evonas.data import load_dataset

    specs = ([target] if warm.search_data else []) + list(warm.datasets)
    return [load_dataset(s) for s in specs]


def prepare_initializer(warm: WarmStartSettings, data: DataSpec, settings, *, space, seed: int = 0,
                        base_dir: Path | None = None, progress: bool = False) -> Initializer:
    """The initializer a run starts from: ``warm.init`` loaded, else meta-trained for ``warm.meta_steps``
    (else PyTorch's default init of every (position, op))."""
    from evonas.data import load_dataset
    from evonas.training import select_device

    if warm.init:
        path = Path(warm.init)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return Initializer.load(path, match_norm=warm.match_norm)
    target = load_dataset(data)
    ways = warm.ways or target.num_classes
    seed = warm.seed if warm.seed >= 0 else seed
    if warm.meta_steps == 0:
        init = Initializer.from_space(space, in_channels=target.in_channels, num_classes=ways, C=settings.C,
                                      N=settings.N, seed=seed)
    else:
        init = meta_train(space, task_datasets(warm, data), settings, warm, seed=seed, ways=ways,
                          device=select_device(settings.device, 0), progress=progress)
    init.match_norm = warm.match_norm
    return init


__all__ = ["WarmStartSettings", "Initializer", "meta_train", "prepare_initializer", "task_datasets",
           "load_initializer_cached"]
