"""One pipeline run's MLflow record and the summary the pipeline flow returns.

`tracked_run(config, parent_run_id)` opens the run's MLflow run (nested under a sweep's
when `parent_run_id` is given) and closes it as FINISHED, FAILED or, when the run was
stopped (orca.stopping), KILLED, with the error. Its `log_stage` is the stage calls'
`on_stage` (tasks/stage_runs.py): each stage's metrics go to MLflow as it ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from prefect import runtime

from orca import stopping
from orca.config.pipeline import PipelineConfig
from tasks import tracking


@dataclass
class TrackedRun:
    config: PipelineConfig
    run_id: str  # MLflow's
    flow_run_id: str  # Prefect's

    def log_stage(self, name: str, state_name: str, reference: dict[str, Any]) -> None:
        tracking.log_stage(self.run_id, name, state_name, reference)

    def orca_summary(
        self,
        embedder: dict[str, Any],
        model: dict[str, Any],
        result: dict[str, Any],
        states: dict[str, str],
        register_model: bool,
    ) -> dict[str, Any]:
        """The summary of an ORCA-family run (`states`: each stage's final state); its
        model registered if `register_model`."""
        version = (
            tracking.register_model(self.run_id, self.config, model) if register_model else None
        )
        name = tracking.registered_model_name(self.config.task)
        distances = embedder["distances"]
        return self._summary(
            result,
            states,
            align_distance={"initial": distances[0], "final": distances[-1]},
            best_epoch=model["best_epoch"],
            model_path=model["path"],
            registered_model=f"{name}/{version}" if version else None,
        )

    def classical_summary(self, result: dict[str, Any], states: dict[str, str]) -> dict[str, Any]:
        """The summary of a classical run: no embedder, no epochs, no model to register;
        its "model" is the selection record, which the sweep reuses."""
        return self._summary(
            result,
            states,
            align_distance=None,
            best_epoch=None,
            model_path=result["path"],
            hyperparameters=result["hyperparameters"],
            validation_value=result["validation_value"],
            registered_model=None,
        )

    def _summary(
        self, result: dict[str, Any], states: dict[str, str], **fields: Any
    ) -> dict[str, Any]:
        config = self.config
        return {
            "task": config.task,
            "method": config.method,
            "backbone": config.backbone,
            "seed": config.seed,
            "metric": result["metric"],
            "value": result["value"],
            "lower_is_better": result["lower_is_better"],
            **fields,
            "states": dict(states),
            "mlflow_run_id": self.run_id,
            "flow_run_id": self.flow_run_id,
        }


@contextmanager
def tracked_run(config: PipelineConfig, parent_run_id: str | None) -> Iterator[TrackedRun]:
    """The MLflow run of this flow run's pipeline, closed with its outcome."""
    flow_run_id = str(runtime.flow_run.id)
    run = TrackedRun(config, tracking.start_run(config, flow_run_id, parent_run_id), flow_run_id)
    try:
        yield run
    except BaseException as error:
        status = "KILLED" if stopping.is_stop(error) else "FAILED"
        tracking.finish_run(run.run_id, status, error=f"{type(error).__name__}: {error}")
        raise
    tracking.finish_run(run.run_id, "FINISHED")
