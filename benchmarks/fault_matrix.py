"""The fault matrix: each pipeline stage hit by SIGTERM, SIGKILL or a damaged artifact, and
what the user sees, the exit status, and what the re-run recomputes. Measured, not written
by hand: every cell comes from running `orca run` here.

For each stage (ingest, proxy, align, refine, evaluate) and fault:

- **SIGTERM, SIGKILL**: `orca run gunpoint` (a tiny 2-layer BERT written by the tests'
  helper, the tests' small settings) with $ORCA_HOLD_STAGE (tasks/faults.py) holding the
  process inside the stage (align and refine: after their first epoch, mid-training; the
  others: outputs written, cache record not yet), the signal sent there, then the same
  command run again.
- **damaged**: a run straight through, then the stage's first output file truncated to half
  its size, then the same command run again.

Columns: the last line the faulted command printed on stderr, its exit status, and the
stages the re-run ran (the faulted one and those after it; the others came back Cached),
with the re-run's exit status. Every case has its own state directory; the commands share
one Prefect API.

    .venv/bin/python benchmarks/fault_matrix.py                    # about 8 minutes
    .venv/bin/python benchmarks/fault_matrix.py --stages refine --faults SIGTERM
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

STAGES = ("ingest", "proxy", "align", "refine", "evaluate")
FAULTS = ("SIGTERM", "SIGKILL", "damaged")
HOLDS = {"align": "align@0", "refine": "refine@0"}  # mid-training; the others at their end
SETTINGS = {
    "proxy.max_examples": 60,
    "proxy.max_tokens": 16,
    "align.epochs": 2,
    "align.samples_per_class": 8,
    "refine.epochs": 3,
    "refine.batch_size": 16,
    "refine.lr": 5e-4,
    "refine.checkpoint_interval_s": 0,
}


def command(backbone: Path) -> list[str]:
    sets = [f"--set={name}={value}" for name, value in SETTINGS.items()]
    return [sys.executable, "-m", "cli.main", "run", "gunpoint", "--backbone", str(backbone),
            *sets, "--json"]  # fmt: skip


def environment(state: Path, api_url: str, **extra: str) -> dict[str, str]:
    from conftest import state_env

    env = state_env(state, PREFECT_API_URL=api_url, OMP_NUM_THREADS="1", **extra)
    for name in ("ORCA_HOLD_STAGE", "ORCA_HOLD_FILE"):
        if name not in extra:
            env.pop(name, None)
    return env


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:160] if lines else ""


def signalled(cmd, env, marker: Path, signum: int) -> tuple[int, str]:
    process = subprocess.Popen(
        cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    while not marker.is_file():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            _, err = process.communicate()
            return process.returncode, "never held: " + last_line(err)
        time.sleep(0.1)
    process.send_signal(signum)
    try:
        _, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        return process.returncode, "did not stop within 120 s"
    status = process.returncode if process.returncode >= 0 else 128 - process.returncode
    if signum == signal.SIGKILL:
        return status, "(nothing: the process is killed)"
    return status, last_line(err)


def damage(state: Path, stage: str) -> str:
    """Truncate the first output file of `stage` to half; returns its name, or why not."""
    directories = sorted((state / "artifacts" / stage).glob(f"{stage}-*"))
    files = [
        p
        for d in directories
        if d.is_dir()
        for p in sorted(d.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    ]  # fmt: skip (not the manifest)
    if not files:
        return ""
    target = files[0]
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target.name


def rerun(cmd, env) -> tuple[int, str, str]:
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return done.returncode, "(failed)", last_line(done.stderr)
    stages = json.loads(done.stdout.strip().splitlines()[-1])["states"]
    recomputed = [name for name, state in stages.items() if state != "Cached"]
    warnings = [line.split(" - ", 1)[-1] for line in done.stderr.splitlines() if "damaged" in line]
    return 0, ", ".join(recomputed) or "nothing", warnings[0][:120] if warnings else ""


def case(stage: str, fault: str, backbone: Path, api_url: str, root: Path) -> dict:
    state, marker = root / f"{stage}-{fault}", root / f"{stage}-{fault}.held"
    cmd = command(backbone)
    if fault == "damaged":
        first = subprocess.run(
            cmd, env=environment(state, api_url), cwd=REPO, capture_output=True, text=True
        )
        if first.returncode != 0:
            return {"sees": "first run failed: " + last_line(first.stderr), "status": "-"}
        damaged = damage(state, stage)
        if not damaged:
            status, recomputed, warning = rerun(cmd, environment(state, api_url))
            return {"sees": "(no output files: the stage keeps only its record)",
                    "status": "-", "recomputed": recomputed, "rerun": status}  # fmt: skip
        status, recomputed, warning = rerun(cmd, environment(state, api_url))
        return {"sees": f"{damaged} truncated; the re-run logs: {warning or '(no warning)'}",
                "status": "-", "recomputed": recomputed, "rerun": status}  # fmt: skip
    hold = {"ORCA_HOLD_STAGE": HOLDS.get(stage, stage), "ORCA_HOLD_FILE": str(marker)}
    signum = signal.Signals[fault]
    status, sees = signalled(cmd, environment(state, api_url, **hold), marker, signum)
    again, recomputed, _ = rerun(cmd, environment(state, api_url))
    return {"sees": sees, "status": status, "recomputed": recomputed, "rerun": again}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--faults", default=",".join(FAULTS))
    args = parser.parse_args()
    stages = [s for s in args.stages.split(",") if s]
    faults = [f for f in args.faults.split(",") if f]
    unknown = sorted(set(stages) - set(STAGES)) + sorted(set(faults) - set(FAULTS))
    if unknown:
        raise SystemExit(f"unknown stage or fault {unknown}; stages: {STAGES}, faults: {FAULTS}")
    from conftest import write_tiny_bert

    from runtime import prefect_api

    with tempfile.TemporaryDirectory() as tmp, prefect_api.shared_prefect_api() as api_url:
        root = Path(tmp)
        backbone = write_tiny_bert(root / "bert")
        print("| stage | fault | what the user sees | exit | the re-run runs (exit) |")
        print("|---|---|---|---|---|")
        for stage in stages:
            for fault in faults:
                row = case(stage, fault, backbone, api_url, root)
                recomputed = f"{row.get('recomputed', '-')} ({row.get('rerun', '-')})"
                print(f"| {stage} | {fault} | {row['sees']} | {row['status']} | {recomputed} |",
                      flush=True)  # fmt: skip


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
