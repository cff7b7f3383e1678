"""Tags of the stage tasks that use a GPU, for a Prefect tag concurrency limit.

`prefect concurrency-limit create gpu N` caps the GPU stages running at once at N across
the whole Prefect server: a tag limit is global (every worker, pool and host counts against
it), not per host. Per-host and per-pool limits are a worker's `--limit` and the work
pool's concurrency limit (deployments/README.md).

The tag goes on the GPU stages (proxy, align, refine, evaluate) only where they will use a
GPU: CUDA is available, or ORCA_GPU_TAG=1 says so (e.g. in a work pool's job environment).
On a CPU-only machine they hold no GPU, and a tag is not free: before each tagged task run
Prefect asks the server for a concurrency slot, a round trip measured at about 0.4 s per
task on the local server, 1.6 s per pipeline run.
"""

from __future__ import annotations

import os

GPU_TAG = "gpu"
GPU_TAG_ENV_VAR = "ORCA_GPU_TAG"


def gpu_tags() -> list[str]:
    """[GPU_TAG] when the stages will run on a GPU (or $ORCA_GPU_TAG is 1), else []."""
    forced = os.environ.get(GPU_TAG_ENV_VAR)
    if forced is not None:
        if forced not in ("0", "1"):
            raise ValueError(f"${GPU_TAG_ENV_VAR} must be 0 or 1; got {forced!r}")
        return [GPU_TAG] if forced == "1" else []
    import torch

    return [GPU_TAG] if torch.cuda.is_available() else []
