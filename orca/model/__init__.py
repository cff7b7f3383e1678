"""The ORCA model: embedder -> pretrained body -> predictor."""

from orca.model.orca_model import OrcaModel, create_model

__all__ = ["OrcaModel", "create_model"]
