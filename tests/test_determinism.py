"""Determinism: the same run twice with caching disabled gives identical results on CPU.

`benchmarks/soak_demo.py` checks the same on the whole demo suite (each round with the
cache refresh on); this test does it for one tiny run per method family, in seconds.
"""

from __future__ import annotations

import pytest
import torch

from orca.config.pipeline import PipelineConfig
from orca.fingerprint import fingerprint_file

TINY = {
    "proxy": {"max_examples": 60, "max_tokens": 16},
    "align": {"epochs": 2, "samples_per_class": 8},
    "refine": {"epochs": 2, "batch_size": 16, "lr": 5e-4},
}


@pytest.mark.parametrize("method", ["orca", "fpt"])
def test_a_run_recomputed_without_the_cache_is_identical(prefect_harness, tiny_bert_dir, method):
    from prefect.settings import PREFECT_TASKS_REFRESH_CACHE, temporary_settings

    from flows.pipeline import pipeline

    config = PipelineConfig.for_task(
        "gunpoint", backbone=str(tiny_bert_dir), method=method, overrides=TINY
    )
    outcomes = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(2):
            with temporary_settings(updates={PREFECT_TASKS_REFRESH_CACHE: True}):
                result = pipeline(config, register_model=False)
            assert set(result["states"].values()) == {"Completed"}  # nothing from the cache
            outcomes.append(
                (
                    result["value"],
                    result["align_distance"],
                    result["best_epoch"],
                    fingerprint_file(result["model_path"]),
                )
            )
    finally:
        torch.set_num_threads(threads)
    assert outcomes[0] == outcomes[1]


def test_the_same_weights_give_the_same_file_bytes_in_any_process(tmp_path):
    """safetensors orders several metadata keys differently in each process; orca's files
    carry one key, so equal weights have equal fingerprints (and cache keys downstream)."""
    import subprocess
    import sys

    script = (
        "import sys, torch\n"
        "from orca.checkpoint import save_state\n"
        "state = {f'layer{i}.weight': torch.full((3,), float(i)) for i in range(8)}\n"
        "save_state(sys.argv[1], state, {'task': 'gunpoint', 'backbone': 'b', 'best_epoch': '1'})\n"
    )
    paths = [tmp_path / f"copy{i}.safetensors" for i in range(4)]
    for path in paths:
        subprocess.run([sys.executable, "-c", script, str(path)], check=True)
    assert len({fingerprint_file(path) for path in paths}) == 1
