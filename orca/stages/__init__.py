"""The five pipeline stages as plain functions over files.

Each stage reads its inputs from files named in small JSON-able references, writes its
outputs atomically into an output directory it is given, and returns a reference to them:
paths plus content fingerprints, never tensors. `tasks/` wraps each one as a Prefect task.
"""
