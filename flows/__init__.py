"""Prefect flows: the pipeline wired from tasks, and the `orca` command line."""
