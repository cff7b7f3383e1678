"""Is orca's gap to scratch and the classical baselines a matter of compute? The demo
tasks trained on a GPU with the recipe's full step count and four times more.

`orca demo` on 2 CPU cores gives each run a 30 s refine budget, which cuts several tasks'
epochs (digits gets one). This script trains the same models in memory, with the
pipeline's code (benchmarks/diagnose_quality.py's run_variant: ingest's splits, the
recipe, the warm start, early stopping on validation, test read once for the
best-validation state), on a machine where compute is not the limit.

Two steps, because the GPU machine may lack the data packages, the packaged body and
Prefect/MLflow:

    # here: the demo tasks' arrays, the proxy features and the body, into one folder
    .venv/bin/python benchmarks/compute_scaling.py export .gpu/bundle
    # on a CUDA machine with torch, transformers, scikit-learn and pyarrow:
    PYTHONPATH=. python3 benchmarks/compute_scaling.py run .gpu/bundle --device cuda

The body is exported in half precision (45 MB instead of 90 MB, so it can travel) and
trained in float32: its weights differ from the packaged ones by rounding (relative 5e-4).
`run` prints one line per finished run and a table of mean test metrics per task and
variant; `--out` appends every run's record (plan, learning curve, test) as a JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from itertools import product
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from diagnose_quality import parse_variant

UNLIMITED = 1e9  # a refine budget that never cuts the recipe's epochs
# label -> diagnose_quality settings. "orca" is the demo's method (60 align epochs at the
# demo's AlignConfig, then the recipe); "scratch" the same architecture, random body,
# no alignment. "x4" variants run about 4x the recipe's 400 optimizer steps.
VARIANTS: dict[str, dict[str, object]] = {
    "orca": {"align": 60, "budget_s": UNLIMITED},
    "scratch": {"scratch": 1, "budget_s": UNLIMITED},
    "orca x4": {"align": 60, "steps": 1600},
    "scratch x4": {"scratch": 1, "steps": 1600},
    # the body's lr, 2.5x below and 4x above the recipe's 5e-5 (embedder and predictor:
    # task_lr_scale times that, as always)
    **{
        f"{method} x4 lr{lr:g}": {**setting, "steps": 1600, "lr": lr}
        for method, setting in (("orca", {"align": 60}), ("scratch", {"scratch": 1}))
        for lr in (2e-5, 2e-4)
    },
    "orca full-align": {
        "align": 60,
        "align.samples_per_class": 128,
        "align.max_source_samples": 5000,
        "budget_s": UNLIMITED,
    },
}
ARRAYS = ("x_train", "y_train", "x_test", "y_test", "x_val", "y_val")


def export(out: Path, tasks: list[str], seeds: int, backbone: str) -> None:
    from diagnose_quality import proxy_features

    from orca.data.tasks import get_task
    from orca.model.bodies import load_body

    (out / "tasks").mkdir(parents=True, exist_ok=True)
    for name in tasks:
        raw = get_task(name).loader()
        arrays = {k: getattr(raw, k) for k in ARRAYS if getattr(raw, k) is not None}
        np.savez_compressed(out / "tasks" / f"{name}.npz", **arrays)
        print(f"{name}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))
    for seed in range(seeds):
        features, labels = proxy_features(backbone, seed)
        np.savez_compressed(out / f"proxy_seed{seed}.npz", features=features, labels=labels)
        print(f"proxy seed {seed}: features {features.shape}")
    body = load_body(backbone)
    body.model.half().save_pretrained(out / "body")
    print(f"body: {backbone} in half precision -> {out / 'body'}")


def _raw_task(bundle: Path, name: str):
    from orca.data.tasks import RawTask

    with np.load(bundle / "tasks" / f"{name}.npz") as data:
        arrays = {k: data[k] for k in data.files}
    return RawTask(source=f"{bundle}/tasks/{name}.npz", version="export", **arrays)


def _one_run(bundle: str, task: str, seed: int, label: str, device: str, overrides: dict) -> dict:
    import torch
    from diagnose_quality import run_variant, splits

    torch.set_num_threads(1)
    bundle_path = Path(bundle)
    spec, train, val, test = splits(task, seed, raw=_raw_task(bundle_path, task))
    with np.load(bundle_path / f"proxy_seed{seed}.npz") as data:
        proxy = (data["features"], data["labels"])
    began = time.perf_counter()
    result = run_variant(
        spec,
        train,
        val,
        test,
        str(bundle_path / "body"),
        {**VARIANTS[label], **overrides},
        seed,
        device=device,
        proxy=proxy,
    )
    plan = result.pop("plan")
    return {
        "task": task,
        "seed": seed,
        "variant": label,
        "metric": spec.metric,
        "test": float(result["test"]),
        "val": float(result["val"]),
        "best_epoch": result["best_epoch"],
        "epochs_run": len(result["curve"]),
        "planned_epochs": None if plan is None else plan.epochs,
        "batch_size": None if plan is None else plan.batch_size,
        "train_seconds": round(result["seconds"], 1),
        "wall_seconds": round(time.perf_counter() - began, 1),
        "curve": result["curve"],
    }


def run(args: argparse.Namespace) -> None:
    jobs = list(product(args.tasks, range(args.seeds), args.variants))
    # the longest first, so that the pool is not left waiting for one straggler
    jobs.sort(key=lambda job: ("x4" not in job[2], job[0] not in ("digits", "darcy")))
    overrides = dict(parse_variant(f"set:{','.join(args.set)}")[1]) if args.set else {}
    records: list[dict] = []
    began = time.perf_counter()
    with ProcessPoolExecutor(args.parallel) as pool:
        futures = {
            pool.submit(_one_run, args.bundle, task, seed, label, args.device, overrides): (
                task,
                seed,
                label,
            )
            for task, seed, label in jobs
        }
        for future in as_completed(futures):
            task, seed, label = futures[future]
            try:
                record = future.result()
            except Exception as err:  # report and go on: one failure must not lose the rest
                print(f"FAILED {task} seed {seed} {label}: {type(err).__name__}: {err}")
                continue
            records.append(record)
            if args.out:  # one JSON line per run as it finishes: a cut-off run keeps them
                with open(args.out, "a") as out:
                    out.write(json.dumps(record) + "\n")
            print(
                f"{task:14s} s{seed} {label:16s} test {record['test']:.4f} "
                f"val {record['val']:.4f} best_ep {record['best_epoch']}/"
                f"{record['epochs_run']} bs {record['batch_size']} "
                f"{record['train_seconds']:.0f}s ({time.perf_counter() - began:.0f}s)",
                flush=True,
            )
    print_table(records, args.tasks, args.variants)


def print_table(records: list[dict], tasks: list[str], variants: list[str]) -> None:
    print("\n| task | metric | " + " | ".join(variants) + " |")
    print("|---|---|" + "---|" * len(variants))
    for task in tasks:
        cells, metric = [], ""
        for label in variants:
            values = [r["test"] for r in records if r["task"] == task and r["variant"] == label]
            metric = next((r["metric"] for r in records if r["task"] == task), metric)
            cells.append(f"{np.mean(values):.4g} ± {np.std(values):.2g}" if values else "-")
        print(f"| {task} | {metric} | " + " | ".join(cells) + " |")


def main() -> None:
    from orca.suites import SUITES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write the tasks, proxy features and body")
    ex.add_argument("out", type=Path)
    ex.add_argument("--backbone", default="minilm-l6")
    rn = sub.add_parser("run", help="train every (task, seed, variant) and print the table")
    rn.add_argument("bundle")
    rn.add_argument("--device", default="cuda")
    rn.add_argument("--parallel", type=int, default=8, help="runs at once (processes)")
    rn.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    rn.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="settings for every variant, e.g. budget_s=30 (the demo's budget) lr=2e-4",
    )
    rn.add_argument("--out", help="JSON-lines file to append every run's record to")
    for p in (ex, rn):
        p.add_argument("--tasks", nargs="*", default=list(SUITES.get("demo")))
        p.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    if args.command == "export":
        export(args.out, args.tasks, args.seeds, args.backbone)
    else:
        run(args)


if __name__ == "__main__":
    main()
