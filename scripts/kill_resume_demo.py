"""Kill a real-training run twice at random moments, resume it, and compare with an uninterrupted run.

    python scripts/kill_resume_demo.py                      # genomes/digits.toml, budget 24, 2 kills
    python scripts/kill_resume_demo.py --budget 12 --steps 40 --meta-steps 20 --out /tmp/demo

Runs `evonas run` three ways in real processes: once uninterrupted; once SIGKILLed (the run's whole
process group, workers included: a machine crash as far as the run can tell) at two random moments, each
time resumed with `--resume`. A moment is "after a random number of evaluations completed, plus a random
fraction of an evaluation's time", so kills land in the middle of training. Then checks that the resumed
run made the same evaluations in the same order with the same results (timing columns aside) and found the
same best, that no evaluation was lost or duplicated, and that evaluations in flight at a kill were redone.
Writes OUT/demo.json and prints a summary; exit code 0 when everything matched.
"""

# test-skip: real training killed and resumed, minutes; tests/test_resume.py runs it small (marked slow)

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TIMING = ("elapsed_s", "train_time_s")


def dump_toml(data: dict) -> str:
    """A TOML document of sections holding scalars, lists and inline tables (what genome configs use)."""

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        raise TypeError(type(v))

    lines = []
    for section, body in data.items():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {value(v)}" for k, v in body.items())
        lines.append("")
    return "\n".join(lines)


def make_config(args, path: Path) -> Path:
    base = Path(args.config).resolve()
    data = tomllib.loads(base.read_text())
    search = data.setdefault("search", {})
    search.update(budget=args.budget, seed=args.seed, jobs=args.jobs, batch_size=args.batch_size)
    if args.steps is not None:
        data.setdefault("training", {})["steps"] = args.steps
    if "warm_start" in data:
        if args.meta_steps is not None:
            data["warm_start"]["meta_steps"] = args.meta_steps
        if not args.online:
            data["warm_start"]["online"] = False
    for section in data.values():  # relative paths stay relative to the original config
        for key, v in list(section.items()):
            if isinstance(v, str) and ("/" in v or v.endswith((".csv", ".npz", ".pt", ".py"))):
                file, sep, name = v.partition(".py:")  # "file.py:function"
                target = file + ".py" if sep else v
                candidate = base.parent / target
                if not Path(target).is_absolute() and candidate.exists():
                    section[key] = str(candidate.resolve()) + (f":{name}" if sep else "")
    path.write_text(dump_toml(data))
    return path


def start(cfg: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "evonas.cli", "run", str(cfg), "--out", str(out), "--quiet",
                             *extra], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def finish(proc: subprocess.Popen, what: str) -> None:
    out, err = proc.communicate()
    _reap_group(proc)
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed (exit {proc.returncode}):\n{err}")


def _reap_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever the run left behind
    except ProcessLookupError:
        pass


def status_counts(db: Path) -> tuple[int, list[int]]:
    """(completed evaluations, keys in flight) of a store being written by another process."""
    if not db.exists():
        return 0, []
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            done = con.execute("SELECT COUNT(*) FROM evaluations WHERE status != 'running'").fetchone()[0]
            running = [r[0] for r in con.execute("SELECT key FROM evaluations WHERE status = 'running'")]
            return done, running
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0, []


def history(out: Path) -> tuple[list[str], list[tuple]]:
    rows = list(csv.DictReader((out / "history.csv").open()))
    cols = [c for c in (rows[0] if rows else {}) if c not in TIMING]
    return cols, [tuple(r[c] for c in cols) for r in rows]


def code_digest() -> dict[str, str]:
    """Digests of evonas's source files: runs compared across a code change may differ for that reason."""
    import hashlib

    import evonas

    root = Path(evonas.__file__).parent
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            for p in sorted(root.rglob("*.py"))}


def _untimed(best: dict | None) -> dict | None:
    if best is None:
        return None
    return {**best, "metrics": {k: v for k, v in best["metrics"].items() if k not in TIMING}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(REPO / "genomes" / "digits.toml"))
    p.add_argument("--out", default=str(REPO / "runs" / "kill-resume-demo"))
    p.add_argument("--budget", type=int, default=24)
    p.add_argument("--batch-size", dest="batch_size", type=int, default=4)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="the search's seed")
    p.add_argument("--kill-seed", dest="kill_seed", type=int, default=None, help="seed of the kill moments "
                   "(default: from the clock, printed)")
    p.add_argument("--kills", type=int, default=2)
    p.add_argument("--steps", type=int, default=None, help="[training] steps (default: the config's)")
    p.add_argument("--meta-steps", dest="meta_steps", type=int, default=None, help="[warm_start] meta_steps")
    p.add_argument("--online", action="store_true", help="keep [warm_start] online = true (the initializer's "
                   "online updates are checkpointed in OUT/killed/warm_start/)")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    kill_seed = args.kill_seed if args.kill_seed is not None else int(time.time()) % 100000
    rng = np.random.default_rng(kill_seed)
    cfg = make_config(args, out / "config.toml")
    whole, killed = out / "uninterrupted", out / "killed"
    for d in (whole, killed):
        for name in ("run.db", "run.db-wal", "run.db-shm", "history.csv", "summary.json"):
            (d / name).unlink(missing_ok=True)

    code = code_digest()
    t0 = time.perf_counter()
    finish(start(cfg, whole), "uninterrupted run")
    t_whole = time.perf_counter() - t0
    con = sqlite3.connect(whole / "run.db")
    per_eval = float(np.median([f - d for d, f in con.execute(
        "SELECT dispatched_at, finished_at FROM evaluations WHERE finished_at IS NOT NULL")]))
    con.close()
    print(f"uninterrupted: {args.budget} evaluations in {t_whole:.1f}s ({per_eval:.1f}s each, dispatch to "
          "result)", flush=True)

    db = killed / "run.db"
    kills = []
    t0 = time.perf_counter()
    for i in range(args.kills):
        done_before, _ = status_counts(db)
        left = args.budget - done_before
        target = done_before + int(rng.integers(1, max(2, left // (args.kills - i + 1))))
        delay = float(rng.uniform(0.1, 0.9)) * per_eval  # into the evaluations now in flight
        proc = start(cfg, killed, *(["--resume"] if i else []))
        while status_counts(db)[0] < target and proc.poll() is None:
            time.sleep(0.05)
        end = time.monotonic() + delay
        while time.monotonic() < end and proc.poll() is None:
            time.sleep(0.02)
        if proc.poll() is not None:
            raise SystemExit(f"the run ended before kill {i + 1}; use a larger --budget")
        done, running = status_counts(db)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        kills.append({"kill": i + 1, "completed": done, "in_flight": running,
                      "after_s": round(time.perf_counter() - t0, 1)})
        print(f"kill {i + 1}: SIGKILL after {done} completed evaluations, in flight {running}", flush=True)
    finish(start(cfg, killed, "--resume"), "final resume")
    print(f"killed {args.kills}x and resumed: {time.perf_counter() - t0:.1f}s in all", flush=True)

    cols, a = history(whole)
    _, b = history(killed)
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (whole, killed))
    con = sqlite3.connect(db)
    keys = [r[0] for r in con.execute("SELECT key FROM evaluations ORDER BY key")]
    status = dict(con.execute("SELECT key, status FROM evaluations"))
    resumes = json.loads(con.execute("SELECT value FROM meta WHERE key = 'resumes'").fetchone()[0])
    con.close()
    redone = sorted(k for kill in kills for k in kill["in_flight"])
    checks = {
        "same evaluations, same order, same results": a == b,
        "same best": _untimed(sa["best"]) == _untimed(sb["best"]),
        "none lost or duplicated": keys == list(range(args.budget)) and len(b) == args.budget,
        "in-flight evaluations redone": all(status.get(k) in ("ok", "failed") for k in redone),
        "resumed as many times as killed": len(resumes) == args.kills,
    }
    now = code_digest()
    changed = sorted(f for f in set(code) | set(now) if code.get(f) != now.get(f))
    first_diff = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
    report = {"config": str(cfg), "budget": args.budget, "seed": args.seed, "kill_seed": kill_seed, "kills": kills,
              "compared_columns": cols, "checks": checks, "first_difference_at_step": first_diff,
              "best": sb["best"], "uninterrupted_s": round(t_whole, 1), "source_changed_during_demo": changed}
    (out / "demo.json").write_text(json.dumps(report, indent=2) + "\n")
    for name, ok in checks.items():
        print(f"  {'OK  ' if ok else 'FAIL'} {name}")
    if changed:
        print(f"  note: evonas files changed while the demo ran (a mismatch may come from that): {changed}")
    print(f"best: {sb['best']['arch']} {sb['best']['metrics']}")
    print(f"-> {out / 'demo.json'}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
