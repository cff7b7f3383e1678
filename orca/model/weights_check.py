"""Whether a backbone's pretrained weights can be had here, answered without loading them.

`missing_weights(backbone)` is for checks before any work (`orca recommend` names such a
body before it starts): None when the weights are on this machine (a packaged or local model
directory, a NAME@FILE checkpoint, the Hugging Face cache) or the hub answers; otherwise one
line saying what was looked for and what to pass instead. It never downloads: the hub is
asked once per process whether it can be reached (HF_ENDPOINT, 5 s, no retries), and not at
all with HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from orca.model.bodies import BackboneRef, hub_offline, parse_backbone
from orca.registry import Registry

HUB_TIMEOUT_S = 5.0
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")

# body kind -> check(ref) -> the problem, or None
WEIGHTS_CHECKS: Registry[Callable[[BackboneRef], str | None]] = Registry("body kind")


def missing_weights(backbone: str) -> str | None:
    """Why `backbone` has no pretrained weights here, or None (see the module docstring).
    An unknown backbone raises what parse_backbone raises."""
    ref = parse_backbone(backbone)
    return WEIGHTS_CHECKS.get(ref.kind)(ref)


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


@lru_cache(maxsize=4)
def _hub_answers(endpoint: str) -> str | None:
    """None when the hub answers an HTTP request; otherwise why not."""
    try:
        urllib.request.urlopen(f"{endpoint}/api/models?limit=1", timeout=HUB_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return None  # it answered, if not with 200
    except (OSError, ValueError) as error:
        return str(getattr(error, "reason", error))
    return None


def _hub_problem(repo_id: str, files: tuple[str, ...]) -> str | None:
    """None when one of `files` of `repo_id` is in the Hugging Face cache or the hub can
    be reached; otherwise the reason."""
    from huggingface_hub import try_to_load_from_cache

    for filename in files:
        if isinstance(try_to_load_from_cache(repo_id, filename), str):
            return None
    from huggingface_hub import constants

    where = f"not in the Hugging Face cache ({constants.HF_HUB_CACHE})"
    if hub_offline():
        return f"{where}, and HF_HUB_OFFLINE={os.environ['HF_HUB_OFFLINE']}"
    unreachable = _hub_answers(hub_endpoint())
    if unreachable is None:
        return None
    return f"{where}, and the hub ({hub_endpoint()}) cannot be reached: {unreachable}"


@WEIGHTS_CHECKS.register("text")
def _text_weights(ref: BackboneRef) -> str | None:
    try:
        source = ref.spec.locate() if ref.spec is not None else str(Path(ref.text).expanduser())
    except FileNotFoundError as error:
        return str(error)
    directory = Path(source).expanduser()
    if directory.is_dir():
        if any((directory / name).is_file() for name in WEIGHT_FILES):
            return None
        return f"{directory} has no weights file (expected one of {', '.join(WEIGHT_FILES)})"
    problem = _hub_problem(source, WEIGHT_FILES)
    if problem is None:
        return None
    return f"{source!r} is {problem}; offline, pass a local model directory as the backbone"


@WEIGHTS_CHECKS.register("vision")
def _vision_weights(ref: BackboneRef) -> str | None:
    if ref.weights_file is not None:
        return None  # parse_backbone checked that the file exists
    from timm.models import get_pretrained_cfg

    arch = ref.spec.locate()
    config = get_pretrained_cfg(arch)
    repo_id = getattr(config, "hf_hub_id", None) if config is not None else None
    if not repo_id:
        return f"timm knows no hub weights for {arch}; pass {ref.spec.name}@/path/to/weights"
    problem = _hub_problem(repo_id, WEIGHT_FILES)
    if problem is None:
        return None
    return (
        f"{arch} weights ({repo_id}) are {problem}; offline, pass "
        f"{ref.spec.name}@/path/to/weights.safetensors"
    )
