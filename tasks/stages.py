"""The five pipeline stages as cached Prefect tasks.

Each calls one orca.stages function, writes into its content-addressed directory, logs
progress, and returns a small JSON reference (paths + fingerprints), persisted as the cache.
"""

from __future__ import annotations

from typing import Any

from prefect import task

from orca.config import AlignConfig, ProxyConfig, RefineConfig
from orca.stages import align as align_stage
from orca.stages import evaluate as evaluate_stage
from orca.stages import ingest as ingest_stage
from orca.stages import proxy as proxy_stage
from orca.stages import refine as refine_stage
from tasks.caching import stage_cache_policy, stage_dir
from tasks.logs import run_logger

STAGE_OPTIONS: dict[str, Any] = {
    "persist_result": True,
    "result_serializer": "json",
    "cache_expiration": None,
}


@task(name="ingest", cache_policy=stage_cache_policy("ingest"), **STAGE_OPTIONS)
def ingest(
    task_name: str, seed: int, data_version: str = "", train_fraction: float = 1.0
) -> dict[str, Any]:
    """Write the task's train/validation/test splits to Arrow files."""
    out = stage_dir("ingest", dict(locals()))
    reference = ingest_stage.ingest(task_name, out, seed, train_fraction)
    sizes = {name: split["rows"] for name, split in reference["splits"].items()}
    run_logger().info("ingested %s: %s -> %s", task_name, sizes, out)
    return reference


@task(name="proxy", cache_policy=stage_cache_policy("proxy"), tags=["gpu"], **STAGE_OPTIONS)
def proxy_features(backbone: str, config: ProxyConfig) -> dict[str, Any]:
    """Featurise the labelled proxy dataset with the body's own input embedding."""
    out = stage_dir("proxy", dict(locals()))
    logger = run_logger()

    def progress(done: int, total: int) -> None:
        if done == total or done % (config.batch_size * 10) == 0:
            logger.info("proxy features: %d/%d examples", done, total)

    reference = proxy_stage.extract_proxy(backbone, config, out, progress=progress)
    logger.info(
        "proxy %s: %d examples, %d labels, D=%d",
        config.dataset,
        reference["rows"],
        reference["num_labels"],
        reference["dim"],
    )
    return reference


@task(name="align", cache_policy=stage_cache_policy("align"), tags=["gpu"], **STAGE_OPTIONS)
def align(
    task_name: str,
    backbone: str,
    dataset: dict[str, Any],
    proxy: dict[str, Any],
    config: AlignConfig,
    epochs: int,
    seed: int,
    pretrained: bool = True,
) -> dict[str, Any]:
    """Train the embedder to minimise the alignment loss to the proxy (epochs=0: keep init)."""
    params = dict(locals())  # exactly the parameters, as the cache key saw them
    logger = run_logger()

    def on_epoch(epoch: int, distance: float) -> None:
        logger.info("align epoch %d/%d: %s %.5f", epoch, epochs, config.metric, distance)

    return align_stage.align(
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
    )


@task(name="refine", cache_policy=stage_cache_policy("refine"), tags=["gpu"], **STAGE_OPTIONS)
def refine(
    task_name: str,
    backbone: str,
    dataset: dict[str, Any],
    embedder: dict[str, Any],
    config: RefineConfig,
    seed: int,
    mode: str = "full",
    pretrained: bool = True,
) -> dict[str, Any]:
    """Fine-tune the parameters `mode` selects; keep the best epoch on the validation split."""
    params = dict(locals())  # exactly the parameters, as the cache key saw them
    logger = run_logger()

    def on_epoch(record) -> None:
        logger.info(
            "refine epoch %d/%d: train loss %.4f, val loss %.4f, val metric %.4f",
            record.epoch + 1,
            config.epochs,
            record.train_loss,
            record.val_loss,
            record.val_metric,
        )

    return refine_stage.refine(
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
    )


@task(
    name="evaluate",
    cache_policy=stage_cache_policy("evaluate", writes_outputs=False),
    tags=["gpu"],
    **STAGE_OPTIONS,
)
def evaluate(
    task_name: str, backbone: str, dataset: dict[str, Any], model: dict[str, Any], seed: int
) -> dict[str, Any]:
    """The test metric of the selected model (the only read of the test split)."""
    result = evaluate_stage.evaluate(task_name, backbone, dataset, model, seed)
    run_logger().info("test %s = %.4f", result["metric"], result["value"])
    return result
