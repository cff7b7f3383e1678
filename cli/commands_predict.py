"""`orca predict`: a registered model's predictions for inputs in a file or an ingested split.

    orca predict TASK_OR_MODEL_URI [INPUT.npz] [--split NAME] [--out PREDS.npz] [--json]

TASK is the task's champion, `models:/orca-TASK@champion` (crowned by `orca compare`); a
`models:/NAME/VERSION`, `models:/NAME@ALIAS` or `runs:/RUN_ID/model` URI is used as given.
The inputs are INPUT.npz (`x`, and optionally `y` and `context.<name>` arrays:
orca/serving/files.py) or, with `--split`, a split of the data the model was trained on,
read from the state directory (or ingested afresh). With targets (`y`, or any split) the
task's test metric is computed by orca's own metric code. A metric that needs per-example
context (orca.metrics_context: PSICOV's psicov_mae8, Cosmic's cosmic_one_minus_auroc,
FSD50K's one_minus_map_per_clip) takes it from the split, or from INPUT.npz's
`context.<name>` arrays; targets without the context it needs are refused (exit 2, naming
the missing fields) before the model loads. The model is loaded as MLflow's pyfunc, as
`mlflow models serve` loads it. With --json: one object with `model`, `model_uri`, `task`,
`input`, `rows`, `output_shape`, `out`, `metric`, `value` and `lower_is_better`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.command import Args, Command
from cli.options import Json

if TYPE_CHECKING:  # numpy is imported by the command's work, so that `orca --help` is fast
    import numpy as np

SPLITS = ("train", "validation", "test")  # orca.stages.ingest.SPLITS, without importing it


def define_predict(
    model: Annotated[
        str,
        typer.Argument(
            metavar="TASK_OR_MODEL_URI",
            help="a task (its champion model) or a models:/... or runs:/... URI",
            show_default=False,
        ),
    ],
    input_file: Annotated[
        str | None,
        typer.Argument(
            metavar="INPUT.npz",
            help=(
                "an .npz file with x (N, *input_shape), optionally y (the targets) and "
                "context.NAME arrays, one row per example, for a metric that needs "
                "per-example context (psicov_mae8: context.protein, context.row_start, "
                "context.col_start, context.length; cosmic_one_minus_auroc: "
                "context.ignore; one_minus_map_per_clip: context.clip)"
            ),
            show_default=False,
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            "--split",
            help=f"predict a split of the model's own data instead: {', '.join(SPLITS)}",
        ),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            metavar="PREDS.npz",
            help="write predictions (and labels, for classification) to this .npz file",
        ),
    ] = None,
    json: Json = False,
) -> Args:
    """Predictions of a registered model, and the task's metric when targets are given.

    A metric that needs per-example context (PSICOV, Cosmic and FSD50K's paper metrics)
    reads it from the split, or from INPUT.npz's context.NAME arrays.
    """
    return Args(**locals())


@dataclass(frozen=True)
class Request:
    """A checked `orca predict`: the model, the inputs and where they came from."""

    model: Any  # tasks.model_registry.ResolvedModel
    x: np.ndarray
    y: np.ndarray | None
    source: str  # the input file, or "the test split of gunpoint"
    context: dict[str, np.ndarray]  # per-example context for the metric (field -> rows)


def prepare(args: Args) -> Request:
    """Everything checked before the model loads; UserError / ValueError: exit 2."""
    from orca.serving.files import check_inputs, check_targets, read_context, read_inputs
    from tasks.model_registry import model_split, resolve_model

    if (args.input_file is None) == (args.split is None):
        raise ValueError(
            "give the inputs as INPUT.npz or as --split NAME (one of: "
            f"{', '.join(SPLITS)}), not {'both' if args.split else 'neither'}"
        )
    if args.split is not None and args.split not in SPLITS:
        raise ValueError(
            f"--split {args.split!r}: unknown split; valid splits: {', '.join(SPLITS)}"
        )
    if args.out is not None and Path(args.out).is_dir():
        raise ValueError(f"--out {args.out}: a directory; expected the path of an .npz file")
    model = resolve_model(args.model)
    if args.input_file is not None:
        x, y = read_inputs(args.input_file, model.input_shape)
        request = Request(model, x, y, args.input_file, read_context(args.input_file, len(x)))
    else:
        data = model_split(model, args.split)
        source = f"the {args.split} split of {model.task}"
        x = check_inputs(source, data.x, model.input_shape)
        request = Request(model, x, check_targets(source, data.y, len(x)), source, data.context)
    check_metric_context(request)
    return request


def check_metric_context(request: Request) -> None:
    """UserError if the inputs have targets (so the metric is computed) and the model's
    metric needs per-example context that they lack."""
    from orca.errors import UserError
    from orca.metrics import METRICS

    metric = request.model.metadata.get("metric")
    if request.y is None or metric is None or metric not in METRICS:
        return  # scored as before (an unknown metric is reported when scoring)
    missing = [name for name in METRICS.get(metric).context if name not in request.context]
    if missing:
        keys = ", ".join(f"context.{name}" for name in missing)
        raise UserError(
            f"{request.source}: the task's metric {metric!r} needs per-example context "
            f"{missing}, not given; add the arrays {keys} (one row per row of x) to the "
            "input file, or leave out y to only predict"
        )


def run(args: Args, request: Request) -> dict[str, Any]:
    import os

    import mlflow.pyfunc
    import numpy as np

    from orca.serving.files import write_predictions

    # MLflow's bar for copying the model's files (a hundred small ones: the orca code path)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    loaded = mlflow.pyfunc.load_model(request.model.uri)
    predictions = np.asarray(loaded.predict(request.x), dtype=np.float32)
    metadata = request.model.metadata
    metric, value = metadata.get("metric"), None
    if request.y is not None and metric is not None:
        value = score(metric, predictions, request.y, request.source, request.context)
    if args.out is not None:
        arrays = {"predictions": predictions}
        if metadata.get("output") == "classification":
            arrays["labels"] = predictions.argmax(axis=1).astype(np.int64)
        write_predictions(args.out, arrays)
    result = {
        "model": request.model.label,
        "model_uri": request.model.uri,
        "task": request.model.task,
        "input": request.source,
        "rows": len(predictions),
        "output_shape": list(predictions.shape[1:]),
        "out": args.out,
        "metric": metric,
        "value": value,  # None without targets
        "lower_is_better": metadata.get("lower_is_better"),
    }
    print(json.dumps(result) if args.json else summary(result))
    return result


def score(
    metric: str,
    predictions: np.ndarray,
    y: np.ndarray,
    source: str,
    context: dict[str, np.ndarray] | None = None,
) -> float:
    """The task's metric by orca's own code (with the inputs' per-example context, for a
    metric that needs it); targets that do not fit it are a user error."""
    from orca.errors import UserError
    from orca.metrics import METRICS

    try:
        return float(METRICS.get(metric).score(predictions, y, context))
    except ValueError as err:
        raise UserError(f"{source}: y does not fit the task's metric: {err}") from err


def summary(result: dict[str, Any]) -> str:
    shape = tuple(result["output_shape"])
    lines = [
        f"{result['model']}: {result['rows']} predictions of shape {shape} for {result['input']}"
    ]
    if result["value"] is not None:
        direction = "lower is better" if result["lower_is_better"] else "higher is better"
        lines.append(f"{result['metric']} = {result['value']:.4f} ({direction})")
    lines.append(f"predictions: {result['out']}" if result["out"] else "(--out FILE saves them)")
    return "\n".join(lines)


COMMANDS = {"predict": Command(define_predict, prepare, run, error_prefix="orca predict")}
