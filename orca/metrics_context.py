"""Metrics that need per-example context, and that context: the paper's PSICOV, Cosmic and
FSD50K metrics (registered in orca.metrics.METRICS with the fields they need).

Some published metrics cannot be computed from a split's predictions and targets alone. The
loader knows what they need and keeps it with the split, one array per field, one row per
example (orca.data.tasks.RawTask.context: split name -> field -> array, carried by ingest
into the split files as context.<name> columns); `Metric.score(predictions, targets,
context)` checks the fields a metric names in `Metric.context` and passes them to its
`compute` as keyword arguments. The fields
(CONTEXT_FIELDS):

    protein    (N,) int   which protein of the split a PSICOV tile or crop comes from
    row_start  (N,) int   residue index of the tile's first row (negative in the padding)
    col_start  (N,) int   residue index of the tile's first column
    length     (N,) int   the protein's length in residues
    ignore     (N, ...)   Cosmic's ignore mask, 1 where a pixel is hidden, shaped as targets
    clip       (N,) int   which FSD50K clip a 1-s chunk was cut from

The metrics, checked line by line against the authors' code (ORCA's src/utils.py and
src/main.py, and NAS-Bench-360's):

  psicov_mae8     MAE8 as PDNET, NAS-Bench-360 and ORCA define it: each protein's map is
                  reassembled from its tiles (a pair covered by overlapping tiles takes the
                  mean of their predictions), predictions are floored at 0.01 and the two
                  triangles averaged; the score is the mean absolute error over residue pairs
                  (i, j) with j - i >= 24 whose true distance is <= 8 A, per protein, then the
                  mean over the proteins that have such pairs. A map that tiles do not cover
                  whole (random training crops) is scored on the pairs they cover.
                  Not reproduced, being artefacts rather than the metric: ORCA's code averages
                  the triangles twice (3/4 of the lower one, 1/4 of the upper) and, scoring
                  one protein per batch, takes every protein's length from the first protein
                  of psicov.lst.
  cosmic_one_minus_auroc
                  1 - AUROC of the thresholded prediction (logit > 0) against the cosmic-ray
                  mask, both set to 0 where the ignore mask is 1 (the authors multiply output
                  and target by 1 - ignore, so hidden pixels count as true negatives), pooled
                  over every pixel of the split. For 0/1 scores AUROC = (TPR + TNR) / 2, which
                  is computed directly. The authors average it over evaluation batches of 1000
                  images; orca scores the whole split at once, as for every metric.
  one_minus_map_per_clip
                  1 - mAP per clip: the logits of a clip's chunks are averaged, then average
                  precision is taken per label over clips and averaged over labels (FSD50K's
                  and the authors' protocol). A label column with a single class is skipped,
                  as in "one_minus_map"; in the full eval set every label has positives.

The per-tile / per-chunk variants ("mae8", "one_minus_auroc_pixelwise", "one_minus_map") stay
in orca.metrics, so numbers from before these metrics existed can still be reproduced.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from orca.metrics_checks import multilabel_targets, per_label_mean, same_shape, shape_error
from orca.registry import Registry

SEPARATION = 24  # PSICOV: shortest sequence separation of a long-range pair
CONTACT_DISTANCE = 8.0  # PSICOV: the largest true distance (Angstrom) that is scored
PREDICTION_FLOOR = 0.01  # PSICOV: predicted distances are floored here before averaging


# ---------------------------------------------------------------- the context fields
def _index(where: str, values: np.ndarray, rows: int) -> np.ndarray:
    if values.ndim != 1 or len(values) != rows:
        raise ValueError(f"{where}: expected {rows} integers (one per example), got {values.shape}")
    if values.dtype.kind not in "biu" and not np.array_equal(values, np.round(values)):
        raise ValueError(f"{where}: expected integers, got {values.dtype} values")
    return values.astype(np.int64)


def _mask(where: str, values: np.ndarray, rows: int) -> np.ndarray:
    if values.ndim < 2 or len(values) != rows:
        raise ValueError(f"{where}: expected a (N={rows}, ...) mask, got {values.shape}")
    if not ((values == 0) | (values == 1)).all():
        raise ValueError(f"{where}: mask values must be 0 or 1")
    return values.astype(np.uint8)


_KINDS: dict[str, Callable[[str, np.ndarray, int], np.ndarray]] = {
    "index": _index,
    "mask": _mask,
}


@dataclass(frozen=True)
class ContextField:
    """One kind of per-example context: its name, the kind of its values, what it holds."""

    name: str
    kind: str  # a key of _KINDS: "index" (N,) integers, "mask" (N, ...) of 0/1
    description: str

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"context field {self.name!r}: kind {self.kind!r} not in {_KINDS}")

    def check(self, where: str, values: np.ndarray, rows: int) -> np.ndarray:
        return _KINDS[self.kind](f"{where}: context {self.name!r}", np.asarray(values), rows)


CONTEXT_FIELDS: Registry[ContextField] = Registry("context field")
for _field in (
    ContextField("protein", "index", "which protein of the split a PSICOV tile comes from"),
    ContextField("row_start", "index", "residue index of a PSICOV tile's first row"),
    ContextField("col_start", "index", "residue index of a PSICOV tile's first column"),
    ContextField("length", "index", "length in residues of the tile's protein"),
    ContextField("ignore", "mask", "Cosmic's ignore mask: 1 where a pixel is not scored"),
    ContextField("clip", "index", "which FSD50K clip a 1-s chunk was cut from"),
):
    CONTEXT_FIELDS.register(_field.name, _field)


def check_context(where: str, context: Mapping[str, np.ndarray], rows: int) -> dict:
    """Validate one split's context arrays (known fields, one row per example, the field's
    kind of values); return them as int64 indices and uint8 masks."""
    checked = {}
    for name, values in context.items():
        CONTEXT_FIELDS.check(name, field=f"{where}: context")
        checked[name] = CONTEXT_FIELDS.get(name).check(where, values, rows)
    return checked


def select_context(
    metric: str, needed: tuple[str, ...], context: Mapping[str, np.ndarray], rows: int
) -> dict:
    """The `needed` arrays of a split's context, checked; ValueError naming any missing."""
    missing = [name for name in needed if name not in context]
    if missing:
        raise ValueError(
            f"metric {metric!r} needs the per-example context {missing}, which this split "
            f"does not carry (it carries {sorted(context) or 'none'}); the task's loader "
            "provides it (orca.metrics_context)"
        )
    return check_context(f"metric {metric!r}", {name: context[name] for name in needed}, rows)


def _given(name: str, **arrays: np.ndarray | None) -> dict[str, np.ndarray]:
    missing = [key for key, values in arrays.items() if values is None]
    if missing:
        raise ValueError(
            f"metric {name!r} needs the per-example context {missing} as keyword arguments; "
            "call Metric.score(predictions, targets, context) with the split's context"
        )
    return {key: np.asarray(values) for key, values in arrays.items()}


# ---------------------------------------------------------------- PSICOV
def _tile_maps(name: str, pred: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1, H, W) or (N, H, W) predictions and targets -> two (N, H, W) float arrays."""
    pred, y = same_shape(name, pred, y)
    if pred.ndim == 4 and pred.shape[1] == 1:
        pred, y = pred[:, 0], y[:, 0]
    if pred.ndim != 3:
        raise shape_error(name, pred, y, "distance maps (N, 1, H, W) or (N, H, W)")
    return pred, y


def _reassemble(name: str, protein: int, tiles: np.ndarray, pred, y, rows, cols, length):
    """One protein's (L, L) predicted and true maps from its tiles; NaN where none covers.
    Overlapping tiles' predictions are averaged; their targets must agree."""
    total, count = np.zeros((length, length)), np.zeros((length, length))
    low, high = np.full((length, length), np.inf), np.full((length, length), -np.inf)
    height, width = pred.shape[1:]
    for t in tiles:
        r, c = int(rows[t]), int(cols[t])
        a0, a1 = max(0, -r), min(height, length - r)  # the tile's rows inside the protein
        b0, b1 = max(0, -c), min(width, length - c)
        if a0 >= a1 or b0 >= b1:
            continue  # a tile wholly in the padding
        block = np.s_[r + a0 : r + a1, c + b0 : c + b1]
        total[block] += pred[t, a0:a1, b0:b1]
        count[block] += 1
        low[block] = np.minimum(low[block], y[t, a0:a1, b0:b1])
        high[block] = np.maximum(high[block], y[t, a0:a1, b0:b1])
    covered = count > 0
    if not np.allclose(low[covered], high[covered], rtol=0.0, atol=1e-4):
        raise ValueError(
            f"metric {name!r}: overlapping tiles of protein {protein} disagree on true "
            "distances, so the context does not describe this split's tiles"
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(covered, total / count, np.nan), np.where(covered, high, np.nan)


def long_range_mae8(pred_map: np.ndarray, true_map: np.ndarray) -> float:
    """One protein's MAE8 from its (L, L) maps (NaN = not covered); NaN if no pair counts."""
    floored = np.maximum(pred_map, PREDICTION_FLOOR)  # NaN stays NaN
    mirrored = floored.T
    symmetric = np.where(
        np.isnan(floored), mirrored, np.where(np.isnan(mirrored), floored, (floored + mirrored) / 2)
    )
    truth = np.where(np.isnan(true_map), true_map.T, true_map)
    upper = np.triu_indices(len(truth), k=SEPARATION)
    predicted, actual = symmetric[upper], truth[upper]
    with np.errstate(invalid="ignore"):
        scored = (actual <= CONTACT_DISTANCE) & ~np.isnan(predicted)
    if not scored.any():
        return float("nan")
    return float(np.mean(np.abs(predicted[scored] - actual[scored])))


def psicov_mae8(
    pred: np.ndarray,
    y: np.ndarray,
    *,
    protein: np.ndarray | None = None,
    row_start: np.ndarray | None = None,
    col_start: np.ndarray | None = None,
    length: np.ndarray | None = None,
) -> float:
    """MAE8 per protein on maps reassembled from tiles, averaged over proteins (see above)."""
    name = "psicov_mae8"
    ctx = _given(name, protein=protein, row_start=row_start, col_start=col_start, length=length)
    pred, y = _tile_maps(name, pred, y)
    scores = []
    for k in np.unique(ctx["protein"]):
        tiles = np.flatnonzero(ctx["protein"] == k)
        lengths = np.unique(ctx["length"][tiles])
        if len(lengths) != 1 or lengths[0] < 1:
            raise ValueError(f"metric {name!r}: protein {k}'s tiles give lengths {lengths}")
        maps = _reassemble(
            name, int(k), tiles, pred, y, ctx["row_start"], ctx["col_start"], int(lengths[0])
        )
        scores.append(long_range_mae8(*maps))
    scored = [s for s in scores if not np.isnan(s)]
    if not scored:
        raise ValueError(
            f"metric {name!r}: none of {len(scores)} proteins has a residue pair with "
            f"separation >= {SEPARATION} and true distance <= {CONTACT_DISTANCE:g} A"
        )
    return float(np.mean(scored))


# ---------------------------------------------------------------- Cosmic
def cosmic_one_minus_auroc(
    logits: np.ndarray, y: np.ndarray, *, ignore: np.ndarray | None = None
) -> float:
    """1 - AUROC of (logit > 0) against the masks, hidden pixels set to 0 in both."""
    name = "cosmic_one_minus_auroc"
    hidden = _given(name, ignore=ignore)["ignore"]
    logits, y = np.asarray(logits), np.asarray(y)  # no float64 copies: splits are large
    if logits.shape != y.shape or logits.ndim == 0 or len(y) == 0:
        raise shape_error(name, logits, y, "predictions and targets of one shape (N, ...)")
    if hidden.shape != y.shape:
        raise ValueError(
            f"metric {name!r}: the ignore mask has shape {hidden.shape}, the targets "
            f"{y.shape}; expected one mask value per target pixel"
        )
    if not ((y == 0) | (y == 1)).all():
        raise ValueError(f"metric {name!r}: targets must be 0 or 1")
    scored = hidden == 0
    predicted = (logits > 0) & scored
    actual = (y == 1) & scored
    positives = int(actual.sum())
    if positives in (0, actual.size):
        raise ValueError(f"metric {name!r}: the masked targets hold a single class")
    true_positive_rate = (predicted & actual).sum() / positives
    true_negative_rate = (~predicted & ~actual).sum() / (actual.size - positives)
    return float(1.0 - (true_positive_rate + true_negative_rate) / 2.0)


# ---------------------------------------------------------------- FSD50K
def one_minus_map_per_clip(
    logits: np.ndarray, y: np.ndarray, *, clip: np.ndarray | None = None
) -> float:
    """1 - macro AP over clips, a clip's logits being the mean of its chunks' logits."""
    from sklearn.metrics import average_precision_score

    name = "one_minus_map_per_clip"
    clips = _given(name, clip=clip)["clip"]
    y = multilabel_targets(name, logits, y)
    if clips.shape != (len(y),):
        raise ValueError(f"metric {name!r}: expected one clip id per row, got {clips.shape}")
    ids, first, which = np.unique(clips, return_index=True, return_inverse=True)
    clip_targets = y[first]
    disagree = np.flatnonzero((y != clip_targets[which]).any(axis=1))
    if len(disagree):
        raise ValueError(
            f"metric {name!r}: chunks of clip {ids[which[disagree[0]]]} carry different "
            "labels; a clip's chunks share its labels"
        )
    chunks = np.bincount(which)
    order = np.argsort(which, kind="stable")  # the chunks grouped by clip, clip 0 first
    starts = np.concatenate([[0], np.cumsum(chunks)[:-1]])
    sums = np.add.reduceat(np.asarray(logits, dtype=np.float64)[order], starts, axis=0)
    mean_logits = sums / chunks[:, None]
    return 1.0 - per_label_mean(name, average_precision_score, mean_logits, clip_targets)
