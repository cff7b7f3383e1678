"""Classical baselines: k-nearest neighbours, linear models and extra-trees on the flattened
inputs, with their hyperparameters chosen on the validation split.

They run on the same ingest splits as the neural methods and are scored with the same
metric, so they sit in the same comparison. Importing this package registers the models;
it imports neither numpy nor scikit-learn (the command line imports it to check names).

  registry.py   CLASSICAL_MODELS, hyperparameter_grid(), create_classical()
  outputs.py    task arrays <-> estimator arrays, per output kind
  selection.py  select() on validation, score_test() once on test
  knn.py, linear.py, forest.py   the models
"""

from orca.classical import forest, knn, linear  # noqa: F401  (each registers its model)
from orca.classical.registry import CLASSICAL_MODELS, create_classical, hyperparameter_grid

__all__ = ["CLASSICAL_MODELS", "create_classical", "hyperparameter_grid"]
