"""``evonas export DIR``: the found architecture of a run as JSON (``arch``), a PyTorch module file with its
trained weights (``torch``) or an ONNX file (``onnx``).

* ``arch``: ``{"arch", "canonical_hash", "space", "metrics", "graph": <networkx node-link>}``; works for any
  run, whatever its fitness.
* ``torch``: ``NAME.py`` -- a module whose ``load_model()`` calls :func:`evonas.models.build_model` on the
  graph (kept inline) -- and ``NAME.pt``, the state dict, beside it. Weights come from the run when it kept
  them (``DIR/weights/step-K.pt``: a ``train`` run keeps the best individual's weights, see
  :func:`keep_best_weights`), else the architecture is retrained with its recorded seed and budget, which
  reproduces the run on CPU when no online warm start was used. Runs without training (table lookups)
  export the untrained network of the NAS-Bench-201 skeleton: there are no weights to export.
* ``onnx``: the same network traced to ``NAME.onnx``, loaded back, checked with ``onnx.checker`` and run
  once with ONNX's reference evaluator against PyTorch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pprint
import textwrap
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from evonas.atomic import write_text, write_with
from evonas.report.data import ReportError, kind_of, load_run, read_summary
from evonas.trial import Objective

log = logging.getLogger(__name__)

FORMATS = ("arch", "torch", "onnx")
WEIGHTS_DIR = "weights"
SUFFIX = {"arch": ".json", "torch": ".py", "onnx": ".onnx"}


class ExportError(ReportError):
    """A run that cannot be exported in the asked format (the message says why and what to do)."""


@dataclass
class Chosen:
    """One evaluation of a run: what the export is about."""

    directory: Path
    summary: dict[str, Any]
    step: int
    arch: str
    canonical_hash: str
    seed: int
    metrics: dict[str, float]
    space: Any
    graph: nx.DiGraph = field(repr=False)


def choose(directory: str | Path, step: int | None = None) -> Chosen:
    """The best evaluation of the run in ``directory`` (by its first objective), or evaluation ``step``."""
    directory = Path(directory)
    if kind_of(directory) != "run":
        raise ExportError(f"{directory}: a bench directory holds many searches, not one found model; "
                          "export from a run directory (evonas run ... --out DIR)")
    run = load_run(directory)
    summary = run.summary
    if step is None:
        best = summary.get("best")
        if not best:
            raise ExportError(f"{directory / 'summary.json'}: no successful evaluation to export")
        step = int(best["step"])
    where = [i for i, s in enumerate(run.steps) if int(s) == int(step)]
    if not where:
        raise ExportError(f"{directory / 'history.csv'}: no evaluation with step {step} "
                          f"(steps 0..{len(run) - 1})")
    i = where[0]
    if not run.ok[i]:
        raise ExportError(f"{directory / 'history.csv'}: evaluation {step} failed ({run.errors[i]}); "
                          "nothing to export")
    from evonas.plugins import UntrustedCode
    from evonas.report.data import space_for

    try:
        space = space_for(summary, run.archs[i])
    except UntrustedCode as err:
        raise ExportError(str(err)) from None
    if space is None:
        raise ExportError(f"{directory / 'summary.json'}: cannot rebuild the search space "
                          f"{summary.get('space')!r} here (is its plugin importable?)")
    metrics = {m: float(v[i]) for m, v in run.metrics.items() if math.isfinite(v[i])}
    graph = space.to_graph(space.from_string(run.archs[i]))
    return Chosen(directory, summary, int(step), run.archs[i], run.hashes[i], run.seeds[i], metrics, space, graph)


def default_out(directory: str | Path, fmt: str, step: int | None = None) -> Path:
    name = "best_model" if step is None else f"model_step{step}"
    return Path(directory) / "export" / (name + SUFFIX[fmt])


def export(directory: str | Path, fmt: str = "arch", out: str | Path | None = None, *, step: int | None = None,
           config: str | Path | None = None, in_channels: int | None = None, num_classes: int | None = None,
           program: bool = True) -> list[Path]:
    """Export the best (or ``step``'s) architecture of a run; returns the files written (main file first).

    ``config`` overrides the genome config recorded in ``summary.json`` (needed when the run was started
    from another folder); ``in_channels``/``num_classes`` size the network of runs that did not train;
    ``program=False`` skips the ``.pt2`` (torch.export) file of the torch format.
    """
    if fmt not in FORMATS:
        raise ExportError(f"--format = {fmt!r}: expected one of {', '.join(FORMATS)}")
    chosen = choose(directory, step)
    out = Path(out) if out is not None else default_out(directory, fmt, step)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "arch":
        return [write_arch(chosen, out)]
    model = network(chosen, config=config, in_channels=in_channels, num_classes=num_classes)
    if fmt == "torch":
        return write_torch(chosen, model, out, program=program)
    return [write_onnx(chosen, model, out)]


# --- arch ----------------------------------------------------------------------------------------------
def arch_document(chosen: Chosen) -> dict[str, Any]:
    """The JSON document of the ``arch`` format."""
    s = chosen.summary
    return {
        "format": "evonas-arch/1",
        "arch": chosen.arch,
        "canonical_hash": chosen.canonical_hash,
        "space": chosen.space.describe(),
        "step": chosen.step,
        "seed": chosen.seed,
        "objectives": s.get("objectives", []),
        "metrics": chosen.metrics,
        "run": str(chosen.directory.resolve()),
        "config": s.get("config"),
        "graph": nx.node_link_data(chosen.graph, edges="edges"),
    }


def write_arch(chosen: Chosen, out: Path) -> Path:
    write_text(out, json.dumps(arch_document(chosen), indent=2) + "\n")
    log.info("wrote %s", out)
    return out


def read_arch(path: str | Path) -> tuple[str, nx.DiGraph, dict[str, Any]]:
    """``(arch string, graph, document)`` from a file written by ``--format arch``."""
    doc = json.loads(Path(path).read_text())
    return doc["arch"], nx.node_link_graph(doc["graph"], edges="edges"), doc


# --- the network -----------------------------------------------------------------------------------------
@dataclass
class Network:
    """A built (and possibly trained) network with what is needed to rebuild it."""

    model: Any
    build: dict[str, int]
    input_shape: tuple[int, ...]
    trained: str  # "run" (weights kept by the run), "retrained", or "" (untrained)
    ops_modules: list[str] = field(default_factory=list)
    data: dict[str, Any] | None = None
    recorded: dict[str, float] = field(default_factory=dict)
    reproduced: dict[str, float] = field(default_factory=dict)


def _config(chosen: Chosen, config: str | Path | None):
    """The run's genome config: ``config`` if given; else the path summary.json recorded, tried from here,
    from the run directory and from each folder above it; else the config snapshot in the run's store
    (``run.db``), whose relative paths then resolve from the current folder."""
    from evonas.config import load_config, parse_config

    if config:
        return load_config(config)
    path = chosen.summary.get("config")
    if path:
        p = Path(path)
        candidates = [p] if p.is_absolute() else [p, *(d / p for d in [chosen.directory.resolve(),
                                                                        *chosen.directory.resolve().parents])]
        for cand in candidates:
            if cand.is_file():
                return load_config(cand)
    snapshot = _stored_config(chosen.directory)
    if snapshot is not None:
        log.info("config %r not found; using the snapshot stored in %s", path, chosen.directory / "run.db")
        return parse_config(snapshot)
    if not path:
        return None
    raise ExportError(f"{chosen.directory / 'summary.json'}: config {str(path)!r} not found from here; "
                      "pass --config PATH (the genome config the run used)")


def _stored_config(directory: Path) -> dict[str, Any] | None:
    """The effective config a run's SQLite store recorded (meta key ``config``), or ``None``."""
    import sqlite3

    from evonas.store import query_read_only

    db = directory / "run.db"
    if not db.is_file():
        return None
    try:
        rows = query_read_only(db, "SELECT value FROM meta WHERE key = 'config'")
        return json.loads(rows[0][0]) if rows else None
    except (sqlite3.Error, json.JSONDecodeError):
        return None


def weights_path(directory: str | Path, step: int) -> Path:
    return Path(directory) / WEIGHTS_DIR / f"step-{step}.pt"


def network(chosen: Chosen, *, config: str | Path | None = None, in_channels: int | None = None,
            num_classes: int | None = None) -> Network:
    """The PyTorch network of ``chosen``: with the run's weights, retrained, or untrained (no training)."""
    import torch

    from evonas.models import build_model

    cfg = _config(chosen, config)
    if cfg is None or cfg.fitness.get("kind") != "train":
        build = {"in_channels": int(in_channels or 3), "num_classes": int(num_classes or 10), "C": 16, "N": 5}
        torch.manual_seed(chosen.seed & 0x7FFF_FFFF_FFFF_FFFF)
        model = build_model(chosen.graph, **build)
        log.warning("the run did not train networks (fitness kind %r): exporting the untrained network "
                    "(NAS-Bench-201 skeleton, C=16, N=5, %d input channels, %d classes)",
                    cfg.fitness.get("kind") if cfg else "?", build["in_channels"], build["num_classes"])
        return Network(model.eval(), build, (build["in_channels"], 32, 32), "")
    from evonas.training import import_ops_modules, short_train, worker_threads

    data_spec = cfg.section("data")
    settings = cfg.section("training")
    import_ops_modules(settings.ops_modules, cfg.base_dir)
    ops_modules = [str((cfg.base_dir / m).resolve()) if m.endswith(".py") else m for m in settings.ops_modules]
    from evonas.data import load_dataset

    data = load_dataset(data_spec)
    build = {"in_channels": data.in_channels, "num_classes": data.num_classes, "C": settings.C, "N": settings.N}
    recorded = {k: chosen.metrics[k] for k in ("val_acc", "test_acc") if k in chosen.metrics}
    data_fields = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(data_spec).items()}
    kept = weights_path(chosen.directory, chosen.step)
    if kept.is_file():
        torch.manual_seed(0)
        model = build_model(chosen.graph, **build)
        model.load_state_dict(torch.load(kept, map_location="cpu", weights_only=True))
        net = Network(model.eval(), build, data.input_shape, "run", ops_modules, data_fields, recorded)
    else:
        fitness = cfg.build_fitness(chosen.space)
        warm = fitness.warm
        if warm is not None and warm.online:
            log.warning("online warm start: retraining starts from the first initializer snapshot, not the one "
                        "evaluation %d started from, so the metrics will differ from the run's", chosen.step)
        init = fitness.initializer()
        torch.set_num_threads(worker_threads(settings.threads, cfg.search.get("jobs", 1)))
        log.info("retraining %s with seed %d (the run kept no weights for evaluation %d)", chosen.arch,
                 chosen.seed, chosen.step)
        model, metrics = short_train(chosen.graph, data, settings, seed=chosen.seed, device="cpu", init=init)
        net = Network(model.eval(), build, data.input_shape, "retrained", ops_modules, data_fields, recorded,
                      {k: metrics[k] for k in recorded})
    if not net.reproduced:
        net.reproduced = measure(net)
    for k, v in recorded.items():
        if abs(net.reproduced.get(k, math.nan) - v) > 1e-6:
            log.warning("%s of the exported weights is %.6f; the run recorded %.6f (training on another device, "
                        "or with another thread count, changes the numbers)", k, net.reproduced[k], v)
    return net


def measure(net: Network) -> dict[str, float]:
    """Validation and test accuracy of ``net`` on its dataset, evaluated as the run evaluated it (CPU)."""
    if not net.data:
        return {}
    from evonas.data import DataSpec, load_dataset
    from evonas.training import device_arrays, evaluate

    spec = DataSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in net.data.items()})
    data = load_dataset(spec)
    _, _, x_va, y_va, x_te, y_te = device_arrays(data, "cpu")
    out = {}
    for name, x, y in (("val_acc", x_va, y_va), ("test_acc", x_te, y_te)):
        if name in net.recorded:
            out[name] = evaluate(net.model, x, y, device="cpu")[0]
    return out


# --- torch ---------------------------------------------------------------------------------------------
#: the module's docstring (data from the run: pasted into the module only as an escaped literal)
DOC_TEMPLATE = """{title}

Exported by `evonas export --format torch` from {run} (evaluation {step}).
{weights_note}
{metrics}

    from {name} import load_model
    model = load_model()            # eval mode; weights from {name}.pt beside this file
    logits = model(x)               # x: float tensor (batch, {shape})

`python {name}.py` rebuilds the network, loads the weights and, when the dataset is available, prints its
accuracy next to the recorded one. Needs torch and evonas (for the builder and the ops); {name}.pt2, when
present, is the same network as a torch.export program that needs only torch:
    model = torch.export.load("{name}.pt2").module()
"""

MODULE_TEMPLATE = '''{doc}

from pathlib import Path

import networkx as nx
import torch

ARCH = {arch!r}
SPACE = {space}
#: the phenotype graph (networkx node-link format)
GRAPH = {graph}
#: evonas.models.build_model arguments
BUILD = {build}
INPUT_SHAPE = {input_shape!r}
#: modules registering custom ops (imported before building)
OPS_MODULES = {ops_modules!r}
#: the dataset the run trained on (evonas.data.DataSpec fields), or None
DATA = {data}
RECORDED = {recorded}
WEIGHTS = Path(__file__).with_suffix(".pt")


def graph() -> nx.DiGraph:
    return nx.node_link_graph(GRAPH, edges="edges")


def build() -> torch.nn.Module:
    """The network, freshly initialised."""
    from evonas.models import build_model
    from evonas.training import import_ops_modules

    import_ops_modules(OPS_MODULES)
    return build_model(graph(), **BUILD)


def load_model(weights=WEIGHTS) -> torch.nn.Module:
    """The network with the exported weights (when the file exists), in eval mode."""
    model = build()
    if weights is not None and Path(weights).is_file():
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()


def accuracy(model=None) -> dict:
    """Validation and test accuracy on the run's dataset (None when the run did not train)."""
    if DATA is None:
        return {{}}
    from evonas.data import DataSpec, load_dataset
    from evonas.training import device_arrays, evaluate

    model = model if model is not None else load_model()
    spec = DataSpec(**{{k: tuple(v) if isinstance(v, list) else v for k, v in DATA.items()}})
    _, _, x_val, y_val, x_test, y_test = device_arrays(load_dataset(spec), "cpu")
    return {{"val_acc": evaluate(model, x_val, y_val, device="cpu")[0],
            "test_acc": evaluate(model, x_test, y_test, device="cpu")[0]}}


if __name__ == "__main__":
    model = load_model()
    out = model(torch.zeros(2, *INPUT_SHAPE))
    print(f"{{ARCH}}: {{sum(p.numel() for p in model.parameters())}} parameters, output {{tuple(out.shape)}}")
    for key, value in accuracy(model).items():
        print(f"{{key}} {{value:.6f}} (recorded {{RECORDED.get(key, float('nan')):.6f}})")
'''


def _literal(obj: Any) -> str:
    return pprint.pformat(obj, width=110, sort_dicts=False)


def docstring_literal(text: str) -> str:
    """``text`` as a triple-quoted Python string literal that evaluates to exactly ``text``: quotes,
    backslashes and unprintable characters are escaped, so no run data can close the string."""
    out = []
    for ch in text:
        if ch == "\n":
            out.append(ch)
        elif ch in "\\\"":
            out.append("\\" + ch)
        elif not ch.isprintable():
            out.append(repr(ch)[1:-1])
        else:
            out.append(ch)
    return '"""' + "".join(out) + '"""'


def write_torch(chosen: Chosen, net: Network, out: Path, *, program: bool = True) -> list[Path]:
    """``out`` (a .py module), the state dict beside it (same name, ``.pt``) and, with ``program``, the
    torch.export program (``.pt2``)."""
    import torch

    out = out.with_suffix(".py")
    weights = out.with_suffix(".pt")
    state = {k: v.detach().cpu() for k, v in net.model.state_dict().items()}
    write_with(weights, lambda tmp: torch.save(state, tmp))
    note = {"run": "Weights: the trained weights the run kept for this evaluation.",
            "retrained": f"Weights: retrained with the run's seed ({chosen.seed}) and budget; accuracy "
                         f"{_fmt(net.reproduced)} against the run's {_fmt(net.recorded)}.",
            "": "Weights: none trained (the run scored architectures without training); the .pt file holds "
                "a fresh initialisation."}[net.trained]
    graph = nx.node_link_data(chosen.graph, edges="edges")
    doc = DOC_TEMPLATE.format(
        title=f"{chosen.arch}", run=chosen.directory.resolve(), step=chosen.step, weights_note=note,
        metrics=textwrap.fill("Recorded metrics: " + ", ".join(f"{k}={v:.6g}" for k, v in chosen.metrics.items()),
                              width=110), name=out.stem, shape=", ".join(map(str, net.input_shape))).rstrip("\n")
    text = MODULE_TEMPLATE.format(
        doc=docstring_literal(doc + "\n"), input_shape=tuple(net.input_shape), arch=chosen.arch,
        space=_literal(chosen.space.describe()),
        graph=_literal(graph), build=_literal(net.build), ops_modules=net.ops_modules, data=_literal(net.data),
        recorded=_literal(net.recorded or {}))
    write_text(out, text)
    written = [out, weights]
    pt2 = write_program(net, out.with_suffix(".pt2")) if program else None
    if pt2 is not None:
        written.append(pt2)
    log.info("wrote %s", ", ".join(map(str, written)))
    return written


def write_program(net: Network, out: Path) -> Path | None:
    """The network as a ``torch.export`` program (batch dimension dynamic): it loads with plain torch,
    ``torch.export.load(path).module()``, without evonas. ``None`` (and a warning) when tracing fails."""
    import torch

    x = torch.zeros(2, *net.input_shape)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(net.model.eval(), (x,),
                                          dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
        write_with(out, lambda tmp: torch.export.save(program, tmp))
    except Exception as err:  # noqa: BLE001 - an op torch.export cannot trace: the .py export still works
        log.warning("no %s: torch.export failed (%s: %s)", out.name, type(err).__name__, err)
        return None
    return out


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()) or "none"


# --- onnx ----------------------------------------------------------------------------------------------
def write_onnx(chosen: Chosen, net: Network, out: Path, *, check: bool = True) -> Path:
    """Trace ``net`` to ONNX (batch dimension dynamic), then load the file back, run ``onnx.checker`` and
    compare one forward pass of ONNX's reference evaluator with PyTorch's."""
    try:
        import onnx
    except ImportError:
        raise ExportError("--format onnx needs the onnx package: pip install 'evonas[onnx]'") from None
    import numpy as np
    import torch

    out = out.with_suffix(".onnx")
    x = torch.randn(2, *net.input_shape, generator=torch.Generator().manual_seed(0))
    try:
        import onnxscript  # noqa: F401  (the torch.export-based exporter needs it)

        dynamo = True
    except ImportError:
        dynamo = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        kwargs: dict[str, Any] = {"input_names": ["input"], "output_names": ["logits"], "dynamo": dynamo}
        if dynamo:
            kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
        else:
            kwargs.update(dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17)
        traced = out.with_name(f".{out.stem}.{os.getpid()}.traced.onnx")
        torch.onnx.export(net.model.eval(), (x,), str(traced), **kwargs)
    try:
        model = onnx.load(str(traced))
    finally:
        traced.unlink(missing_ok=True)
        traced.with_name(traced.name + ".data").unlink(missing_ok=True)
    model.doc_string = f"evonas export: {chosen.arch} (evaluation {chosen.step} of {chosen.directory.resolve()})"
    for key, value in (("arch", chosen.arch), ("space", json.dumps(chosen.space.describe())),
                       ("metrics", json.dumps(chosen.metrics))):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    write_with(out, lambda tmp: onnx.save(model, tmp))
    if check:
        check_onnx(out, net.model, x)
    log.info("wrote %s", out)
    return out


def check_onnx(path: str | Path, model=None, x=None, tol: float = 1e-4) -> float:
    """Load ``path`` back, run ``onnx.checker`` (full check) and, given the PyTorch ``model`` and an input
    ``x``, the reference evaluator; returns the largest absolute difference of the outputs (0.0 without a
    model). Raises :class:`ExportError` when they disagree by more than ``tol``."""
    import numpy as np
    import onnx
    from onnx.reference import ReferenceEvaluator

    loaded = onnx.load(str(path))
    onnx.checker.check_model(loaded, full_check=True)
    if model is None:
        return 0.0
    import torch

    with torch.no_grad():
        want = model.eval()(x).numpy()
    got = ReferenceEvaluator(loaded).run(None, {loaded.graph.input[0].name: x.numpy()})[0]
    diff = float(np.max(np.abs(got - want)))
    if not diff <= tol:
        raise ExportError(f"{path}: ONNX output differs from PyTorch by {diff:.3g} (> {tol})")
    return diff


# --- keeping the best weights during a run --------------------------------------------------------------
class BestWeights:
    """A :class:`evonas.search.Search` callback that keeps only the weights of the best evaluation so far
    (by the first objective) in ``DIR/weights/step-K.pt``; workers write every evaluation's weights there
    (``fitness.weights_dir``) and this deletes the others after each batch, in the main process."""

    def __init__(self, directory: str | Path, objective: Objective, trials: Sequence[Any] = ()):
        self.directory = Path(directory)
        self.objective = objective
        self.best: tuple[float, int] | None = None
        self._consider(trials)

    def _consider(self, trials: Sequence[Any]) -> None:
        for t in sorted(trials, key=lambda t: t.step):
            kept = weights_path(self.directory.parent, t.step).is_file()
            if t.ok and self.objective.metric in t.metrics and kept:
                v = self.objective.value(t)
                if self.best is None or self.objective.better(v, self.best[0]):
                    self.best = (v, t.step)

    def __call__(self, trials: Sequence[Any]) -> None:
        self._consider(trials)
        keep = f"step-{self.best[1]}.pt" if self.best else None
        for path in self.directory.glob("step-*.pt"):
            if path.name != keep:
                path.unlink(missing_ok=True)


def keep_best_weights(search, out: str | Path) -> BestWeights | None:
    """Make ``search`` keep the best individual's trained weights in ``out/weights/`` (for ``evonas export``).

    Works with a fitness whose :meth:`~evonas.fitness.Fitness.keep_weights` accepts the folder (the
    ``train`` kind): workers save each trained network there, and a callback keeps the best one. Returns the
    callback, or ``None`` when the fitness trains nothing.
    """
    directory = Path(out) / WEIGHTS_DIR
    if not search.evaluator.fitness.keep_weights(directory):
        return None
    directory.mkdir(parents=True, exist_ok=True)
    keeper = BestWeights(directory, search.objectives[0], search.store.trials())
    search.callbacks.append(keeper)
    return keeper


__all__ = ["FORMATS", "ExportError", "export", "choose", "arch_document", "read_arch", "network", "measure",
           "write_arch", "write_torch", "write_onnx", "check_onnx", "keep_best_weights",
           "BestWeights", "weights_path"]
