"""Short-training throughput of NAS-Bench-201 networks with several concurrent workers on one device.

Each worker is its own process (spawned: CUDA does not survive fork) that builds a random NAS-Bench-201
network (C=16, N=5), keeps CIFAR-10-shaped tensors resident on the device, and trains it with the
evaluator's own loop (:func:`evonas.training.train_steps`: SGD, bf16 autocast on GPU). All workers start
together; reported are the images per second summed over workers, and the GPU utilisation sampled with
``nvidia-smi`` while they run.

    python benchmarks/gpu_throughput.py                    # on a GPU machine: 1, 2, 4, 8 workers
    python benchmarks/gpu_throughput.py --tiny             # seconds on CPU (C=4, N=1, 1 and 2 workers)

Reference points: the NAS-Bench-201 machine logged about 10 s per CIFAR-10 epoch (50,000 images) for one
cell, i.e. ~5,000 images/s; airbench trains a CIFAR-10 network to 94% in about 3 s on an A100.
Writes the ``gpu_throughput`` section of BENCHMARKS.md when it ran on a GPU (or with ``--markdown``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FULL = dict(C=16, N=5, batch=256, steps=60, warmup=10, images=10_000, workers=(1, 2, 4, 8))
TINY = dict(C=4, N=1, batch=32, steps=6, warmup=2, images=256, workers=(1, 2))


def _worker(rank: int, p: dict, device: str, ready, go, results) -> None:
    import numpy as np
    import torch

    from evonas.spaces import NB201Space
    from evonas.training import TrainSettings, train_steps
    from evonas.models import build_model

    torch.set_num_threads(1)
    space = NB201Space()
    rng = np.random.default_rng(rank)
    arch = space.to_string(space.sample(rng))
    torch.manual_seed(rank)
    model = build_model(space.to_graph(space.from_string(arch)), in_channels=3, num_classes=10, C=p["C"],
                        N=p["N"]).to(device)
    x = torch.randn(p["images"], 3, 32, 32, device=device)
    y = torch.randint(0, 10, (p["images"],), device=device)
    settings = TrainSettings(C=p["C"], N=p["N"], batch_size=p["batch"], lr=0.05, threads=1)
    train_steps(model, x, y, settings, steps=p["warmup"], seed=rank, device=device)  # kernels, allocator
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    ready.put(rank)
    go.wait()
    start = time.perf_counter()
    train_steps(model, x, y, settings, steps=p["steps"], seed=rank + 1, device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    results.put({"rank": rank, "arch": arch, "images": p["steps"] * p["batch"], "start": start,
                 "end": time.perf_counter()})


class _GpuSampler(threading.Thread):
    """Samples ``nvidia-smi`` GPU utilisation and memory every ``period`` seconds."""

    def __init__(self, index: int, period: float = 0.2):
        super().__init__(daemon=True)
        self.index, self.period = index, period
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        cmd = ["nvidia-smi", f"--id={self.index}", "--query-gpu=utilization.gpu,memory.used",
               "--format=csv,noheader,nounits"]
        while not self.stop.is_set():
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout.strip().splitlines()
                util, mem = (float(v) for v in out[0].split(","))
                self.samples.append((util, mem))
            except Exception:  # noqa: BLE001 - no sampler, no utilisation figure
                return
            self.stop.wait(self.period)


def measure(workers: int, p: dict, device: str) -> dict:
    ctx = mp.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_worker, args=(r, p, device, ready, go, results)) for r in range(workers)]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=600)
    sampler = None
    if device.startswith("cuda") and shutil.which("nvidia-smi"):
        sampler = _GpuSampler(int(device.split(":")[1]) if ":" in device else 0)
        sampler.start()
    go.set()
    rows = [results.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
    if sampler is not None:
        sampler.stop.set()
        sampler.join()
    wall = max(r["end"] for r in rows) - min(r["start"] for r in rows)
    images = sum(r["images"] for r in rows)
    out = {"workers": workers, "images_per_s": images / wall, "wall_s": wall,
           "per_worker_images_per_s": [r["images"] / (r["end"] - r["start"]) for r in rows]}
    if sampler is not None and sampler.samples:
        out["gpu_util_mean"] = sum(s[0] for s in sampler.samples) / len(sampler.samples)
        out["gpu_mem_mib_max"] = max(s[1] for s in sampler.samples)
    return out


def markdown(res: dict, command: str, machine: str) -> str:
    p = res["settings"]
    lines = [f"## Short-training throughput: NAS-Bench-201 C={p['C']}, N={p['N']}, CIFAR-10-shaped tensors",
             "", f"Device: {res['device']}, batch {p['batch']}, {p['steps']} timed steps per worker after "
             f"{p['warmup']} warm-up steps; bf16 autocast on GPU; each worker a random cell.", "",
             "| concurrent workers | images/s (sum) | images/s per worker | GPU utilisation | GPU memory |",
             "| --- | --- | --- | --- | --- |"]
    for r in res["runs"]:
        per = sum(r["per_worker_images_per_s"]) / len(r["per_worker_images_per_s"])
        util = f"{r['gpu_util_mean']:.0f}%" if "gpu_util_mean" in r else "n/a"
        mem = f"{r['gpu_mem_mib_max']:.0f} MiB" if "gpu_mem_mib_max" in r else "n/a"
        lines.append(f"| {r['workers']} | {r['images_per_s']:,.0f} | {per:,.0f} | {util} | {mem} |")
    lines += ["", "Reference: NAS-Bench-201 logged ~10 s per CIFAR-10 epoch for one cell (~5,000 images/s).", "",
              f"Reproduce: `{command}`", f"Machine: {machine}"]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny networks and 1-2 workers (runs on CPU)")
    parser.add_argument("--workers", help="comma-separated worker counts (default 1,2,4,8; tiny: 1,2)")
    parser.add_argument("--steps", type=int, help="timed steps per worker")
    parser.add_argument("--device", default="auto", help="auto (cuda:0 when present), cpu, cuda:N")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--markdown", action="store_true", help="write BENCHMARKS.md even when not on a GPU")
    parser.add_argument("--no-markdown", action="store_true", help="never write BENCHMARKS.md")
    args = parser.parse_args(argv)
    import torch

    from benchmarks.markdown import machine

    p = dict(TINY if args.tiny else FULL)
    if args.steps:
        p["steps"] = args.steps
    workers = [int(w) for w in args.workers.split(",")] if args.workers else list(p["workers"])
    device = args.device if args.device != "auto" else ("cuda:0" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(int(device.split(":")[1]) if ":" in device else 0) \
        if device.startswith("cuda") else "CPU"
    res = {"device": f"{device} ({name})", "settings": {k: v for k, v in p.items() if k != "workers"}, "runs": []}
    for w in workers:
        r = measure(w, p, device)
        res["runs"].append(r)
        util = f", GPU {r['gpu_util_mean']:.0f}%" if "gpu_util_mean" in r else ""
        print(f"{w} worker(s): {r['images_per_s']:,.0f} images/s{util}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    if (device.startswith("cuda") or args.markdown) and not args.no_markdown:
        from benchmarks.markdown import write_section

        cmd = "python benchmarks/gpu_throughput.py" + (" --tiny" if args.tiny else "")
        write_section("gpu_throughput", markdown(res, cmd, machine()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
