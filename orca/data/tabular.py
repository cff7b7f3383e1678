"""Tabular rows as the tabular embedder's input: one token per feature.

A row of F = F_num + F_cat features becomes a (C, F) array, C = max(1, widest category
count). A numeric feature is its (standardised) value in channel 0 and zeros elsewhere; a
categorical feature with k categories is one-hot over channels 0..k-1 and zero-padded to C.
The embedder's stride-1 conv then maps each column to one token.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def encode_tabular(
    numeric: np.ndarray,
    categorical: np.ndarray,
    cardinalities: Sequence[int],
) -> np.ndarray:
    """(N, F_num) floats and (N, F_cat) integer codes -> (N, C, F_num + F_cat) float32.

    Raises ValueError naming the column and value for NaN numerics, codes outside
    [0, cardinality), or shapes that disagree.
    """
    numeric = np.asarray(numeric, dtype=np.float32)
    categorical = np.asarray(categorical)
    if numeric.ndim != 2 or categorical.ndim != 2 or len(numeric) != len(categorical):
        raise ValueError(
            f"expected numeric (N, F_num) and categorical (N, F_cat) with the same N; got "
            f"{numeric.shape} and {categorical.shape}"
        )
    if categorical.shape[1] != len(cardinalities):
        raise ValueError(
            f"{categorical.shape[1]} categorical columns but {len(cardinalities)} cardinalities"
        )
    bad = np.argwhere(np.isnan(numeric))
    if len(bad):
        row, column = bad[0]
        raise ValueError(f"numeric column {column} is NaN at row {row}; impute before encoding")
    for column, count in enumerate(cardinalities):
        codes = categorical[:, column]
        outside = (codes < 0) | (codes >= count)
        if outside.any():
            raise ValueError(
                f"categorical column {column}: code {codes[outside][0]} outside [0, {count})"
            )
    n, f_num = numeric.shape
    channels = max([1, *cardinalities])
    encoded = np.zeros((n, channels, f_num + len(cardinalities)), dtype=np.float32)
    encoded[:, 0, :f_num] = numeric
    for column in range(len(cardinalities)):
        encoded[np.arange(n), categorical[:, column].astype(np.int64), f_num + column] = 1.0
    return encoded
