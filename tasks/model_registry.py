"""The model registry: each task's fine-tuned models as MLflow pyfunc models that load, and
serve, where orca is not installed.

`register_model` (the pipeline flow registers each run's model; the compare flow crowns a
sweep's best as `champion`) writes the model's package (orca/serving/package.py) and logs
it with mlflow.pyfunc.log_model:

    loader_module     orca.serving.pyfunc (framework-free)
    data_path         the package: weights, body architecture, the task's shapes
    code_paths        the orca package itself, so that the loader imports without orca
    signature         float32 tensors (-1, *input_shape) -> (-1, *output_shape)
    input_example     a few rows of the task's training split
    pip_requirements  what the loader imports, pinned to the versions installed here
    metadata          the task, its metric and output kind, the package format

A version whose weights (tag `fingerprint`) and package format (tag `orca.format`) match is
linked, not logged again; the run gets the tag `registered_model` = "name/version" either
way. `resolve_model` turns what `orca predict` is given (a task or a model URI) into a
checked model URI.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from prefect import task

from orca.config.pipeline import PipelineConfig
from orca.errors import UserError
from tasks.logs import run_logger

NO_CACHE: dict[str, Any] = {"persist_result": False, "cache_policy": None}  # task options
CHAMPION_ALIAS = "champion"  # set by the compare flow (tasks/sweep_tracking.py)
FINGERPRINT_TAG = "fingerprint"  # a version's weights
FORMAT_TAG = "orca.format"  # a version's package format (orca.serving.package.FORMAT)
EXAMPLE_ROWS = 3  # rows of the training split logged as the input example
MODEL_NAME_PREFIX = "orca-"
URI_SCHEMES = ("models:/", "runs:/")
URI_FORMS = "models:/NAME/VERSION, models:/NAME@ALIAS or runs:/RUN_ID/model"


def registered_model_name(task_name: str) -> str:
    return f"{MODEL_NAME_PREFIX}{task_name}"


def pinned_requirements(packages: tuple[str, ...]) -> list[str]:
    """`name==version` for each installed distribution, without a local version label
    (torch 2.x+cu130 is published as 2.x)."""
    pins = []
    for name in packages:
        try:
            installed = version(name)
        except PackageNotFoundError as err:  # the loader imports it: it must be installed
            raise RuntimeError(f"the model loader needs {name}, which is not installed") from err
        pins.append(f"{name}=={installed.split('+')[0]}")
    return pins


def model_signature(input_shape: tuple[int, ...], output_shape: tuple[int, ...]):
    """float32 tensors with a free batch axis, in and out; unnamed, so that the loader is
    handed one array (a named tensor arrives as a dict)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    float32 = np.dtype(np.float32)
    return ModelSignature(
        inputs=Schema([TensorSpec(float32, (-1, *input_shape))]),
        outputs=Schema([TensorSpec(float32, (-1, *output_shape))]),
    )


def ingested_split(
    task_name: str,
    split: str,
    *,
    split_seed: int = 0,
    train_fraction: float = 1.0,
):
    """One split (orca.data.arrow_io.SplitData) as the ingest stage writes it for these
    settings: from the state directory's stage cache when there, else ingested afresh into
    a temporary directory (the same rows; nothing is cached). The task must be registered
    in this process (a task file's: orca.data.task_file.load_task_file)."""
    from orca.data.arrow_io import SplitData, read_split
    from orca.data.tasks import get_task
    from orca.stages import ingest as ingest_stage
    from tasks.caching import stage_dir

    if split not in ingest_stage.SPLITS:
        raise UserError(f"unknown split {split!r}; valid splits: {', '.join(ingest_stage.SPLITS)}")
    parameters = {  # exactly tasks.stages.ingest's parameters, so its cache key
        "task_name": task_name,
        "seed": split_seed,
        "data_version": get_task(task_name).data_version,
        "train_fraction": train_fraction,
    }
    cached = stage_dir("ingest", parameters) / f"{split}.arrow"
    if cached.is_file():
        return read_split(cached)
    with tempfile.TemporaryDirectory(prefix="orca-ingest-") as tmp:
        reference = ingest_stage.ingest(task_name, Path(tmp) / "splits", split_seed, train_fraction)
        data = read_split(reference["splits"][split]["path"])
        return SplitData(np.array(data.x), np.array(data.y), data.metadata, data.context)


@task(name="register-model", **NO_CACHE)
def register_model(run_id: str, config: PipelineConfig, model_ref: dict[str, Any]) -> str:
    """Log the fine-tuned model to the run as a servable pyfunc model and register it;
    reuse a version with the same weights and package format. Returns the version."""
    from orca.data.task_file import load_task_file

    if config.task_file is not None:  # a user's task, maybe not yet known to this process
        load_task_file(config.task_file, allow_outside=config.allow_outside)
    logger = run_logger()
    client = MlflowClient()
    name = registered_model_name(config.task)
    existing = version_with_fingerprint(client, name, model_ref["fingerprint"])
    if existing is not None:
        client.set_tag(run_id, "registered_model", f"{name}/{existing}")
        logger.info("model already registered as %s version %s", name, existing)
        return existing
    info = _log_pyfunc(run_id, config, model_ref, name)
    registered = str(info.registered_model_version)
    client.set_model_version_tag(name, registered, FINGERPRINT_TAG, model_ref["fingerprint"])
    client.set_model_version_tag(name, registered, FORMAT_TAG, info.metadata["format"])
    client.set_tag(run_id, "registered_model", f"{name}/{registered}")
    logger.info("registered %s version %s (%s)", name, registered, info.model_uri)
    return registered


def _log_pyfunc(run_id: str, config: PipelineConfig, model_ref: dict[str, Any], name: str):
    import orca
    from orca.data.tasks import get_task
    from orca.serving import LOADER_MODULE, ServedTask, required_packages, write_package
    from orca.stages.evaluate import load_trained_model

    spec = get_task(config.task)
    model = load_trained_model(config.task, config.backbone, model_ref, config.seed)
    train = ingested_split(
        config.task, "train", split_seed=config.split_seed, train_fraction=config.train_fraction
    )
    example = np.ascontiguousarray(train.x[:EXAMPLE_ROWS], dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="orca-package-") as tmp:
        package = Path(tmp) / "orca-model"
        manifest = write_package(
            package, model, ServedTask.from_spec(spec), config.backbone, example
        )
        with mlflow.start_run(run_id=run_id):
            return mlflow.pyfunc.log_model(
                name="model",
                loader_module=LOADER_MODULE,
                data_path=str(package),
                code_paths=[str(Path(orca.__file__).parent)],
                signature=model_signature(manifest.input_shape, manifest.output_shape),
                input_example=example,
                pip_requirements=pinned_requirements(required_packages(manifest.body_kind)),
                metadata={
                    "task": spec.name,
                    "metric": spec.metric,
                    "lower_is_better": spec.lower_is_better,
                    "output": spec.output,
                    "format": manifest.format,
                },
                registered_model_name=name,
            )


def version_with_fingerprint(client: MlflowClient, name: str, fingerprint: str) -> str | None:
    """The version of model `name` with weights `fingerprint` in this package format, or
    None. A registry that cannot be searched raises: taking that for "not registered"
    would register the same weights again as a new version."""
    from orca.serving.package import FORMAT

    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    for found in versions:
        if found.tags.get(FINGERPRINT_TAG) == fingerprint and found.tags.get(FORMAT_TAG) == FORMAT:
            return str(found.version)
    return None


@dataclass(frozen=True)
class ResolvedModel:
    """A model `orca predict` can load: its URI, what it is called in messages, the run
    that logged it, its MLmodel metadata and the shapes its signature gives."""

    uri: str
    label: str
    run_id: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    input_shape: tuple[int, ...] | None = None  # one example's, from the signature

    @property
    def task(self) -> str | None:
        return self.metadata.get("task")


def resolve_model(target: str) -> ResolvedModel:
    """A task's champion (`models:/orca-TASK@champion`) or a model URI used as given,
    checked: UserError naming what is missing and the valid choices."""
    if target.startswith(URI_SCHEMES):
        return _model_info(target, target)
    client = MlflowClient()
    name = registered_model_name(target)
    versions = _versions(client, name)
    if not versions:
        from orca.data.tasks import task_names

        problem = (
            f"task {target!r} has no registered model {name} yet (`orca run {target}` "
            "registers one)"
            if target in task_names()
            else f"unknown task {target!r} (no registered model {name})"
        )
        raise UserError(
            f"{problem}; tasks with a registered model: {_listed(_model_tasks(client))}; "
            f"or give a model URI: {URI_FORMS}"
        )
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    except MlflowException as err:
        latest = max(versions, key=int)
        raise UserError(
            f"model {name} has no {CHAMPION_ALIAS!r} alias (`orca compare` crowns each task's "
            f"best model of a sweep); its versions: {_listed(sorted(versions, key=int))}: "
            f"give one as models:/{name}/{latest}"
        ) from err
    return _model_info(
        f"models:/{name}@{CHAMPION_ALIAS}", f"{name}/{champion.version} ({CHAMPION_ALIAS})"
    )


def model_split(model: ResolvedModel, split: str):
    """The split `split` of the data the model was trained on (the task, validation seed and
    train fraction of the run that logged it), from the state directory's stage cache or
    ingested afresh."""
    from orca.data.task_file import load_task_file

    if model.run_id is None:
        raise UserError(f"model {model.uri} was logged by no run: give its inputs as INPUT.npz")
    try:
        run = MlflowClient().get_run(model.run_id)
    except MlflowException as err:
        raise UserError(
            f"the run {model.run_id} that logged model {model.uri} is gone: give its inputs "
            "as INPUT.npz"
        ) from err
    tags, params = run.data.tags, run.data.params
    task_name = model.task or tags.get("orca.task")
    if task_name is None:
        raise UserError(f"model {model.uri} names no orca task: give its inputs as INPUT.npz")
    if tags.get("orca.task_file"):  # a user's task: registered from its file, as compare does
        load_task_file(tags["orca.task_file"], allow_outside=True)
    return ingested_split(
        task_name,
        split,
        split_seed=int(params.get("split_seed", 0)),
        train_fraction=float(params.get("train_fraction", 1.0)),
    )


def _model_info(uri: str, label: str) -> ResolvedModel:
    try:
        info = mlflow.models.get_model_info(uri)
    except (MlflowException, OSError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(
            f"model {uri!r} cannot be found ({message}); expected {URI_FORMS}; registered "
            f"models: {_listed(_model_names(MlflowClient()))}"
        ) from err
    shape = None
    inputs = info.signature.inputs if info.signature is not None else None
    if inputs is not None and inputs.is_tensor_spec() and len(inputs.inputs) == 1:
        shape = tuple(int(n) for n in inputs.inputs[0].shape[1:])
    return ResolvedModel(uri, label, info.run_id, dict(info.metadata or {}), shape)


def _versions(client: MlflowClient, name: str) -> list[str]:
    try:
        return [str(v.version) for v in client.search_model_versions(f"name='{name}'")]
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return []
        raise


def _model_names(client: MlflowClient) -> list[str]:
    return sorted(model.name for model in client.search_registered_models(max_results=1000))


def _model_tasks(client: MlflowClient) -> list[str]:
    return [
        name.removeprefix(MODEL_NAME_PREFIX)
        for name in _model_names(client)
        if name.startswith(MODEL_NAME_PREFIX)
    ]


def _listed(names: list[str]) -> str:
    return ", ".join(names) if names else "none yet"
