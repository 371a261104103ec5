"""Which equalities hold for grouped training (evonas.multitrain) on a device, weight by weight.

Four NAS-Bench-201 networks on digits, each from its own seed: trained alone (short_train) twice, then as
one group with channels_last off (on CUDA: one stream each), then with the group's defaults (on CUDA:
channels_last). Each is compared with the first solo run: identical weights, largest weight difference,
train-loss and validation-accuracy differences. On CPU all four must be identical (exit 1 otherwise);
on CUDA the table says what holds (scripts/gpu_check.sh runs it there, also with --deterministic).

    python scripts/gpu_determinism.py                          # cuda:0 when present, else CPU
    python scripts/gpu_determinism.py --deterministic --json out.json
"""
# test-args: --device cpu --steps 4 --C 4

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (cuda:0 when present), cpu, cuda:N")
    parser.add_argument("--steps", type=int, default=100, help="training steps per network")
    parser.add_argument("--C", type=int, default=16, help="channels of the first stage")
    parser.add_argument("--N", type=int, default=2, help="cells per stage")
    parser.add_argument("--deterministic", action="store_true",
                        help="torch.use_deterministic_algorithms(warn_only) and deterministic cuDNN")
    parser.add_argument("--json", help="write the comparison here")
    args = parser.parse_args(argv)
    if args.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before CUDA starts
    import numpy as np
    import torch

    from evonas.data import load_dataset
    from evonas.multitrain import GroupOptions, short_train_group
    from evonas.spaces import NB201Space
    from evonas.training import TrainSettings, short_train

    torch.set_num_threads(1)
    if args.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
    device = args.device if args.device != "auto" else ("cuda:0" if torch.cuda.is_available() else "cpu")
    space = NB201Space()
    graphs = [space.to_graph(space.sample(np.random.default_rng(k))) for k in range(4)]
    seeds = [100 + k for k in range(4)]
    data = load_dataset("digits")
    settings = TrainSettings(C=args.C, N=args.N, steps=args.steps, batch_size=64)

    def weights(model):
        return [v.detach().float().cpu().contiguous() for v in model.state_dict().values()]

    def solo():
        return [(weights(m), metrics) for m, metrics in
                (short_train(g, data, settings, seed=s, device=device) for g, s in zip(graphs, seeds))]

    def group(options):
        return [(weights(m), metrics) for m, metrics in
                short_train_group(graphs, data, settings, seeds=seeds, device=device, options=options)]

    runs = {"solo again": solo, "group, channels_last off": lambda: group(GroupOptions(channels_last=False)),
            "group, defaults": lambda: group(GroupOptions())}
    reference = solo()
    rows = []
    for name, fn in runs.items():
        result = fn()
        for k, ((w_ref, m_ref), (w, m)) in enumerate(zip(reference, result)):
            rows.append({"run": name, "network": k, "identical": all(torch.equal(a, b) for a, b in zip(w_ref, w)),
                         "max_weight_diff": max(float((a - b).abs().max()) for a, b in zip(w_ref, w)),
                         "train_loss_diff": abs(m["train_loss"] - m_ref["train_loss"]),
                         "val_acc_diff": abs(m["val_acc"] - m_ref["val_acc"])})
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"
    print(f"device {device} ({name}), torch {torch.__version__}, deterministic={args.deterministic}, "
          f"{args.steps} steps, C={args.C}, N={args.N}; each against the first solo run:")
    for name_ in runs:
        mine = [r for r in rows if r["run"] == name_]
        print(f"  {name_:<26} identical {sum(r['identical'] for r in mine)}/{len(mine)}, max weight diff "
              f"{max(r['max_weight_diff'] for r in mine):.3g}, max train-loss diff "
              f"{max(r['train_loss_diff'] for r in mine):.3g}, max val-acc diff {max(r['val_acc_diff'] for r in mine):.3g}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": f"{device} ({name})", "torch": torch.__version__,
                                               "deterministic": args.deterministic, "rows": rows}, indent=2) + "\n")
    if device == "cpu" and not all(r["identical"] for r in rows):
        print("error: on CPU grouped training must equal solo training bit for bit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
