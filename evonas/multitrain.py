"""Several short trainings in one process, their steps interleaved: one GPU kept busy by a group of small
networks.

A NAS-Bench-201 cell (C=16, N=5) at batch 256 leaves a large GPU mostly idle, and one Python process
launching its kernels is the bottleneck. :class:`GroupTrainer` trains several networks in one process:
on CUDA each network has its own stream, and the trainer takes one step of each network in turn, so the
GPU runs one network's kernels while the host enqueues the next one's. Options (:class:`GroupOptions`):
bf16 autocast (always on CUDA, as in :func:`evonas.training.train_steps`), channels_last weights, the
training data resident on the device (:func:`evonas.training.device_arrays`), and an optional
``torch.compile`` mode whose cost is measured separately (the first step of each network).
On CPU the networks train one after another (interleaving there only thrashes the caches).

Determinism. Each network keeps its own optimiser, its own data order (its own ``torch.Generator``) and
its own seed; nothing is shared but the read-only data. On CPU a network trained in a group is therefore
bit-identical to training it alone with :func:`evonas.training.short_train` and the same seed: same
losses, same weights, same metrics (``tests/test_multitrain.py``), interleaved or not. On CUDA a network
runs the same kernels on the same inputs whatever the group (streams only let independent work overlap),
so grouped equals solo exactly as far as the kernels themselves are deterministic: cuDNN's default
(heuristic, not benchmarked) algorithm choice depends only on shapes, but some backward kernels accumulate
with atomics (``torch.use_deterministic_algorithms`` lists them) and may differ in the last bits from run
to run, grouped or not. ``channels_last`` and ``compile`` change the kernels, hence the rounding, against
the plain solo path. ``scripts/gpu_check.sh`` measures which of these equalities hold on a given GPU.

    from evonas.multitrain import GroupOptions, short_train_group
    outcomes = short_train_group(graphs, data, settings, seeds=[1, 2, 3, 4], device="cuda:0",
                                 options=GroupOptions(compile="default"))
    for out in outcomes:  # (model, metrics) or the NonFiniteLoss that ended that network's training
        ...
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evonas.training import (NonFiniteLoss, TrainSettings, TrainStepper, build_for, device_arrays,
                             score_trained)

#: ``GroupOptions.compile`` values: "" (eager), a ``torch.compile`` mode, or the ``cudagraphs`` backend
COMPILE_MODES = ("", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs", "cudagraphs")


@dataclass(frozen=True)
class GroupOptions:
    """How a group trains. ``None`` means: on when the device is CUDA, off on CPU."""

    streams: bool = True  # CUDA: each network on its own stream
    channels_last: bool | None = None  # weights (hence activations) in channels_last memory format
    compile: str = ""  # see COMPILE_MODES
    interleave: bool | None = None  # one step of each network in turn (else each network to its end)

    def __post_init__(self):
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"compile: {self.compile!r} (one of {', '.join(repr(m) for m in COMPILE_MODES)})")


def compile_model(model, mode: str):
    """``model`` wrapped by ``torch.compile`` in ``mode`` (``""``: unchanged; ``"cudagraphs"``: that
    backend). The wrapper shares the model's parameters; compilation happens at its first call."""
    import torch

    if not mode:
        return model
    if mode == "cudagraphs":
        return torch.compile(model, backend="cudagraphs")
    return torch.compile(model, mode=None if mode == "default" else mode)


class GroupTrainer:
    """Trains ``models`` in place on the shared tensors ``x``, ``y`` (already on ``device``), network ``i``
    for ``steps[i]`` steps from ``seeds[i]`` exactly as :class:`evonas.training.TrainStepper` would alone.

    :meth:`run` advances the networks (a number of rounds, or to the end); a network whose loss stops
    being finite stops there and :meth:`outcome` returns its :class:`NonFiniteLoss`; the others go on.
    """

    def __init__(self, models: Sequence[Any], x, y, settings: TrainSettings, *, steps: int | Sequence[int],
                 seeds: Sequence[int], device: str, options: GroupOptions | None = None):
        import torch

        self.options = options or GroupOptions()
        self.models = list(models)
        n = len(self.models)
        steps = [int(steps)] * n if isinstance(steps, int) else [int(s) for s in steps]
        if len(steps) != n or len(seeds) != n:
            raise ValueError(f"{n} models need {n} steps and seeds (got {len(steps)} and {len(seeds)})")
        self.device = str(device)
        self.cuda = self.device.startswith("cuda")
        opt = self.options
        self.channels_last = self.cuda if opt.channels_last is None else bool(opt.channels_last)
        self.interleave = self.cuda if opt.interleave is None else bool(opt.interleave)
        if self.channels_last:
            for model in self.models:
                model.to(memory_format=torch.channels_last)
        self.streams = [torch.cuda.Stream(self.device) for _ in self.models] if self.cuda and opt.streams \
            else [None] * n
        for stream in self.streams:  # the data and the weights were written on the current stream
            if stream is not None:
                stream.wait_stream(torch.cuda.current_stream(self.device))
        self.steppers: list[TrainStepper] = []
        for model, stream, k, seed in zip(self.models, self.streams, steps, seeds):
            with self._on(stream):  # the stepper's own tensors belong to its stream
                self.steppers.append(TrainStepper(compile_model(model, opt.compile), x, y, settings, steps=k,
                                                  seed=seed, device=self.device))
        self.errors: list[NonFiniteLoss | None] = [None] * n

    def _on(self, stream):
        import torch

        return torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()

    def active(self) -> list[int]:
        """Networks with steps left that have not failed."""
        return [i for i, s in enumerate(self.steppers) if not s.done and self.errors[i] is None]

    def _step(self, i: int) -> None:
        with self._on(self.streams[i]):
            try:
                self.steppers[i].step()
            except NonFiniteLoss as err:
                self.errors[i] = err

    def run(self, rounds: int | None = None) -> None:
        """Advance every active network by up to ``rounds`` steps (``None``: to its end)."""
        left = max((s.steps for s in self.steppers), default=0) if rounds is None else int(rounds)
        if self.interleave:
            for _ in range(left):
                todo = self.active()
                if not todo:
                    break
                for i in todo:
                    self._step(i)
        else:
            for i in self.active():
                for _ in range(left):
                    if self.steppers[i].done or self.errors[i] is not None:
                        break
                    self._step(i)

    def synchronize(self) -> None:
        """Wait for the device (and make the current stream wait for every network's stream)."""
        if not self.cuda:
            return
        import torch

        current = torch.cuda.current_stream(self.device)
        for stream in self.streams:
            if stream is not None:
                current.wait_stream(stream)
        torch.cuda.synchronize(self.device)

    def outcome(self, i: int) -> dict[str, float] | NonFiniteLoss:
        """Network ``i``'s ``train_loss`` and ``steps`` (after :meth:`synchronize`), or its failure."""
        return self.errors[i] if self.errors[i] is not None else self.steppers[i].result()


def train_group(models: Sequence[Any], x, y, settings: TrainSettings, *, steps: int | Sequence[int],
                seeds: Sequence[int], device: str, options: GroupOptions | None = None
                ) -> tuple[list[dict[str, float] | NonFiniteLoss], dict[str, float]]:
    """Train ``models`` as one group (:class:`GroupTrainer`) to the end.

    Returns each network's outcome and the group's timing: ``first_step_s`` (wall time of the first step
    of every network: with ``compile``, the compilation), ``train_s`` (the remaining steps), ``total_s``.
    """
    trainer = GroupTrainer(models, x, y, settings, steps=steps, seeds=seeds, device=device, options=options)
    start = time.perf_counter()
    trainer.run(1)
    trainer.synchronize()
    first = time.perf_counter()
    trainer.run()
    trainer.synchronize()
    end = time.perf_counter()
    timing = {"first_step_s": first - start, "train_s": end - first, "total_s": end - start}
    return [trainer.outcome(i) for i in range(len(trainer.models))], timing


def short_train_group(graphs: Sequence[Any], data, settings: TrainSettings, *, seeds: Sequence[int],
                      device: str = "cpu", init=None, steps: int | Sequence[int | None] | None = None,
                      options: GroupOptions | None = None) -> list[tuple[Any, dict[str, float]] | NonFiniteLoss]:
    """:func:`evonas.training.short_train` for several architectures at once: build each from its seed
    (warm-started from ``init``), train them as one group, then recalibrate and score each.

    ``steps``: for all or per network (``None``: the settings' budget). Returns, per graph,
    ``(model, metrics)`` or the :class:`NonFiniteLoss` that ended its training.
    ``train_time_s`` is the wall time of the whole group's training (the networks overlap).
    """
    models, metrics = [], []
    for graph, seed in zip(graphs, seeds, strict=True):
        model = build_for(graph, data, settings, seed)
        m: dict[str, float] = {}
        if init is not None:
            m["warm_frac"] = init.apply(model)
        models.append(model.to(device))
        metrics.append(m)
    arrays = device_arrays(data, device)
    x_tr, y_tr = arrays[:2]
    budget = settings.total_steps(len(y_tr))
    steps = [budget if k is None else int(k) for k in
             ([steps] * len(models) if steps is None or isinstance(steps, int) else steps)]
    outcomes, timing = train_group(models, x_tr, y_tr, settings, steps=steps, seeds=seeds, device=device,
                                   options=options)
    out: list[tuple[Any, dict[str, float]] | NonFiniteLoss] = []
    for model, m, outcome in zip(models, metrics, outcomes):
        if isinstance(outcome, NonFiniteLoss):
            out.append(outcome)
            continue
        m.update(outcome)
        m["train_time_s"] = timing["total_s"]
        m.update(score_trained(model, arrays, settings, device=device))
        out.append((model, m))
    return out


__all__ = ["GroupOptions", "GroupTrainer", "COMPILE_MODES", "compile_model", "train_group", "short_train_group"]
