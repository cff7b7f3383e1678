"""Training loops: stage 2 (embedder alignment) and stage 3 (fine-tuning)."""
