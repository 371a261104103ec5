#!/usr/bin/env bash
# The GPU checks of issue 13 in one call, for a machine with a CUDA GPU (the device tool's H200), in about
# 6 minutes (every step has its own time limit; the whole stays under 8 minutes):
#   1. benchmarks/gpu_throughput.py --compile: one cell alone, 2/4/8 worker processes, groups of 2/4/8 on
#      streams, 2x4 and 4x2, and three compiled configurations; writes its BENCHMARKS.md section;
#   2. `evonas run` of a real-training config (digits, C=16, N=2) in batch mode with --jobs 1 (twice),
#      --jobs 4 and --jobs 4 with isolated evaluations, and with [training] group = 2 under --jobs 1 and
#      --jobs 2: are the evaluations identical (same seeds)?
#   3. scripts/gpu_determinism.py (plain and --deterministic): grouped vs solo training, weight by weight;
#   4. the GPU tests: tests/test_multitrain.py, slow ones included.
# Results under $OUT (at most 8 files): gpu_check.log (everything printed), gpu_throughput.json,
# BENCHMARKS.md (with the new section), jobs_check.json, determinism.json, determinism_strict.json.
#
# What it assumes about the machine: a python3 with a CUDA build of torch (the device image's
# /opt/torch/.venv python3 holds torch 2.11.0+cu130, with numpy, networkx, joblib, tqdm, scikit-learn,
# scipy, threadpoolctl, matplotlib, pytest, pytest-timeout and pynvml) and no network. The project is not
# pip-installed there: its pin torch==2.13.0 names the CPU build available offline on the development
# machine, so the machine's own CUDA torch is used through PYTHONPATH=$PWD. deap, the one dependency the
# image lacks, travels as a wheel in .whl/ (git-ignored), fetched beforehand where the registries answer:
#
#     bash scripts/gpu_check.sh --prepare                       # here: downloads the deap wheel into .whl/
#     device run: command "bash scripts/gpu_check.sh", carry [".whl"], timeout_s 540
#
# test-skip: needs a CUDA GPU (bash scripts/gpu_check.sh --smoke runs its plumbing on CPU in a few minutes)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEAP=deap==1.4.3

if [[ "${1:-}" == "--prepare" ]]; then
  exclude=$(git rev-parse --git-path info/exclude)
  grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
  exec "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "$DEAP"
fi
SMOKE=0
[[ "${1:-}" == "--smoke" ]] && SMOKE=1

OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
WORK=$(mktemp -d)
LOG="$OUT/gpu_check.log"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
step() { echo; echo "=== $(date -u +%H:%M:%S) $*"; }

checks() {

step "environment"
nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not found"
if ! "$PY" -c "import deap" 2>/dev/null; then
  if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" .whl/*.whl || return 1
    export PYTHONPATH="$WORK/site"
  else
    echo "deap is missing and .whl/ holds no wheel: run 'bash scripts/gpu_check.sh --prepare' first"; return 1
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" - <<'EOF'
import importlib, sys, torch
print(f"python {sys.version.split()[0]} at {sys.executable}; torch {torch.__version__} (CUDA {torch.version.cuda}); "
      f"GPU: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
missing = [m for m in ("deap", "numpy", "networkx", "joblib", "tqdm", "sklearn", "scipy", "threadpoolctl",
                       "matplotlib", "pytest") if importlib.util.find_spec(m) is None]
print("missing packages:", ", ".join(missing) or "none")
import evonas.multitrain  # noqa: F401  (the worktree's evonas, importable)
print("evonas from", evonas.__file__)
EOF
[[ $? == 0 ]] || return 1

if [[ $SMOKE == 1 ]]; then
  BENCH=(--tiny --device cpu --configs 1x1,2x1,1x2,1x2+cudagraphs --markdown-to "$OUT/BENCHMARKS.md")
  DET=(--device cpu --steps 4 --C 4 --N 1)
  TRAIN="C = 4
N = 1
steps = 4"
  BUDGET=4
else
  BENCH=(--compile --timeout 100 --max-seconds 200)
  DET=()
  TRAIN="C = 16
N = 2
steps = 100"
  BUDGET=8
fi

step "1. throughput: benchmarks/gpu_throughput.py ${BENCH[*]}"
timeout 320 "$PY" benchmarks/gpu_throughput.py "${BENCH[@]}" --json "$OUT/gpu_throughput.json"
echo "exit status $?"
[[ $SMOKE == 1 ]] || cp BENCHMARKS.md "$OUT/BENCHMARKS.md"

step "2. evonas run (batch mode): --jobs 1 twice, --jobs 4, --jobs 4 isolated; groups of 2 with --jobs 1 and 2"
for variant in false true group; do
  isolate=$variant group=1
  [[ $variant == group ]] && isolate=false group=2
  cat > "$WORK/jobs-$variant.toml" <<EOF
[space]
name = "nb201"
[strategy]
name = "rea"
population = 4
sample = 2
[fitness]
kind = "train"
objectives = ["val_acc"]
report = ["test_acc", "train_time_s"]
[data]
name = "digits"
[training]
$TRAIN
batch_size = 64
group = $group
[search]
budget = $BUDGET
seed = 5
batch_size = 4
isolate = $isolate
EOF
done
run() {  # name, jobs, config variant
  local start=$SECONDS
  timeout 80 "$PY" -m evonas.cli run "$WORK/jobs-$3.toml" --out "$WORK/$1" --jobs "$2" --quiet
  echo "$1: exit status $?, $((SECONDS - start)) s"
}
run jobs1 1 false
run jobs1-again 1 false
run jobs4 4 false
run jobs4-isolated 4 true
run jobs1-group2 1 group
run jobs2-group2 2 group
"$PY" - "$WORK" "$OUT/jobs_check.json" <<'EOF'
import csv, json, sys
from pathlib import Path
work, out = Path(sys.argv[1]), Path(sys.argv[2])
keys = ("step", "arch", "status", "val_acc", "val_loss", "test_acc", "train_loss")
runs = {}
for name in ("jobs1", "jobs1-again", "jobs4", "jobs4-isolated", "jobs1-group2", "jobs2-group2"):
    path = work / name / "history.csv"
    runs[name] = [{k: r.get(k) for k in keys} for r in csv.DictReader(path.open())] if path.exists() else None
# (run, reference): jobs must not change evaluations; group 2 against solo says what channels_last changes
pairs = [("jobs1-again", "jobs1"), ("jobs4", "jobs1"), ("jobs4-isolated", "jobs1"), ("jobs2-group2", "jobs1-group2"),
         ("jobs1-group2", "jobs1")]
report = {"runs": runs, "identical": {}}
for name, ref_name in pairs:
    rows, ref = runs[name], runs[ref_name]
    same = ref is not None and rows == ref
    diff = None
    if ref and rows and len(rows) == len(ref) and all(a["arch"] == b["arch"] for a, b in zip(ref, rows)):
        diff = max(abs(float(a[k] or "nan") - float(b[k] or "nan")) for a, b in zip(ref, rows)
                   for k in ("val_acc", "val_loss", "test_acc"))
    report["identical"][f"{name} vs {ref_name}"] = same
    print(f"{name:>15} vs {ref_name}: {'identical' if same else 'DIFFERENT'}"
          + ("" if rows else " (no history)") + (f", largest metric difference {diff:.3g}" if diff is not None else ""))
out.write_text(json.dumps(report, indent=2) + "\n")
EOF

step "3. determinism: scripts/gpu_determinism.py"
timeout 60 "$PY" scripts/gpu_determinism.py "${DET[@]}" --json "$OUT/determinism.json"
timeout 60 "$PY" scripts/gpu_determinism.py "${DET[@]}" --deterministic --json "$OUT/determinism_strict.json"

step "4. GPU tests: tests/test_multitrain.py (slow ones included)"
timeout 90 "$PY" -m pytest -q -m "" -p no:cacheprovider tests/test_multitrain.py
echo "exit status $?"

}

checks 2>&1 | tee "$LOG"
echo; echo "=== summary"
grep -E "^ *(best:|[0-9]+x[0-9]+[+a-z-]*:)| vs jobs|identical [0-9]|deterministic=|passed|failed" "$LOG" | tail -n 30
rm -rf "$WORK"
