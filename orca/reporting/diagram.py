"""The pipeline's diagram in Mermaid, generated from the stage order (orca.stages.order).

The README embeds the output between its `pipeline-diagram` markers, and a test checks the
two agree, so the picture cannot drift from the stages the code runs. Print it with
`python -m orca.reporting.diagram`.
"""

from __future__ import annotations

from orca.stages.order import FAMILY_STAGES, STAGE_INPUTS, STAGES

# What each stage makes, as the diagram labels it.
STAGE_OUTPUTS = {
    "ingest": "task data → Arrow splits",
    "proxy": "the body's features of a labelled proxy set",
    "align": "embedder trained to lower OTDD to the proxy",
    "refine": "embedder + body + predictor fine-tuned",
    "evaluate": "test metric, read once",
    "classical": "k-NN / linear / forest, tuned on validation",
}
# Where each method family's run ends up, after its last stage.
RUN_OUTPUTS = (
    ("mlflow", "MLflow run: params, curves, test metric"),
    ("compare", "compare flow: report, performance profile, champion model"),
)


def _node(name: str, label: str) -> str:
    return f'    {name}["<b>{name}</b><br/>{label}"]'


def pipeline_mermaid() -> str:
    """A Mermaid flowchart: every stage, its inputs as arrows, and where results go."""
    missing = set(STAGES) - set(STAGE_OUTPUTS)
    if missing:
        raise ValueError(f"STAGE_OUTPUTS has no label for stage(s) {sorted(missing)}")
    lines = ["flowchart LR"]
    lines += [_node(stage, STAGE_OUTPUTS[stage]) for stage in STAGES]
    lines += [_node(name, label) for name, label in RUN_OUTPUTS]
    lines += [f"    {source} --> {stage}" for stage in STAGES for source in STAGE_INPUTS[stage]]
    finals = sorted({stages[-1] for stages in FAMILY_STAGES.values()})
    lines += [f"    {final} --> mlflow" for final in finals]
    lines.append("    mlflow --> compare")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(pipeline_mermaid(), end="")
