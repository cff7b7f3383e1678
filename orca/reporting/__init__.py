"""Cross-benchmark comparison: per-task summaries, win counts and performance profiles."""
