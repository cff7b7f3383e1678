"""The ORCA model: embedder -> pretrained body -> predictor.

Importing the package registers every body kind (text_body, vision_body: BODIES and
BODY_LOADERS) and every embedder (embedders, vision_embedder: EMBEDDERS). Python runs this
file before any orca.model submodule, so a registry is complete whichever module is used.
"""

from orca.model import text_body, vision_body, vision_embedder  # noqa: F401  (registration)
from orca.model.orca_model import OrcaModel, create_model

__all__ = ["OrcaModel", "create_model"]
