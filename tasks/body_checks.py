"""Checks on the bodies a flow is about to use, as tasks."""

from __future__ import annotations

from prefect import task

from orca.model.bodies import BodyWeightsError, MissingWeightsError, load_body


@task(name="check-vision-weights", persist_result=False, cache_policy=None)
def weights_problem(backbone: str) -> str | None:
    """Why `backbone` cannot run pretrained here, or None when its weights load: none to be
    found, or a weights file that is damaged or does not fit the architecture."""
    try:
        load_body(backbone)
    except (MissingWeightsError, FileNotFoundError) as error:
        return f"no pretrained weights for {backbone} on this machine ({error})"
    except (BodyWeightsError, OSError) as error:
        return f"the pretrained weights for {backbone} are corrupt or do not fit it ({error})"
    return None
