"""Cached stage outputs are checked by content: a missing, truncated or altered file makes
the stage recompute instead of coming back Cached (orca/manifest.py, tasks/caching.py)."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import cached_stage_flow

from orca.atomic import atomic_directory
from orca.manifest import MANIFEST_NAME, manifest_problem
from tasks.caching import stage_dir


def _written(tmp_path: Path) -> Path:
    with atomic_directory(tmp_path / "stage", manifest=True) as out:
        (out / "model.safetensors").write_bytes(b"weights" * 100)
        (out / "splits").mkdir()
        (out / "splits" / "train.arrow").write_bytes(b"rows" * 50)
    return tmp_path / "stage"


def test_an_untouched_directory_matches_its_manifest(tmp_path):
    directory = _written(tmp_path)
    assert (directory / MANIFEST_NAME).is_file()
    assert manifest_problem(directory) is None


def test_a_truncated_file_is_named(tmp_path):
    directory = _written(tmp_path)
    model = directory / "model.safetensors"
    model.write_bytes(model.read_bytes()[:100])
    assert manifest_problem(directory) == (f"{model} has 100 bytes, 700 were written (truncated?)")


def test_a_file_altered_in_place_is_named_even_at_the_same_size(tmp_path):
    directory = _written(tmp_path)
    split = directory / "splits" / "train.arrow"
    before = split.stat().st_mtime_ns
    split.write_bytes(b"ROWS" * 50)
    os.utime(split, ns=(before + 10**9, before + 10**9))
    assert manifest_problem(directory) == f"{split} was changed after it was written " + (
        "(its SHA-256 differs)"
    )


def test_a_rewritten_file_with_the_same_content_is_accepted(tmp_path):
    directory = _written(tmp_path)
    split = directory / "splits" / "train.arrow"
    data = split.read_bytes()
    split.write_bytes(data)
    os.utime(split, ns=(1, 1))  # another modification time, the same bytes
    assert manifest_problem(directory) is None


def test_a_missing_file_or_manifest_is_named(tmp_path):
    directory = _written(tmp_path)
    (directory / "splits" / "train.arrow").unlink()
    assert manifest_problem(directory).endswith("train.arrow is missing")
    (directory / MANIFEST_NAME).unlink()
    assert "was not written whole by orca" in manifest_problem(directory)


def test_a_damaged_cached_stage_is_recomputed_not_cached(prefect_harness):
    run, calls = cached_stage_flow("manifest-test")
    assert run(21) == ("Completed", {"double": 42})
    assert run(21)[0] == "Cached" and calls == [21]
    output = stage_dir("manifest-test", {"value": 21}) / "double.json"
    output.write_text("")  # truncated after the stage finished
    assert run(21) == ("Completed", {"double": 42})
    assert calls == [21, 21]
    assert output.read_text() == "42"  # written again, whole
    assert run(21)[0] == "Cached"
