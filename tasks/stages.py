"""The pipeline stages as cached Prefect tasks: the five of ORCA, and the classical one.

Each calls one orca.stages function, writes into its content-addressed directory, logs
progress (and reports it, see tasks/progress.py), and returns a small JSON reference
(paths + fingerprints), persisted as the cache.

The torch stages (proxy, align, refine, evaluate) take `device`, the resolved device type
("cuda" or "cpu", PipelineConfig.resolved_device), never "auto": it is part of their cache
key, because a CUDA run (bf16 training steps, other kernels) does not give the CPU's
numbers, and a cache hit must give what running the stage here would.
"""

from __future__ import annotations

from typing import Any

import torch
from prefect import task

from orca.config.stages import AlignConfig, ProxyConfig, RefineConfig
from orca.stages import align as align_stage
from orca.stages import classical as classical_stage
from orca.stages import evaluate as evaluate_stage
from orca.stages import ingest as ingest_stage
from orca.stages import proxy as proxy_stage
from orca.stages import refine as refine_stage
from tasks.caching import stage_cache_policy, stage_dir
from tasks.faults import fail_if_injected, hold_if_injected
from tasks.logs import run_logger
from tasks.progress import StageProgress
from tasks.storage import result_storage
from tasks.tags import gpu_tags

GPU_TAGS = gpu_tags()  # ["gpu"] where the GPU stages will use one (tasks.tags)

STAGE_OPTIONS: dict[str, Any] = {
    # Deterministic: a failed stage would fail again the same way, so it fails fast with
    # its error, whatever PREFECT_TASKS_DEFAULT_RETRIES says. Transient I/O errors are
    # retried where the I/O is (runtime/remote_io.py).
    "retries": 0,
    "persist_result": True,
    "result_storage": result_storage(),  # ORCA_RESULT_STORAGE: a path or an fsspec URL
    "result_serializer": "json",
    "cache_expiration": None,
}


@task(name="ingest", cache_policy=stage_cache_policy("ingest"), **STAGE_OPTIONS)
def ingest(
    task_name: str, seed: int, data_version: str = "", train_fraction: float = 1.0
) -> dict[str, Any]:
    """Write the task's train/validation/test splits to Arrow files."""
    fail_if_injected("ingest")
    out = stage_dir("ingest", dict(locals()))
    reference = ingest_stage.ingest(task_name, out, seed, train_fraction)
    sizes = {name: split["rows"] for name, split in reference["splits"].items()}
    run_logger().info("ingested %s: %s -> %s", task_name, sizes, out)
    hold_if_injected("ingest")
    return reference


@task(name="proxy", cache_policy=stage_cache_policy("proxy"), tags=GPU_TAGS, **STAGE_OPTIONS)
def proxy_features(backbone: str, config: ProxyConfig, device: str = "cpu") -> dict[str, Any]:
    """Featurise the labelled proxy dataset with the body's own input embedding."""
    fail_if_injected("proxy")
    out = stage_dir("proxy", dict(locals()))
    logger = run_logger()
    steps: StageProgress | None = None

    def progress(done: int, total: int) -> None:
        nonlocal steps
        if done == total or done % (config.batch_size * 10) == 0:
            logger.info("proxy features: %d/%d examples", done, total)
            steps = steps or StageProgress("proxy", total, unit="examples")
            steps.step(done)

    reference = proxy_stage.extract_proxy(backbone, config, out, progress=progress, device=device)
    logger.info(
        "proxy %s: %d examples, %d labels, D=%d",
        config.dataset,
        reference["rows"],
        reference["num_labels"],
        reference["dim"],
    )
    hold_if_injected("proxy")
    return reference


@task(name="align", cache_policy=stage_cache_policy("align"), tags=GPU_TAGS, **STAGE_OPTIONS)
def align(
    task_name: str,
    backbone: str,
    dataset: dict[str, Any],
    proxy: dict[str, Any],
    config: AlignConfig,
    epochs: int,
    seed: int,
    pretrained: bool = True,
    device: str = "cpu",
) -> dict[str, Any]:
    """Train the embedder to minimise the alignment loss to the proxy (epochs=0: keep init)."""
    params = dict(locals())  # exactly the parameters, as the cache key saw them
    fail_if_injected("align")
    logger = run_logger()
    steps = StageProgress("align", epochs)

    def on_epoch(epoch: int, distance: float) -> None:
        logger.info("align epoch %d/%d: %s %.5f", epoch, epochs, config.metric, distance)
        steps.step(epoch + 1)  # the last call (epoch == epochs) is the final distance
        hold_if_injected("align", epoch)

    reference = align_stage.align(
        task_name,
        backbone,
        dataset,
        proxy,
        config,
        epochs,
        stage_dir("align", params),
        seed,
        on_epoch=on_epoch,
        pretrained=pretrained,
        device=device,
    )
    steps.finish()
    hold_if_injected("align")
    return reference


@task(name="refine", cache_policy=stage_cache_policy("refine"), tags=GPU_TAGS, **STAGE_OPTIONS)
def refine(
    task_name: str,
    backbone: str,
    dataset: dict[str, Any],
    embedder: dict[str, Any],
    config: RefineConfig,
    seed: int,
    mode: str = "full",
    pretrained: bool = True,
    device: str = "cpu",
) -> dict[str, Any]:
    """Fine-tune the parameters `mode` selects; keep the best epoch on the validation split."""
    params = dict(locals())  # exactly the parameters, as the cache key saw them
    fail_if_injected("refine")
    logger = run_logger()
    steps = StageProgress("refine", config.epochs) if not config.needs_plan else None
    epochs = config.epochs

    def on_plan(plan) -> None:
        nonlocal steps, epochs
        logger.info(
            "refine plan: %d epochs of %d steps (batch %d, lr %.2g, patience %s), expected "
            "%.0f s at %.1f examples/s measured; budget %.0f s%s",
            plan.epochs,
            plan.steps_per_epoch,
            plan.batch_size,
            plan.lr,
            plan.patience,
            plan.expected_seconds,
            plan.examples_per_second,
            plan.budget_s,
            " (the budget set the epochs)" if plan.budget_limited else "",
        )
        epochs = plan.epochs
        steps = StageProgress("refine", plan.epochs)

    def on_epoch(record) -> None:
        logger.info(
            "refine epoch %d/%d: train loss %.4f, val loss %.4f, val metric %.4f",
            record.epoch + 1,
            epochs,
            record.train_loss,
            record.val_loss,
            record.val_metric,
        )
        if steps is not None:
            steps.step(record.epoch + 1)
        hold_if_injected("refine", record.epoch)

    reference = refine_stage.refine(
        task_name,
        backbone,
        dataset,
        embedder,
        config,
        stage_dir("refine", params),
        seed,
        on_epoch=on_epoch,
        mode=mode,
        pretrained=pretrained,
        on_plan=on_plan,
        device=device,
    )
    if steps is not None:
        steps.finish()
    hold_if_injected("refine")
    return reference


@task(
    name="evaluate",
    cache_policy=stage_cache_policy("evaluate", writes_outputs=False),
    tags=GPU_TAGS,
    **STAGE_OPTIONS,
)
def evaluate(
    task_name: str,
    backbone: str,
    dataset: dict[str, Any],
    model: dict[str, Any],
    seed: int,
    device: str = "cpu",
) -> dict[str, Any]:
    """The test metric of the selected model (the only read of the test split)."""
    fail_if_injected("evaluate")
    result = evaluate_stage.evaluate(task_name, backbone, dataset, model, seed, device)
    run_logger().info("test %s = %.4f", result["metric"], result["value"])
    hold_if_injected("evaluate")
    return result


@task(name="classical", cache_policy=stage_cache_policy("classical"), **STAGE_OPTIONS)
def classical(task_name: str, model: str, dataset: dict[str, Any], seed: int) -> dict[str, Any]:
    """A classical baseline: candidates fitted on train and scored on validation, the best
    one scored on test (the only read of the test split). CPU only; it fits with as many
    threads as torch is given (`--threads`), which never changes the result."""
    params = dict(locals())  # exactly the parameters, as the cache key saw them
    fail_if_injected("classical")
    logger = run_logger()
    steps: StageProgress | None = None

    def on_candidate(done: int, total: int, hyperparameters: dict[str, Any], value: float):
        nonlocal steps
        logger.info(
            "%s candidate %d/%d %s: validation %.4f", model, done, total, hyperparameters, value
        )
        steps = steps or StageProgress("classical", total, unit="candidates")
        steps.step(done)

    reference = classical_stage.fit_classical(
        task_name,
        model,
        dataset,
        seed,
        stage_dir("classical", params),
        n_jobs=torch.get_num_threads(),
        on_candidate=on_candidate,
    )
    logger.info(
        "%s chose %s (validation %s %.4f); test %s = %.4f",
        model,
        reference["hyperparameters"],
        reference["metric"],
        reference["validation_value"],
        reference["metric"],
        reference["value"],
    )
    hold_if_injected("classical")
    return reference


# The stage tasks by their task names, in pipeline order (ORCA's five, then the classical).
STAGE_TASKS = {
    stage.name: stage for stage in (ingest, proxy_features, align, refine, evaluate, classical)
}
