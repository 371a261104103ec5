"""Short-training throughput of NAS-Bench-201 cells on one GPU: one cell alone, several worker processes,
and groups of cells interleaved on CUDA streams in one process (:mod:`evonas.multitrain`), side by side.

A configuration ``WxG`` runs ``W`` worker processes (spawned: CUDA does not survive fork), each training a
group of ``G`` random NAS-Bench-201 networks (C=16, N=5) with :class:`evonas.multitrain.GroupTrainer`
(the evaluator's own step, :class:`evonas.training.TrainStepper`: SGD, bf16 autocast on GPU; channels_last
and one CUDA stream per network when ``G > 1`` or on CUDA); ``WxG+MODE`` compiles each network with
``torch.compile`` (MODE: ``default``, ``reduce-overhead``, ``max-autotune``, ``cudagraphs``...). ``1x1`` is one
cell alone. Cell ``k`` of a configuration is the same architecture and seed in every configuration. Each
worker keeps a CIFAR-10-sized training set (50,000 synthetic 3x32x32 images) resident on the device,
takes warm-up steps (the first one, which compiles, is timed apart), then all workers start together and
each network trains one CIFAR-10 epoch (ceil(50,000 / batch) steps).

Reported per configuration: images per second over all networks; seconds per cell-epoch (50,000 images
over that rate: the GPU time one cell's epoch costs when sharing it this way) and its ratio to one cell
alone; seconds per epoch as each cell sees it; GPU utilisation (NVML, else ``nvidia-smi``, sampled every
50 ms during the timed epoch); peak memory per worker (``torch.cuda.max_memory_allocated``, the data
included); the first step (compile) time.

    python benchmarks/gpu_throughput.py                      # on a GPU: 1x1, 2x1 .. 8x1, 1x2 .. 1x8, 2x4, 4x2
    python benchmarks/gpu_throughput.py --compile            # ... and 1x4+cudagraphs, 1x1+default, 1x1+reduce-overhead
    python benchmarks/gpu_throughput.py --configs 1x1,4x2,1x4+cudagraphs
    python benchmarks/gpu_throughput.py --tiny --device cpu  # seconds on CPU (C=4, N=1)

Reference points: the NAS-Bench-201 machine logged about 9-10 s per CIFAR-10 epoch for one cell (~5,000
images/s); airbench trains a CIFAR-10 network to 94% in about 3 s on an A100; HFTA (MLSys 2021) fused
many small models on one GPU for up to 15x over one job per accelerator.
Writes the ``gpu_throughput`` section of BENCHMARKS.md when it ran on a GPU (or with ``--markdown``) and
the results as JSON (``--json``, rewritten after every configuration, so a cut-off run keeps what it did).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EPOCH_IMAGES = 50_000  # one CIFAR-10 training epoch
FULL = dict(C=16, N=5, batch=256, images=EPOCH_IMAGES, side=32, warmup=10, epochs=1.0,
            configs="1x1,2x1,4x1,8x1,1x2,1x4,1x8,2x4,4x2")
COMPILED = "1x4+cudagraphs,1x1+default,1x1+reduce-overhead"
TINY = dict(C=4, N=1, batch=16, images=64, side=32, warmup=2, epochs=0.0, steps=2, configs="1x1,2x1,1x2")
CONFIG = re.compile(r"^(\d+)x(\d+)(?:\+([\w-]+))?$")


def parse_configs(text: str) -> list[tuple[int, int, str]]:
    """``"1x1,4x2,1x4+cudagraphs"`` -> ``[(workers, group, compile mode), ...]``."""
    from evonas.multitrain import COMPILE_MODES

    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        m = CONFIG.match(item)
        if not m or int(m[1]) < 1 or int(m[2]) < 1 or (m[3] or "") not in COMPILE_MODES:
            raise SystemExit(f"--configs: {item!r} is not WORKERSxGROUP[+MODE] (modes: {', '.join(COMPILE_MODES[1:])})")
        out.append((int(m[1]), int(m[2]), m[3] or ""))
    return out


def label(workers: int, group: int, mode: str) -> str:
    return f"{workers}x{group}" + (f"+{mode}" if mode else "")


def _cells(rank: int, group: int):
    """Cell ``k`` (global index) is always the same architecture: drawn from seed ``k``."""
    import numpy as np

    from evonas.spaces import NB201Space

    space = NB201Space()
    for k in range(rank * group, (rank + 1) * group):
        genome = space.sample(np.random.default_rng(k))
        yield k, space.to_graph(genome), space.to_string(genome)


def _die_with_benchmark() -> None:
    """In a spawned worker: end when the benchmark process dies, even by SIGKILL (best effort)."""
    if mp.parent_process() is None:
        return
    try:
        import os

        from evonas.evaluator import _die_with_parent

        _die_with_parent(os.getppid())
    except ImportError:
        pass


def _worker(rank: int, group: int, mode: str, p: dict, device: str, ready, go, results) -> None:
    try:
        import torch

        _die_with_benchmark()

        from evonas.models import build_model
        from evonas.multitrain import GroupOptions, GroupTrainer
        from evonas.training import TrainSettings

        torch.set_num_threads(1)
        cuda = device.startswith("cuda")
        models, archs, seeds = [], [], []
        for k, graph, arch in _cells(rank, group):
            torch.manual_seed(k)
            models.append(build_model(graph, in_channels=3, num_classes=10, C=p["C"], N=p["N"]).to(device))
            archs.append(arch)
            seeds.append(k)
        gen = torch.Generator(device=device).manual_seed(1_000 + rank)
        x = torch.randn(p["images"], 3, p["side"], p["side"], device=device, generator=gen)
        y = torch.randint(0, 10, (p["images"],), device=device, generator=gen)
        settings = TrainSettings(C=p["C"], N=p["N"], batch_size=p["batch"], lr=0.05, threads=1)
        timed = p["timed_steps"]
        trainer = GroupTrainer(models, x, y, settings, steps=p["warmup"] + timed, seeds=seeds, device=device,
                               options=GroupOptions(compile=mode))
        t0 = time.perf_counter()
        trainer.run(1)  # compiles (with a mode), picks kernels, fills the allocator
        trainer.synchronize()
        first = time.perf_counter() - t0
        trainer.run(p["warmup"] - 1)
        trainer.synchronize()
        ready.put((rank, None))
        go.wait()
        before = sum(s.done_steps for s in trainer.steppers)
        start = time.perf_counter()
        trainer.run(timed)
        trainer.synchronize()
        end = time.perf_counter()
        steps = sum(s.done_steps for s in trainer.steppers) - before
        row = {"rank": rank, "archs": archs, "images": steps * settings.batch_size, "start": start, "end": end,
               "first_step_s": first, "failed": sum(e is not None for e in trainer.errors)}
        if cuda:
            row["peak_mem_mib"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
        results.put(row)
    except Exception as err:  # noqa: BLE001 - one broken configuration must not stop the others
        ready.put((rank, f"{type(err).__name__}: {err}"))
        results.put({"rank": rank, "error": f"{type(err).__name__}: {err}"[:500]})


class GpuSampler(threading.Thread):
    """Samples GPU utilisation (%) and used memory (MiB) every ``period`` seconds: NVML when importable,
    else ``nvidia-smi``."""

    def __init__(self, index: int, period: float = 0.05):
        super().__init__(daemon=True)
        self.index, self.period = index, period
        self.samples: list[tuple[float, float]] = []
        self.source = ""
        self.stop = threading.Event()

    def _nvml(self):
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            return lambda: (float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                            pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2 ** 20)
        except Exception:  # noqa: BLE001 - no NVML: try nvidia-smi
            return None

    def run(self) -> None:
        read = self._nvml()
        self.source = "NVML" if read else "nvidia-smi"
        if read is None and shutil.which("nvidia-smi"):
            cmd = ["nvidia-smi", f"--id={self.index}", "--query-gpu=utilization.gpu,memory.used",
                   "--format=csv,noheader,nounits"]

            def read():
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout.strip().splitlines()
                return tuple(float(v) for v in out[0].split(","))
        if read is None:
            self.source = ""
            return
        while not self.stop.is_set():
            try:
                self.samples.append(read())
            except Exception:  # noqa: BLE001 - no sampler, no utilisation figure
                return
            self.stop.wait(self.period)


def measure(workers: int, group: int, mode: str, p: dict, device: str, inline: bool = False,
            timeout: float = 600.0) -> dict:
    """One configuration; ``inline``: a single worker runs in this process (no spawn)."""
    out = {"config": label(workers, group, mode), "workers": workers, "group": group, "compile": mode,
           "cells": workers * group}
    if inline and workers == 1:
        ready, results, go = queue.Queue(), queue.Queue(), threading.Event()
        go.set()
        _worker(0, group, mode, p, device, ready, go, results)
        procs = []
    else:
        ctx = mp.get_context("spawn")
        ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        procs = [ctx.Process(target=_worker, args=(r, group, mode, p, device, ready, go, results), daemon=True)
                 for r in range(workers)]
        for proc in procs:
            proc.start()
    try:
        errors = [err for _, err in (ready.get(timeout=timeout) for _ in range(workers)) if err]
        if errors:
            raise RuntimeError(errors[0])
        sampler = None
        if device.startswith("cuda"):
            sampler = GpuSampler(int(device.split(":")[1]) if ":" in device else 0)
            sampler.start()
        go.set()
        rows = sorted((results.get(timeout=timeout) for _ in range(workers)), key=lambda r: r["rank"])
        if sampler is not None:
            sampler.stop.set()
            sampler.join()
        errors = [r["error"] for r in rows if "error" in r]
        if errors:
            raise RuntimeError(errors[0])
    except (RuntimeError, queue.Empty) as err:
        out["error"] = str(err) or f"timeout after {timeout:g}s"
        for proc in procs:  # workers still waiting for the start signal
            proc.kill()
        return out
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    wall = max(r["end"] for r in rows) - min(r["start"] for r in rows)
    images = sum(r["images"] for r in rows)
    out.update(images=images, wall_s=wall, images_per_s=images / wall, archs=[a for r in rows for a in r["archs"]],
               s_per_cell_epoch=EPOCH_IMAGES * wall / images,
               s_per_epoch_each=EPOCH_IMAGES * wall * out["cells"] / images,
               first_step_s=max(r["first_step_s"] for r in rows), failed=sum(r["failed"] for r in rows))
    if all("peak_mem_mib" in r for r in rows):
        out["peak_mem_mib_per_worker"] = max(r["peak_mem_mib"] for r in rows)
    if sampler is not None and sampler.samples:
        out["gpu_util_mean"] = sum(s[0] for s in sampler.samples) / len(sampler.samples)
        out["gpu_mem_used_mib_max"] = max(s[1] for s in sampler.samples)
        out["gpu_samples"] = len(sampler.samples)
        out["gpu_sampler"] = sampler.source
    return out


def summarize(res: dict) -> dict:
    """Adds each configuration's ratio to one cell alone and picks the best (fewest s per cell-epoch)."""
    runs = [r for r in res["runs"] if "error" not in r]
    solo = next((r for r in runs if r["config"] == "1x1"), None)
    for r in runs:
        if solo is not None:
            r["vs_solo"] = solo["s_per_cell_epoch"] / r["s_per_cell_epoch"]
    if runs:
        best = min(runs, key=lambda r: r["s_per_cell_epoch"])
        res["best"] = {"config": best["config"], "s_per_cell_epoch": best["s_per_cell_epoch"],
                       "vs_solo": best.get("vs_solo"), "gpu_util_mean": best.get("gpu_util_mean"),
                       "solo_s_per_epoch": solo["s_per_cell_epoch"] if solo else None}
    return res


def _fmt(value, spec: str, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def markdown(res: dict, command: str, machine: str) -> str:
    p = res["settings"]
    lines = [f"## Short-training throughput on one GPU: NAS-Bench-201 C={p['C']}, N={p['N']}, CIFAR-10-sized epochs",
             "", f"Device: **{res['device']}**, torch {res['torch']}. Batch {p['batch']}, SGD, bf16 autocast, "
             "channels_last, one CUDA stream per network, synthetic 3x32x32 data resident on the GPU; each "
             f"network trains {p['timed_steps']} timed steps (one epoch of {EPOCH_IMAGES:,} images) after "
             f"{p['warmup']} warm-up steps. `WxG`: W worker processes, each training a group of G networks "
             "interleaved on streams (`evonas.multitrain`); `+MODE`: torch.compile mode. Cell k is the same "
             "random architecture and seed in every configuration.", "",
             "| configuration | networks | images/s (all) | s per cell-epoch | vs one cell alone | "
             "s per epoch, each cell | GPU utilisation | peak memory per worker | first step (compile) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in res["runs"]:
        if "error" in r:
            lines.append(f"| {r['config']} | {r['cells']} | failed: {r['error'][:120]} | | | | | | |")
            continue
        lines.append(f"| {r['config']} | {r['cells']} | {r['images_per_s']:,.0f} | {r['s_per_cell_epoch']:.3f} | "
                     f"{_fmt(r.get('vs_solo'), '.2f', 'x')} | {r['s_per_epoch_each']:.2f} | "
                     f"{_fmt(r.get('gpu_util_mean'), '.0f', '%')} | "
                     f"{_fmt(r.get('peak_mem_mib_per_worker'), ',.0f', ' MiB')} | {r['first_step_s']:.1f} s |")
    best = res.get("best")
    if best:
        lines += ["", f"Best: **{best['config']}**, {best['s_per_cell_epoch']:.3f} s per cell-epoch, "
                  f"{_fmt(best['vs_solo'], '.2f', 'x')} the throughput of one cell alone "
                  f"({_fmt(best['solo_s_per_epoch'], '.2f', ' s')} per epoch); GPU utilisation "
                  f"{_fmt(best['gpu_util_mean'], '.0f', '%')}. Goal: <= 1 s per cell-epoch at >= 80% utilisation."]
    lines += ["", "s per cell-epoch = 50,000 images / images per second of all networks together. Reference: "
              "NAS-Bench-201 logged ~9-10 s per CIFAR-10 epoch for one cell. Utilisation is NVML's (the share of "
              "time a kernel ran, not of the SMs busy).", "", f"Reproduce: `{command}`", f"Machine: {machine}"]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny networks (C=4, N=1), 2 steps (runs on CPU)")
    parser.add_argument("--configs", help=f"comma-separated WORKERSxGROUP[+MODE] (default {FULL['configs']})")
    parser.add_argument("--compile", action="store_true", help=f"also run {COMPILED}")
    parser.add_argument("--epochs", type=float, help="timed epochs (of 50,000 images) per network (default 1)")
    parser.add_argument("--steps", type=int, help="timed steps per network (instead of --epochs)")
    parser.add_argument("--device", default="auto", help="auto (cuda:0 when present), cpu, cuda:N")
    parser.add_argument("--inline", action="store_true", help="run 1-worker configurations in this process")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per configuration before it fails")
    parser.add_argument("--max-seconds", type=float, default=0.0,
                        help="start no further configuration after this many seconds (0: no limit)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--markdown", action="store_true", help="write BENCHMARKS.md even when not on a GPU")
    parser.add_argument("--no-markdown", action="store_true", help="never write BENCHMARKS.md")
    parser.add_argument("--markdown-to", help="write the section into this file instead of BENCHMARKS.md")
    args = parser.parse_args(argv)
    p = dict(TINY if args.tiny else FULL)
    configs = parse_configs((args.configs or p["configs"]) + ("," + COMPILED if args.compile else ""))
    del p["configs"]
    import torch

    from benchmarks.markdown import machine

    if args.steps:
        p["steps"] = args.steps
    if args.epochs:
        p["epochs"], p["steps"] = args.epochs, 0
    p["timed_steps"] = p.pop("steps", 0) or max(1, math.ceil(p["epochs"] * EPOCH_IMAGES / p["batch"]))
    device = args.device if args.device != "auto" else ("cuda:0" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(int(device.split(":")[1]) if ":" in device else 0) \
        if device.startswith("cuda") else "CPU"
    res = {"device": f"{device} ({name})", "gpu": name if device.startswith("cuda") else None,
           "torch": torch.__version__, "settings": p, "runs": []}
    write_md = (device.startswith("cuda") or args.markdown or args.markdown_to) and not args.no_markdown
    cmd = "python benchmarks/gpu_throughput.py" + (" --tiny" if args.tiny else "") + \
        (f" --configs {args.configs}" if args.configs else "") + (" --compile" if args.compile else "")
    began = time.perf_counter()
    for workers, group, mode in configs:
        if args.max_seconds and time.perf_counter() - began > args.max_seconds:
            print(f"{label(workers, group, mode):>22}: skipped (--max-seconds {args.max_seconds:g} passed)", flush=True)
            res.setdefault("skipped", []).append(label(workers, group, mode))
            continue
        r = measure(workers, group, mode, p, device, inline=args.inline, timeout=args.timeout)
        res["runs"].append(r)
        summarize(res)
        if "error" in r:
            print(f"{r['config']:>22}: failed: {r['error']}", flush=True)
        else:
            util = f", GPU {r['gpu_util_mean']:.0f}%" if "gpu_util_mean" in r else ""
            mem = f", {r['peak_mem_mib_per_worker']:,.0f} MiB/worker" if "peak_mem_mib_per_worker" in r else ""
            print(f"{r['config']:>22}: {r['images_per_s']:>9,.0f} images/s, {r['s_per_cell_epoch']:.3f} s per "
                  f"cell-epoch ({_fmt(r.get('vs_solo'), '.2f', 'x')} one cell alone){util}{mem}, first step "
                  f"{r['first_step_s']:.1f} s", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
        if write_md:  # after every configuration: a run cut short keeps its section
            from benchmarks.markdown import BENCHMARKS_MD, write_section

            write_section("gpu_throughput", markdown(res, cmd, machine()), Path(args.markdown_to or BENCHMARKS_MD))
    best = res.get("best")
    if best:
        print(f"best: {best['config']}: {best['s_per_cell_epoch']:.3f} s per cell-epoch, "
              f"{_fmt(best['vs_solo'], '.2f', 'x')} one cell alone ({_fmt(best['solo_s_per_epoch'], '.3f', ' s')} "
              "per epoch)", flush=True)
    return 0 if best else 1


if __name__ == "__main__":
    sys.exit(main())
