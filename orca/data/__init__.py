"""Task data: Arrow storage of splits, the task registry, and the loaders behind it."""
