"""Prefect tasks: thin wrappers over orca's stages that add caching, storage and tracking."""
