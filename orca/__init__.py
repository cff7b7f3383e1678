"""orca: cross-modal fine-tuning (ORCA, Shen et al. 2023), the framework-free library.

Nothing in this package imports Prefect or MLflow; `tasks/` and `flows/` wrap it.
"""

__version__ = "0.1.0"
