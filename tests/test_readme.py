"""The README's pictures: the pipeline diagram is the generated one, and every image it
shows is a file committed in this repository (so a fresh clone renders it)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from orca.reporting.diagram import pipeline_mermaid

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DIAGRAM = re.compile(
    r"<!-- pipeline-diagram:start -->\n```mermaid\n(?P<body>.*?)```\n<!-- pipeline-diagram:end -->",
    re.DOTALL,
)
IMAGE = re.compile(r"!\[[^\]]*\]\((?P<target>[^)\s]+)\)")


def test_the_readme_diagram_is_the_generated_one():
    match = DIAGRAM.search(README.read_text())
    assert match, "README.md has no pipeline-diagram block"
    assert match["body"] == pipeline_mermaid(), (
        "the README's diagram is stale: paste `python -m orca.reporting.diagram` between "
        "its pipeline-diagram markers"
    )


def test_the_diagram_draws_every_stage_input_as_an_arrow():
    from orca.stages.order import STAGE_INPUTS

    text = pipeline_mermaid()
    for stage, inputs in STAGE_INPUTS.items():
        assert f'    {stage}["<b>{stage}</b>' in text
        for source in inputs:
            assert f"    {source} --> {stage}\n" in text


def test_every_readme_image_is_a_committed_png():
    targets = [m["target"] for m in IMAGE.finditer(README.read_text())]
    assert len(targets) >= 5, targets  # the profile and four screenshots at least
    tracked = subprocess.run(
        ["git", "ls-files", "--", *targets], cwd=ROOT, capture_output=True, text=True
    )
    assert tracked.returncode == 0, tracked.stderr
    tracked_files = set(tracked.stdout.split())
    for target in targets:
        path = ROOT / target
        assert target in tracked_files, f"{target} is not committed"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", target
