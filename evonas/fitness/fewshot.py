"""The ``fewshot`` fitness kind: an architecture's few-shot accuracy on classes it never met in meta-training.

Classes are ``(label, rotation)`` pairs: with ``rotations = 4`` each original class rotated by 0, 90, 180 and
270 degrees is its own class (the Omniglot practice), so the 10 digits give 40 classes. The split is by
*original label*: ``test_classes`` (meta-test) and ``train_classes`` (meta-train, default: every other
label) are disjoint, so a meta-test digit is never seen in meta-training, in any rotation. The default
meta-test digits are 2, 3, 4, 5, 7: none of them looks like itself or another digit when rotated (0, 1, 8
do under 180 degrees, 6 and 9 turn into each other), so no meta-test class is a near-copy of a meta-training
class and no two meta-test classes are near-copies of each other.

An *episode* is an N-way K-shot task: ``ways`` classes drawn from one side of the split, ``shots`` support
and ``queries`` query images per class, labels in random order. *Adaptation* (:func:`adapt`): a fresh
``ways``-way linear head (zero, or ProtoNet-initialised from the support prototypes: ``W_c = 2 mu_c``,
``b_c = -|mu_c|^2``), ``steps`` full-batch SGD steps on the support set, BatchNorm statistics re-estimated on
the support set, then the query accuracy in eval mode. The same adaptation runs in meta-training and at
meta-test time.

The initializer is space-wide (:class:`evonas.warmstart.Initializer`: one tensor per (position, op) of the
NAS-Bench-201 skeleton) and is meta-trained once, before the search, on episodes of the meta-train classes:
each meta-step samples a random cell of the space, builds it from the meta-weights, trains it with a fresh
head for ``meta_inner_steps`` steps on a ``meta_shots``-shot task and moves the weights it used toward the
trained ones (Reptile, Nichol et al. 2018: ``phi += eps * (theta - phi)``, ``eps`` annealed linearly to 0;
like Reptile's ``--train-shots``, meta-training tasks may have more shots than the meta-test ones), or, with
``algorithm = "fomaml"``, adapts ``steps`` steps on a ``shots``-shot support set and steps the weights along
the query-loss gradient at the adapted weights (first-order MAML). Heads are per episode, so they are never
meta-learned. Loaded conv kernels are rescaled to the norm of a fresh init (``Initializer.apply``'s
``match_norm``) in meta-training and at meta-test time alike: behind BatchNorm a kernel's norm only sets
its effective learning rate, and without the rescaling Reptile's growing norms froze the adaptation (measured:
10 steps then moved 1-shot accuracy by 1 point instead of 20). ``meta_steps = 0`` is PyTorch's default init of
every (position, op): the peer every figure compares with.

Fitness (``fewshot_acc``): mean query accuracy over ``episodes`` meta-test episodes drawn from the held-out
classes' training and validation images with ``episode_seed``: every architecture sees the same episodes.
``fewshot_test_acc`` (when ``test_episodes`` > 0) repeats it on their test images (other episodes);
``fewshot_acc_long`` (when ``long_steps`` > 0) adapts ``long_steps`` steps on ``long_episodes`` further
episodes: a long-budget reference for reports. Each comes with its standard deviation over episodes (``*_std``).

Genome config::

    [fitness]
    kind = "fewshot"
    objectives = ["fewshot_acc"]
    report = ["fewshot_test_acc"]

    [data]
    name = "digits"          # or mnist5k (with image_size = 14)

    [fewshot]
    test_classes = [2, 3, 4, 5, 7]
    rotations = 4
    ways = 5
    shots = 1
    steps = 10
    test_episodes = 20
    meta_steps = 400
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from evonas.data import DataSpec
from evonas.fitness.base import Architecture, EvalContext, EvalResult, Fitness
from evonas.registry import check_keys, config_section, fitness_kind

#: an :class:`evonas.config.RunConfig` (not imported here: the config imports the fitness kinds)
RunConfig = Any

ALGORITHMS = ("reptile", "fomaml")
HEADS = ("zero", "proto")
#: metrics a ``fewshot`` evaluation returns
METRICS = ("fewshot_acc", "fewshot_std", "fewshot_test_acc", "fewshot_test_std", "fewshot_acc_long",
           "fewshot_long_std", "params", "adapt_time_s", "warm_frac")
#: default meta-test digits: rotation-distinct (see the module docstring)
DEFAULT_TEST_CLASSES = (2, 3, 4, 5, 7)


@dataclass(frozen=True)
class FewShotSettings:
    """The ``[fewshot]`` section (see the module docstring). ``meta_lr``: Reptile's ``eps`` (annealed), or
    FOMAML's step size on the query gradient (0: 1.0 for Reptile, 0.1 for FOMAML)."""

    test_classes: tuple[int, ...] = DEFAULT_TEST_CLASSES
    train_classes: tuple[int, ...] = ()
    rotations: int = 4
    image_size: int = 0
    ways: int = 5
    shots: int = 1
    queries: int = 10
    steps: int = 10
    lr: float = 0.02
    momentum: float = 0.9
    head: str = "zero"
    episodes: int = 20
    test_episodes: int = 0
    episode_seed: int = 0
    long_steps: int = 0
    long_episodes: int = 0
    algorithm: str = "reptile"
    meta_steps: int = 400
    meta_lr: float = 0.0
    meta_shots: int = 10
    meta_inner_steps: int = 30
    init: str = ""
    save: str = ""
    seed: int = -1
    C: int = 8
    N: int = 1
    threads: int = 1

    def __post_init__(self):
        checks = (("rotations", self.rotations in (1, 2, 4)), ("image_size", self.image_size >= 0),
                  ("ways", self.ways >= 2), ("shots", self.shots >= 1), ("queries", self.queries >= 1),
                  ("steps", self.steps >= 1 or (self.steps == 0 and self.head == "proto")),
                  ("lr", self.lr > 0), ("momentum", 0 <= self.momentum < 1), ("head", self.head in HEADS),
                  ("episodes", self.episodes >= 1), ("long_steps", self.long_steps >= 0),
                  ("long_episodes", self.long_episodes >= 0), ("test_episodes", self.test_episodes >= 0),
                  ("meta_shots", self.meta_shots >= 1), ("meta_inner_steps", self.meta_inner_steps >= 1), ("algorithm", self.algorithm in ALGORITHMS),
                  ("meta_steps", self.meta_steps >= 0), ("meta_lr", self.meta_lr >= 0),
                  ("C", self.C >= 1), ("N", self.N >= 1), ("threads", self.threads >= 0),
                  ("test_classes", len(self.test_classes) > 0 and len(set(self.test_classes)) == len(self.test_classes)
                   and min(self.test_classes) >= 0),
                  ("train_classes", len(set(self.train_classes)) == len(self.train_classes)
                   and not set(self.train_classes) & set(self.test_classes)
                   and min(self.train_classes, default=0) >= 0))
        hints = {"rotations": " (1, 2 or 4)", "head": f" (one of {', '.join(HEADS)})",
                 "algorithm": f" (one of {', '.join(ALGORITHMS)})",
                 "steps": " (>= 1; 0 only with head = \"proto\")",
                 "test_classes": " (distinct labels >= 0, at least one)",
                 "train_classes": " (distinct labels >= 0, none of them in test_classes)"}
        for key, ok in checks:
            if not ok:
                raise ValueError(f"{key}: invalid value {getattr(self, key)!r}{hints.get(key, '')}")

    @property
    def outer_lr(self) -> float:
        return self.meta_lr or (1.0 if self.algorithm == "reptile" else 0.1)


# --- classes and episodes -------------------------------------------------------------------------------
@dataclass
class Episode:
    """One N-way K-shot task: support and query arrays, labels ``0..ways-1``; ``classes`` are the pooled
    class ids behind labels ``0..ways-1``."""

    x_support: np.ndarray
    y_support: np.ndarray
    x_query: np.ndarray
    y_query: np.ndarray
    classes: tuple[int, ...]


@dataclass
class ClassPool:
    """Images by pooled class id (``label * rotations + r``); ``labels[id]`` is the original label."""

    images: dict[int, np.ndarray]
    rotations: int
    labels: dict[int, int] = field(default_factory=dict)

    @property
    def classes(self) -> list[int]:
        return sorted(self.images)

    def sample(self, ways: int, shots: int, queries: int, rng: np.random.Generator) -> Episode:
        """An episode: ``ways`` random classes of this pool in random label order."""
        ids = self.classes
        chosen = [ids[i] for i in rng.choice(len(ids), size=ways, replace=False)]
        xs, ys, xq, yq = [], [], [], []
        for label, c in enumerate(chosen):
            imgs = self.images[c]
            pick = rng.choice(len(imgs), size=shots + queries, replace=False)
            xs.append(imgs[pick[:shots]])
            xq.append(imgs[pick[shots:]])
            ys += [label] * shots
            yq += [label] * queries
        return Episode(np.concatenate(xs), np.asarray(ys, np.int64), np.concatenate(xq), np.asarray(yq, np.int64),
                       tuple(chosen))


def _downsample(x: np.ndarray, size: int) -> np.ndarray:
    if not size or size == x.shape[-1]:
        return x
    f = x.shape[-1] // size
    n, c, h, w = x.shape
    return x.reshape(n, c, h // f, f, w // f, f).mean(axis=(3, 5)).astype(np.float32)


def class_pool(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], labels: Sequence[int], rotations: int,
               image_size: int = 0) -> ClassPool:
    """The images of original ``labels`` (from the arrays ``xs``/``ys`` joined), each rotation its own class."""
    x = _downsample(np.concatenate(xs), image_size)
    y = np.concatenate(ys)
    images, owner = {}, {}
    for label in labels:
        base = x[y == int(label)]
        for r in range(rotations):
            cid = int(label) * rotations + r
            images[cid] = np.ascontiguousarray(np.rot90(base, k=r, axes=(2, 3)))
            owner[cid] = int(label)
    return ClassPool(images, rotations, owner)


@dataclass
class FewShotTask:
    """The meta-train pool (training images of ``train_classes``) and two meta-test pools of
    ``test_classes``: ``val`` (their training + validation images: the fitness) and ``test`` (their test
    images: reported)."""

    train: ClassPool
    val: ClassPool
    test: ClassPool
    in_channels: int

    @classmethod
    def from_dataset(cls, data, fs: FewShotSettings) -> "FewShotTask":
        labels = range(data.num_classes)
        bad = [c for c in (*fs.test_classes, *fs.train_classes) if c not in labels]
        if bad:
            raise ValueError(f"{'test_classes' if bad[0] in fs.test_classes else 'train_classes'}: label {bad[0]} "
                             f"not in {data.name} (labels 0..{data.num_classes - 1})")
        side = data.input_shape[-1]
        if fs.image_size and (fs.image_size > side or side % fs.image_size):
            raise ValueError(f"image_size: invalid value {fs.image_size} (must divide the image side {side})")
        test = [int(c) for c in fs.test_classes]
        train = [int(c) for c in fs.train_classes] or [c for c in labels if c not in test]
        ways_test, ways_train = len(test) * fs.rotations, len(train) * fs.rotations
        if fs.ways > min(ways_test, ways_train):
            raise ValueError(f"ways: invalid value {fs.ways} (the split has {ways_train} meta-train and "
                             f"{ways_test} meta-test classes)")
        task = cls(class_pool([data.x_train], [data.y_train], train, fs.rotations, fs.image_size),
                   class_pool([data.x_train, data.x_val], [data.y_train, data.y_val], test, fs.rotations,
                              fs.image_size),
                   class_pool([data.x_test], [data.y_test], test, fs.rotations, fs.image_size), data.in_channels)
        fewest = min(len(v) for v in task.train.images.values())
        if fewest < max(fs.meta_shots, fs.shots + fs.queries):
            key = "meta_shots" if fs.meta_shots > fs.shots + fs.queries else "queries"
            raise ValueError(f"{key}: invalid value {getattr(fs, key)} (a meta-train class has only {fewest} images; "
                             f"meta_shots = {fs.meta_shots}, shots + queries = {fs.shots + fs.queries})")
        for name, pool in (("meta-test", task.val), ("meta-test (test split)", task.test)):
            fewest = min(len(v) for v in pool.images.values())
            if fewest < fs.shots + fs.queries:
                raise ValueError(f"queries: invalid value {fs.queries} (shots + queries = {fs.shots + fs.queries}, "
                                 f"but a {name} class has only {fewest} images)")
        return task


def episodes(pool: ClassPool, fs: FewShotSettings, n: int, seed: int) -> list[Episode]:
    """``n`` episodes of ``pool`` drawn from ``seed`` (fixed: the same for every architecture)."""
    rng = np.random.default_rng(int(seed))
    return [pool.sample(fs.ways, fs.shots, fs.queries, rng) for _ in range(n)]


# --- adaptation -----------------------------------------------------------------------------------------
def _inner_settings(fs: FewShotSettings, n_support: int):
    from evonas.training import TrainSettings

    return TrainSettings(C=fs.C, N=fs.N, batch_size=n_support, optimizer="sgd", lr=fs.lr, momentum=fs.momentum,
                         weight_decay=0.0, label_smoothing=0.0, schedule="constant", grad_clip=5.0)


def _features(model, x):
    """The inputs of ``model.classifier`` (pooled features) for ``x``."""
    import torch

    captured = []
    handle = model.classifier.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return captured[0]


def reset_head(model, x_support, y_support, head: str, ways: int) -> None:
    """A fresh head: zeros, or the ProtoNet head of the support prototypes (BN statistics of the support)."""
    import torch

    from evonas.training import recalibrate_bn

    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        if head == "proto":
            recalibrate_bn(model, x_support)
            model.eval()
            feats = _features(model, x_support)
            protos = torch.stack([feats[y_support == c].mean(0) for c in range(ways)])
            model.classifier.weight.copy_(2 * protos)
            model.classifier.bias.copy_(-(protos ** 2).sum(1))


def adapt(model, ep: Episode, fs: FewShotSettings, *, steps: int, seed: int) -> float:
    """Fresh head, ``steps`` SGD steps on the support set, BN statistics of the support set; returns the
    query accuracy. Raises :class:`evonas.training.NonFiniteLoss` when adaptation diverges."""
    import torch

    from evonas.training import evaluate, recalibrate_bn, train_steps

    xs, ys = torch.as_tensor(ep.x_support), torch.as_tensor(ep.y_support)
    reset_head(model, xs, ys, fs.head, fs.ways)
    if steps:
        train_steps(model, xs, ys, _inner_settings(fs, len(ys)), steps=steps, seed=seed, device="cpu")
    recalibrate_bn(model, xs)
    acc, _ = evaluate(model, torch.as_tensor(ep.x_query), torch.as_tensor(ep.y_query), device="cpu")
    return acc


def build(graph, init, fs: FewShotSettings, in_channels: int, seed: int):
    """The network of ``graph`` with a ``ways``-way head, loaded from ``init`` as it is (no norm matching:
    meta-test adapts exactly as meta-training did). Returns ``(model, fraction of tensors loaded)``."""
    import torch

    from evonas.models import build_model

    torch.manual_seed(int(seed) & 0x7FFF_FFFF_FFFF_FFFF)
    model = build_model(graph, in_channels=in_channels, num_classes=fs.ways, C=fs.C, N=fs.N)
    frac = init.apply(model, match_norm=True) if init is not None else 0.0
    return model, frac


def score(graph, init, task: FewShotTask, eps: Sequence[Episode], fs: FewShotSettings, *, steps: int,
          seed: int = 0) -> np.ndarray:
    """Query accuracy on each episode of ``eps`` after ``steps`` adaptation steps from ``init``."""
    accs = []
    for i, ep in enumerate(eps):
        model, _ = build(graph, init, fs, task.in_channels, seed)
        accs.append(adapt(model, ep, fs, steps=steps, seed=seed + i))
    return np.asarray(accs)


# --- meta-training --------------------------------------------------------------------------------------
def _body(state: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if not k.startswith("classifier.")}


def meta_train(space, task: FewShotTask, fs: FewShotSettings, *, seed: int = 0, steps: int | None = None,
               progress: bool = False):
    """The space-wide initializer meta-trained on tasks of the meta-train classes only (``fs.meta_steps``
    Reptile or FOMAML steps, a random cell of ``space`` each; see the module docstring).
    ``info["classes_seen"]`` lists the pooled class ids its tasks used."""
    import torch

    from evonas.training import NonFiniteLoss, train_steps
    from evonas.warmstart import Initializer

    rng = np.random.default_rng(int(seed))
    init = Initializer.from_space(space, in_channels=task.in_channels, num_classes=fs.ways, C=fs.C, N=fs.N,
                                  seed=int(rng.integers(2**31)), info={"kind": "fewshot"})
    for k in [k for k in init.meta if k.startswith("classifier.")]:
        del init.meta[k]  # heads are per episode
    total = int(fs.meta_steps if steps is None else steps)
    seen: set[int] = set()
    diverged = 0
    bar = None
    if progress:
        import sys

        from tqdm import tqdm

        bar = tqdm(total=total, desc="meta-train (few-shot)", unit="step", file=sys.stderr, dynamic_ncols=True)
    for it in range(total):
        if fs.algorithm == "reptile":
            ep = task.train.sample(fs.ways, fs.meta_shots, 0, rng)
        else:
            ep = task.train.sample(fs.ways, fs.shots, fs.queries, rng)
        seen.update(ep.classes)
        graph = space.to_graph(space.sample(rng))
        model, _ = build(graph, init, fs, task.in_channels, int(rng.integers(2**31)))
        xs, ys = torch.as_tensor(ep.x_support), torch.as_tensor(ep.y_support)
        eps = fs.outer_lr * (1.0 - it / total) if fs.algorithm == "reptile" else fs.outer_lr
        try:
            reset_head(model, xs, ys, fs.head, fs.ways)
            if fs.algorithm == "reptile":  # meta_inner_steps on a meta_shots-shot task
                train_steps(model, xs, ys, _inner_settings(fs, len(ys)), steps=fs.meta_inner_steps,
                            seed=int(rng.integers(2**31)), device="cpu")
                init.update(_body(model.state_dict()), lr=eps)
            else:  # first-order MAML: the query-loss gradient at the adapted weights
                if fs.steps:
                    train_steps(model, xs, ys, _inner_settings(fs, len(ys)), steps=fs.steps,
                                seed=int(rng.integers(2**31)), device="cpu")
                model.train()
                model.zero_grad(set_to_none=True)
                loss = torch.nn.functional.cross_entropy(model(torch.as_tensor(ep.x_query)),
                                                         torch.as_tensor(ep.y_query))
                if not torch.isfinite(loss):
                    raise NonFiniteLoss(f"non-finite query loss ({loss.item()})")
                loss.backward()
                target = {}
                for name, p in model.named_parameters():
                    if p.grad is not None and name in init.meta:
                        target[name] = init.meta[name] - p.grad.detach().clamp(-10, 10)
                init.update(target, lr=eps)
        except NonFiniteLoss:
            diverged += 1
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    init.info.update({"meta_steps": total, "algorithm": fs.algorithm, "head": fs.head, "ways": fs.ways,
                      "shots": fs.shots, "steps": fs.steps, "diverged": diverged, "seed": int(seed),
                      "classes_seen": sorted(seen)})
    return init


def prepare_initializer(space, task: FewShotTask, fs: FewShotSettings, *, seed: int = 0,
                        base_dir: Path | None = None, progress: bool = False):
    """``fs.init`` loaded, else meta-trained for ``fs.meta_steps`` (0: PyTorch's default init of every
    (position, op)); written to ``fs.save`` when set."""
    from evonas.warmstart import Initializer

    def resolve(p: str) -> Path:
        path = Path(p).expanduser()
        return path if path.is_absolute() or base_dir is None else base_dir / path

    if fs.init:
        init = Initializer.load(resolve(fs.init), match_norm=False)
    else:
        init = meta_train(space, task, fs, seed=fs.seed if fs.seed >= 0 else seed, progress=progress)
    if fs.save:
        target = resolve(fs.save)
        target.parent.mkdir(parents=True, exist_ok=True)
        init.save(target)
    return init


# --- the fitness ----------------------------------------------------------------------------------------
class FewShotFitness(Fitness):
    """``(arch, ctx) -> metrics``: few-shot accuracy on held-out classes (see the module docstring).

    The main process prepares the initializer once before the first batch (:meth:`before_batch`); it
    travels to workers with the pickled fitness (a few hundred kB at C=8). A resumed run meta-trains it
    again from the same seed (deterministic on CPU for a given thread count).
    """

    inline = False

    def __init__(self, data: DataSpec | str = "digits", fs: FewShotSettings | None = None, *, space=None,
                 seed: int = 0, base_dir: str | Path | None = None, log: bool = True):
        if space is None:
            raise ValueError("space: the few-shot initializer is meta-trained over a search space (space=...)")
        self.data = DataSpec(name=data) if isinstance(data, str) else data
        self.fs = fs or FewShotSettings()
        self.space = space
        self.seed = int(seed)
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self.log = log
        self._init = None

    def task(self) -> FewShotTask:
        from evonas.data import load_dataset

        return _task_cached(load_dataset(self.data), self.fs)

    def before_batch(self, candidates: Sequence[Any] = ()) -> None:
        """Meta-train (or load) the initializer once, in the main process."""
        if self._init is not None:
            return
        import sys

        import torch

        from evonas.training import worker_threads

        torch.set_num_threads(worker_threads(self.fs.threads, 1))
        start = time.perf_counter()
        if self.log and self.fs.meta_steps and not self.fs.init:
            print(f"evonas: meta-training the few-shot initializer ({self.fs.meta_steps} {self.fs.algorithm} "
                  "steps)...", file=sys.stderr)
        self._init = prepare_initializer(self.space, self.task(), self.fs, seed=self.seed, base_dir=self.base_dir)
        if self.log and self.fs.meta_steps and not self.fs.init:
            print(f"evonas: meta-trained {len(self._init)} tensors in {time.perf_counter() - start:.1f}s",
                  file=sys.stderr)

    def initializer(self):
        """The space-wide initializer adaptations start from (after :meth:`before_batch`)."""
        return self._init

    def __call__(self, arch: Architecture, ctx: EvalContext) -> EvalResult:
        import torch

        from evonas.training import NonFiniteLoss, worker_threads

        torch.set_num_threads(worker_threads(self.fs.threads, 1))
        if self._init is None:
            self.before_batch()
        fs, task = self.fs, self.task()
        budget = dict(ctx.budget or {})
        steps = int(budget.get("steps", fs.steps))
        start = time.perf_counter()
        try:
            val = score(arch.graph, self._init, task, _episodes_cached(task, fs, "val"), fs, steps=steps,
                        seed=ctx.seed)
            metrics = {"fewshot_acc": float(val.mean()), "fewshot_std": float(val.std())}
            if fs.test_episodes:
                test = score(arch.graph, self._init, task, _episodes_cached(task, fs, "test"), fs, steps=steps,
                             seed=ctx.seed)
                metrics.update(fewshot_test_acc=float(test.mean()), fewshot_test_std=float(test.std()))
            if fs.long_steps:
                long = score(arch.graph, self._init, task, _episodes_cached(task, fs, "long"), fs,
                             steps=fs.long_steps, seed=ctx.seed)
                metrics.update(fewshot_acc_long=float(long.mean()), fewshot_long_std=float(long.std()))
        except NonFiniteLoss as err:
            return EvalResult.failed(str(err))
        model, frac = build(arch.graph, self._init, fs, task.in_channels, ctx.seed)
        metrics.update(adapt_time_s=time.perf_counter() - start, warm_frac=frac,
                       params=float(sum(p.numel() for p in model.parameters())))
        return EvalResult(metrics)


_TASKS: dict[tuple, FewShotTask] = {}
_EPISODES: dict[tuple, list[Episode]] = {}


def _task_cached(data, fs: FewShotSettings) -> FewShotTask:
    key = (id(data), data.name, fs.test_classes, fs.train_classes, fs.rotations, fs.image_size)
    if key not in _TASKS:
        _TASKS.clear()
        _TASKS[key] = FewShotTask.from_dataset(data, fs)
    return _TASKS[key]


def _episodes_cached(task: FewShotTask, fs: FewShotSettings, which: str) -> list[Episode]:
    """The fixed episodes: ``val`` (fitness), ``test`` (test images), ``long`` (long-budget reference)."""
    key = (id(task), which, fs.ways, fs.shots, fs.queries, fs.episodes, fs.test_episodes, fs.long_episodes,
           fs.episode_seed)
    if key not in _EPISODES:
        if len(_EPISODES) > 6:
            _EPISODES.clear()
        pool = task.test if which == "test" else task.val
        n = {"val": fs.episodes, "test": fs.test_episodes, "long": fs.long_episodes or fs.episodes}[which]
        offset = {"val": 0, "test": 1, "long": 2}[which]
        _EPISODES[key] = episodes(pool, fs, n, seed=fs.episode_seed * 3 + offset)
    return _EPISODES[key]


# --- config ---------------------------------------------------------------------------------------------
_TYPES = {"float": (float, int), "int": (int,), "str": (str,)}
_KEYS: dict[str, tuple[tuple[type, ...], Any]] = {
    f.name: (_TYPES.get(str(f.type), (list,)), list(f.default) if isinstance(f.default, tuple) else f.default)
    for f in fields(FewShotSettings)
}


@config_section("fewshot")
def validate_fewshot(section: Mapping[str, Any], cfg: RunConfig) -> FewShotSettings:
    """``[fewshot]`` -> :class:`FewShotSettings` (one-line :class:`ConfigError` naming file, key, value)."""
    values = check_keys(cfg.where(), "fewshot", section, _KEYS)
    for key in ("test_classes", "train_classes"):
        v = values[key]
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in v):
            raise cfg.error("fewshot", key, v, "expected a list of class labels (integers >= 0)")
        values[key] = tuple(v)
    for key in ("lr", "momentum", "meta_lr"):
        values[key] = float(values[key])
    try:
        return FewShotSettings(**values)
    except ValueError as err:
        key = str(err).split(":", 1)[0].strip()
        key = key if key in values else "ways"
        raise cfg.error("fewshot", key, section.get(key, values.get(key)), str(err).split(":", 1)[-1].strip()) \
            from None



@fitness_kind("fewshot", {})
def _fewshot_fitness(cfg: RunConfig, section: Mapping[str, Any], space) -> FewShotFitness:
    from evonas.data import DataError, load_dataset
    from evonas.spaces.cell import CellSpace

    data = cfg.section("data")
    fs = cfg.section("fewshot")
    if not isinstance(space, CellSpace):
        raise cfg.error("fitness", "kind", "fewshot", f"needs a cell space (nb201, cell), not {space.name!r}")
    unknown = [m for m in cfg.metric_columns() if m not in METRICS]
    if unknown:
        raise cfg.error("fitness", "objectives/report", unknown[0],
                        f"not a metric of kind 'fewshot' (it returns: {', '.join(METRICS)})")
    asked = cfg.metric_columns()
    if {"fewshot_acc_long", "fewshot_long_std"} & set(asked) and not fs.long_steps:
        raise cfg.error("fewshot", "long_steps", 0, "fewshot_acc_long is asked for: set long_steps > 0")
    if {"fewshot_test_acc", "fewshot_test_std"} & set(asked) and not fs.test_episodes:
        raise cfg.error("fewshot", "test_episodes", 0, "fewshot_test_acc is asked for: set test_episodes > 0")
    if fs.init and not cfg.resolve(fs.init).exists():
        raise cfg.error("fewshot", "init", fs.init, f"{cfg.resolve(fs.init)} not found")
    try:
        FewShotTask.from_dataset(load_dataset(data), fs)
    except DataError as err:
        raise cfg.error("data", "name", data.name, str(err)) from None
    except ValueError as err:
        key = str(err).split(":", 1)[0].strip()
        raise cfg.error("fewshot", key, getattr(fs, key, None), str(err).split(":", 1)[-1].strip()) from None
    return FewShotFitness(data, fs, space=space, seed=cfg.search.get("seed", 0), base_dir=cfg.base_dir)


__all__ = ["FewShotSettings", "FewShotFitness", "FewShotTask", "ClassPool", "Episode", "class_pool", "episodes",
           "adapt", "score", "build", "reset_head", "meta_train", "prepare_initializer", "validate_fewshot", "METRICS"]
