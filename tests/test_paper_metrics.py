"""The paper's PSICOV, Cosmic and FSD50K metrics on hand-built cases (orca.metrics_context)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from orca.metrics import METRICS
from orca.metrics_context import check_context


def score(name, pred, target, **context):
    return METRICS.get(name).score(np.asarray(pred), np.asarray(target), context)


# ---------------------------------------------------------------- PSICOV
def tiles_of(full: np.ndarray, pad: int, size: int, starts: list[tuple[int, int]], fill: float):
    """Cut size x size tiles at padded offsets `starts` from `full` padded by `pad`;
    return them as (N, 1, size, size) and each tile's first residue row and column."""
    padded = np.pad(full, pad, constant_values=fill)
    tiles = np.stack([padded[r : r + size, c : c + size] for r, c in starts])[:, None]
    rows, cols = (np.array([s[k] - pad for s in starts]) for k in (0, 1))
    return tiles.astype(np.float64), rows, cols


def protein(length: int, truth: dict, predicted: dict):
    """Full maps: true distances 20 A except `truth`, predictions 30 except `predicted`
    (entries given as (i, j): value, in one orientation only)."""
    t, p = np.full((length, length), 20.0), np.full((length, length), 30.0)
    for (i, j), value in truth.items():
        t[i, j] = t[j, i] = value
    for (i, j), value in predicted.items():
        p[i, j] = value
    return t, p


@pytest.fixture
def two_proteins():
    """Protein 0 (26 residues): long-range pairs (0, 24) 5 A, (0, 25) 9 A, (1, 25) 8 A.
    Protein 1 (25 residues): (0, 24) at 1 A. Close short-range pairs carry large errors."""
    t0, p0 = protein(
        26,
        truth={(0, 24): 5.0, (0, 25): 9.0, (1, 25): 8.0, (0, 10): 3.0},
        predicted={(0, 24): 6.0, (24, 0): 5.0, (1, 25): 10.0, (25, 1): 2.0, (0, 10): 99.0},
    )
    t1, p1 = protein(25, truth={(0, 24): 1.0}, predicted={(0, 24): -3.0, (24, 0): 0.5})
    parts = []
    # Protein 0: a 2 x 2 grid of 16-pixel tiles over its map padded by 2 (30 x 30), plus a
    # tile overlapping the grid's top-right one, where it predicts 8 at (0, 24).
    t0_tiles, rows, cols = tiles_of(t0, 2, 16, [(0, 0), (0, 14), (14, 0), (14, 14), (0, 12)], 16)
    p0_tiles, _, _ = tiles_of(p0, 2, 16, [(0, 0), (0, 14), (14, 0), (14, 14), (0, 12)], -7.0)
    p0_tiles[4, 0, 0 + 2, 24 - 10] = 8.0  # residue (0, 24) in the tile starting at (-2, 10)
    parts.append((p0_tiles, t0_tiles, rows, cols, 0, 26))
    # Protein 1: a 2 x 2 grid over its map padded by 2 (29 x 29).
    grid = [(0, 0), (0, 13), (13, 0), (13, 13)]
    t1_tiles, rows, cols = tiles_of(t1, 2, 16, grid, 16)
    p1_tiles, _, _ = tiles_of(p1, 2, 16, grid, 50.0)
    parts.append((p1_tiles, t1_tiles, rows, cols, 1, 25))
    return parts


def split_of(parts):
    """One split of the tiles of several proteins, with its context."""
    pred, target, context = [], [], {"protein": [], "row_start": [], "col_start": [], "length": []}
    for p, t, rows, cols, index, length in parts:
        pred += list(p)
        target += list(t)
        for key, values in zip(context, (index, rows, cols, length), strict=True):
            context[key] += list(np.broadcast_to(values, len(p)))
    return np.stack(pred), np.stack(target), {k: np.array(v) for k, v in context.items()}


def test_psicov_mae8_by_hand(two_proteins):
    pred, target, context = split_of(two_proteins)
    # Protein 0: (0, 24): the two tiles' 6 and 8 average to 7, with the lower triangle's 5:
    # (7 + 5) / 2 = 6, error 1. (0, 25) is 9 A away: not scored. (1, 25): (10 + 2) / 2 = 6,
    # error 2 against 8 A (<= 8 counts). (0, 10) is short-range: not scored. Mean 1.5.
    # Protein 1: (0, 24): -3 is floored to 0.01; (0.01 + 0.5) / 2 = 0.255, error 0.745.
    # Padding pixels (predicted -7 and 50) are no residue pairs.
    expected = (1.5 + 0.745) / 2  # the mean over proteins, not over the 3 pairs (1.248)
    assert score("psicov_mae8", pred, target, **context) == pytest.approx(expected)
    # Tiles may come in any order, and targets with or without the channel axis.
    order = np.random.default_rng(0).permutation(len(pred))
    shuffled = {k: v[order] for k, v in context.items()}
    assert score("psicov_mae8", pred[order, 0], target[order, 0], **shuffled) == pytest.approx(
        expected
    )


def test_psicov_mae8_scores_the_pairs_that_crops_cover():
    t, p = protein(
        26,
        truth={(0, 24): 5.0, (1, 25): 8.0},
        predicted={(0, 24): 6.0, (24, 0): 1.0, (1, 25): 10.0},
    )
    # One 10 x 10 crop of rows 0-9 and columns 16-25: the upper triangle of both pairs only,
    # so their predictions are taken as they are: errors |6 - 5| = 1 and |10 - 8| = 2.
    crop_t, crop_p = t[None, None, 0:10, 16:26], p[None, None, 0:10, 16:26]
    context = {"protein": [0], "row_start": [0], "col_start": [16], "length": [26]}
    assert score("psicov_mae8", crop_p, crop_t, **context) == pytest.approx(1.5)


def test_psicov_mae8_refuses_inconsistent_or_missing_context(two_proteins):
    pred, target, context = split_of(two_proteins)
    shifted = {**context, "col_start": context["col_start"] + (np.arange(9) == 4)}  # one tile
    with pytest.raises(ValueError, match="disagree on true distances"):
        score("psicov_mae8", pred, target, **shifted)
    with pytest.raises(
        ValueError, match=r"'psicov_mae8' needs the per-example context \['length'\]"
    ):
        score("psicov_mae8", pred, target, **{k: v for k, v in context.items() if k != "length"})
    with pytest.raises(ValueError, match=r"'row_start'.*expected 9 integers"):
        score("psicov_mae8", pred, target, **{**context, "row_start": context["row_start"][:2]})
    with pytest.raises(ValueError, match=r"'psicov_mae8' needs the per-example context"):
        METRICS.get("psicov_mae8").compute(pred, target)
    far = np.full_like(target, 12.0)
    with pytest.raises(ValueError, match="none of 2 proteins has a residue pair"):
        score("psicov_mae8", pred, far, **context)


# ---------------------------------------------------------------- Cosmic
COSMIC_TARGET = np.array([[[[1, 0, 0], [0, 1, 0]]], [[[0, 0, 1], [0, 1, 0]]]], dtype=np.float32)
COSMIC_LOGITS = np.array([[[[2.0, -1, 0.5], [-0.2, 0.3, -4]]], [[[-1, -1, -0.5], [3.0, -2, -2]]]])
# Hides a false positive (image 0, logit 0.5 on a clean pixel) and a false negative
# (image 1, logit -2 on a cosmic ray).
COSMIC_IGNORE = np.array([[[[0, 0, 1], [0, 0, 0]]], [[[0, 0, 0], [0, 1, 0]]]], dtype=np.uint8)


def test_cosmic_auroc_thresholds_and_masks_by_hand():
    # Scored: rays at image 0 (0,0), (1,1) predicted (logit > 0); image 1 (0,2) missed:
    # TPR 2/3. The 9 other pixels (hidden ones count as clean, predicted clean): one false
    # positive (image 1, logit 3): TNR 8/9. For 0/1 scores AUROC = (TPR + TNR) / 2 = 7/9.
    value = score("cosmic_one_minus_auroc", COSMIC_LOGITS, COSMIC_TARGET, ignore=COSMIC_IGNORE)
    assert value == pytest.approx(1 - 7 / 9)
    # The authors' computation: output and target times (1 - ignore), then logit > 0.
    kept = 1 - COSMIC_IGNORE
    reference = roc_auc_score((COSMIC_TARGET * kept).ravel(), (COSMIC_LOGITS * kept > 0).ravel())
    assert value == pytest.approx(1 - reference)
    # Without the mask, both hidden pixels count: TPR 2/4, TNR 6/8 -> AUROC 5/8.
    nothing_hidden = np.zeros_like(COSMIC_IGNORE)
    unmasked = score("cosmic_one_minus_auroc", COSMIC_LOGITS, COSMIC_TARGET, ignore=nothing_hidden)
    assert unmasked == pytest.approx(1 - 5 / 8)
    # orca's earlier variant ranks the continuous logits and ignores nothing.
    pixelwise = METRICS.get("one_minus_auroc_pixelwise").compute(COSMIC_LOGITS, COSMIC_TARGET)
    assert pixelwise == pytest.approx(
        1 - roc_auc_score(COSMIC_TARGET.ravel(), COSMIC_LOGITS.ravel())
    )
    assert pixelwise != pytest.approx(value)


def test_cosmic_auroc_checks_its_mask():
    with pytest.raises(ValueError, match="ignore mask has shape"):
        score("cosmic_one_minus_auroc", COSMIC_LOGITS, COSMIC_TARGET, ignore=COSMIC_IGNORE[:, 0])
    with pytest.raises(ValueError, match="mask values must be 0 or 1"):
        score("cosmic_one_minus_auroc", COSMIC_LOGITS, COSMIC_TARGET, ignore=COSMIC_IGNORE * 2)
    with pytest.raises(ValueError, match="single class"):
        score("cosmic_one_minus_auroc", COSMIC_LOGITS, COSMIC_TARGET, ignore=COSMIC_TARGET)


# ---------------------------------------------------------------- FSD50K
# Clip A: chunks 0, 1 (label 0); clip B: chunk 2 (label 1); clip C: chunks 3, 4 (both labels).
FSD_CLIPS = np.array([7, 7, 3, 9, 9])
FSD_TARGET = np.array([[1, 0], [1, 0], [0, 1], [1, 1], [1, 1]])
FSD_LOGITS = np.array([[2.0, 0.0], [-1.0, 1.0], [1.0, 2.0], [0.0, 1.0], [3.0, 1.0]])


def test_fsd50k_map_per_clip_by_hand():
    # Mean logits per clip: A (0.5, 0.5), B (1.0, 2.0), C (1.5, 1.0).
    # Label 0 ranks C (+), B (-), A (+): precision 1/1 and 2/3 at the positives, AP 5/6.
    # Label 1 ranks B (+), C (+), A (-): AP 1. mAP 11/12.
    value = score("one_minus_map_per_clip", FSD_LOGITS, FSD_TARGET, clip=FSD_CLIPS)
    assert value == pytest.approx(1 - 11 / 12)
    clip_logits = np.array([[0.5, 0.5], [1.0, 2.0], [1.5, 1.0]])
    clip_targets = np.array([[1, 0], [0, 1], [1, 1]])
    assert value == pytest.approx(
        1 - average_precision_score(clip_targets, clip_logits, average="macro")
    )
    # Scoring every chunk on its own (orca's earlier number) gives another value.
    per_chunk = METRICS.get("one_minus_map").compute(FSD_LOGITS, FSD_TARGET)
    assert per_chunk == pytest.approx(1 - average_precision_score(FSD_TARGET, FSD_LOGITS))
    assert per_chunk != pytest.approx(value)


def test_fsd50k_chunks_of_a_clip_must_share_its_labels():
    target = FSD_TARGET.copy()
    target[4] = [1, 0]
    with pytest.raises(ValueError, match="chunks of clip 9 carry different labels"):
        score("one_minus_map_per_clip", FSD_LOGITS, target, clip=FSD_CLIPS)
    with pytest.raises(ValueError, match=r"'clip'.*expected integers"):
        score("one_minus_map_per_clip", FSD_LOGITS, FSD_TARGET, clip=FSD_CLIPS + 0.5)


# ---------------------------------------------------------------- the context itself
def test_metrics_without_context_ignore_it_and_unknown_fields_are_named():
    logits, labels = np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([1, 0])
    assert METRICS.get("error_rate").score(logits, labels, {"clip": np.arange(2)}) == 0.0
    assert METRICS.get("error_rate").score(logits, labels) == 0.0
    with pytest.raises(ValueError, match=r"\[test\]: context: unknown context field 'clips'.*"):
        check_context("loader [test]", {"clips": np.arange(2)}, rows=2)
