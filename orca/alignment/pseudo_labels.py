"""Pseudo-labels for tasks without class labels (regression, dense, multi-label outputs).

As in the paper, targets are flattened and clustered with k-means (k=10 by default);
mini-batch k-means takes over when there are many examples.
"""

from __future__ import annotations

import numpy as np

MINIBATCH_THRESHOLD = 10_000


def kmeans_pseudo_labels(
    targets: np.ndarray, k: int = 10, seed: int = 0, minibatch_threshold: int = MINIBATCH_THRESHOLD
) -> np.ndarray:
    """Cluster ids (N,) int64 of the flattened targets (N, ...); k is capped at N."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if k < 1:
        raise ValueError(f"k={k} must be at least 1")
    flat = np.asarray(targets, dtype=np.float64).reshape(len(targets), -1)  # (N, prod(...))
    if not np.isfinite(flat).all():
        raise ValueError("targets contain NaN or inf; cannot compute pseudo-labels")
    clusters = min(k, len(flat))
    if len(flat) > minibatch_threshold:
        model = MiniBatchKMeans(n_clusters=clusters, random_state=seed, n_init=3)
    else:
        model = KMeans(n_clusters=clusters, random_state=seed, n_init=10)
    return model.fit_predict(flat).astype(np.int64)
