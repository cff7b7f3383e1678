import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
)

from orca.metrics import LOSSES, METRICS
from orca.training.finetune import evaluate

NEW_METRICS = ("one_minus_auroc_multilabel", "one_minus_map", "mae", "one_minus_r2")
ALL_METRICS = (
    "error_rate",
    "one_minus_auroc",
    "one_minus_macro_f1",
    "relative_l2",
    "nrmse",
    *NEW_METRICS,
)


def compute(name, pred, target):
    return METRICS.get(name).compute(np.asarray(pred), np.asarray(target))


def softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture
def multiclass():
    rng = np.random.default_rng(0)
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 2])
    logits = rng.normal(size=(10, 3)) + np.eye(3)[y]
    return logits, y


def test_multiclass_metrics_match_sklearn(multiclass):
    logits, y = multiclass
    pred = logits.argmax(1)
    assert compute("error_rate", logits, y) == pytest.approx(100 * (1 - accuracy_score(y, pred)))
    assert compute("one_minus_macro_f1", logits, y) == pytest.approx(
        1 - f1_score(y, pred, average="macro")
    )
    assert compute("one_minus_auroc", logits, y) == pytest.approx(
        1 - roc_auc_score(y, softmax(logits), multi_class="ovo")
    )


def test_binary_auroc_from_two_logits_or_one():
    y = np.array([0, 1, 0, 1, 1, 0])
    score = np.array([0.2, 0.9, 0.6, 0.4, 0.8, -1.0])
    expected = 1 - roc_auc_score(y, score)
    assert expected == pytest.approx(1 / 9)  # by hand: only (0.4, 0.6) of 9 pairs misordered
    two = np.stack([np.zeros_like(score), score], axis=1)
    assert compute("one_minus_auroc", two, y) == pytest.approx(expected)
    assert compute("one_minus_auroc", score, y) == pytest.approx(expected)
    # BCE-style: one logit column against (N, 1) float targets.
    assert compute("one_minus_auroc", score[:, None], y[:, None].astype(float)) == pytest.approx(
        expected
    )


def test_multilabel_auroc_and_map_match_sklearn_macro():
    rng = np.random.default_rng(1)
    y = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 0], [1, 0, 1], [0, 1, 0]])
    logits = rng.normal(size=y.shape) + y
    assert compute("one_minus_auroc_multilabel", logits, y) == pytest.approx(
        1 - roc_auc_score(y, logits, average="macro")
    )
    assert compute("one_minus_map", logits, y) == pytest.approx(
        1 - average_precision_score(y, logits, average="macro")
    )


def test_multilabel_single_class_columns_are_skipped():
    rng = np.random.default_rng(2)
    y = np.array([[1, 0, 1, 1], [0, 0, 1, 1], [1, 0, 0, 1], [0, 0, 1, 1], [1, 0, 0, 1]])
    logits = rng.normal(size=y.shape)
    usable = [0, 2]  # column 1 has no positives, column 3 no negatives
    assert compute("one_minus_auroc_multilabel", logits, y) == pytest.approx(
        1 - roc_auc_score(y[:, usable], logits[:, usable], average="macro")
    )
    assert compute("one_minus_map", logits, y) == pytest.approx(
        1 - average_precision_score(y[:, usable], logits[:, usable], average="macro")
    )
    for name in ("one_minus_auroc_multilabel", "one_minus_map"):
        with pytest.raises(ValueError, match=rf"{name}.*no label column holds both classes"):
            compute(name, logits[:, [1, 3]], y[:, [1, 3]])


def test_regression_metrics_match_sklearn():
    rng = np.random.default_rng(3)
    target = rng.normal(size=(6, 2, 3))
    pred = target + 0.5 * rng.normal(size=target.shape)
    flat_t, flat_p = target.reshape(6, -1), pred.reshape(6, -1)
    assert compute("mae", pred, target) == pytest.approx(mean_absolute_error(flat_t, flat_p))
    assert compute("one_minus_r2", pred, target) == pytest.approx(1 - r2_score(flat_t, flat_p))
    # Scalar regression: R^2 = 1 - SS_res / SS_tot, by hand.
    t, p = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 3.0, 2.0])
    assert compute("one_minus_r2", p, t) == pytest.approx(5.0 / 5.0)  # SS_res 5, SS_tot 5
    assert compute("mae", p, t) == pytest.approx(0.75)


def test_relative_l2_and_nrmse_by_hand_on_two_examples():
    pred = np.array([[3.0, 4.0], [1.0, 1.0]])
    target = np.array([[0.0, 5.0], [2.0, 0.0]])
    # Example 1: ||(3,-1)|| / ||(0,5)|| = sqrt(10)/5; example 2: ||(-1,1)|| / ||(2,0)|| = sqrt(2)/2.
    expected = (np.sqrt(10) / 5 + np.sqrt(2) / 2) / 2
    assert compute("relative_l2", pred, target) == pytest.approx(expected)
    # Per example sqrt(mean d^2) / sqrt(mean y^2) is the same ratio here (equal element counts).
    assert compute("nrmse", pred, target) == pytest.approx(expected)
    loss = LOSSES.get("relative_l2")(torch.tensor(pred), torch.tensor(target))
    assert float(loss) == pytest.approx(expected)


def test_every_metric_is_registered_and_lower_is_better():
    assert set(ALL_METRICS) <= set(METRICS.names())
    for name in ALL_METRICS:
        metric = METRICS.get(name)
        assert metric.name == name and metric.lower_is_better is True and metric.description


def test_l1_loss():
    loss = LOSSES.get("l1")(torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[0, 4], [1, 0]]))
    assert float(loss) == pytest.approx((1 + 2 + 1 + 0) / 4)
    assert {"cross_entropy", "bce", "mse", "l1", "relative_l2"} <= set(LOSSES.names())


@pytest.mark.parametrize(
    ("name", "pred_shape", "target", "expected"),
    [
        ("error_rate", (4,), np.zeros(4, dtype=int), "2-D logits"),
        ("error_rate", (4, 3), np.zeros((4, 1), dtype=int), "1-D integer labels"),
        ("one_minus_macro_f1", (4, 3), np.zeros(5, dtype=int), "1-D integer labels"),
        ("one_minus_auroc", (4, 3), np.zeros((4, 3), dtype=int), "1-D integer labels"),
        ("one_minus_auroc_multilabel", (4, 3), np.zeros(4, dtype=int), "same shape"),
        ("one_minus_map", (4, 3), np.zeros((4, 2), dtype=int), "same shape"),
        ("relative_l2", (4, 3), np.zeros((4, 2)), "one shape"),
        ("nrmse", (4, 3), np.zeros(4), "one shape"),
        ("mae", (4, 3), np.zeros((3, 3)), "one shape"),
        ("one_minus_r2", (1, 3), np.zeros((1, 3)), "N >= 2"),
    ],
)
def test_incompatible_shapes_raise_naming_the_metric(name, pred_shape, target, expected):
    pred = np.zeros(pred_shape)
    with pytest.raises(ValueError) as info:
        compute(name, pred, target)
    message = str(info.value)
    assert repr(name) in message and expected in message
    assert str(tuple(pred.shape)) in message and str(tuple(target.shape)) in message


def test_bad_label_values_raise():
    with pytest.raises(ValueError, match=r"'error_rate'.*\[0, 2\)"):
        compute("error_rate", np.zeros((3, 2)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"'one_minus_macro_f1'.*integer class labels"):
        compute("one_minus_macro_f1", np.zeros((2, 2)), np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match=r"'one_minus_map'.*0 or 1"):
        compute("one_minus_map", np.zeros((2, 2)), np.array([[0, 2], [1, 0]]))


@pytest.mark.parametrize(
    ("name", "score", "labels", "whole", "chunk_mean"),
    [
        # Each chunk is ranked perfectly on its own; across chunks 3 of 16 pairs are misordered.
        ("one_minus_auroc", [-0.5, 3, 2.5, 3.5, -3, -2, -2.5, 1], [0, 1, 0, 1] * 2, 3 / 16, 0.0),
        # Chunk class balance differs: macro F1 is 1/2 overall but 1/3 within each chunk.
        ("one_minus_macro_f1", [-1, -1, 1, -1, 1, -1, 1, 1], [0, 0, 0, 1, 0, 1, 1, 1], 0.5, 2 / 3),
    ],
)
def test_evaluate_computes_metric_over_the_whole_split_not_per_batch(
    name, score, labels, whole, chunk_mean
):
    # Identity model: the logits are the inputs, so the expected values are known exactly.
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
        model.bias.zero_()
    x = torch.tensor([[0.0, s] for s in score])
    y = torch.tensor(labels)
    metric = METRICS.get(name)
    logits, target = x.numpy(), y.numpy()
    assert metric.compute(logits, target) == pytest.approx(whole)
    chunks = [metric.compute(logits[i : i + 4], target[i : i + 4]) for i in (0, 4)]
    assert np.mean(chunks) == pytest.approx(chunk_mean)
    assert evaluate(model, x, y, metric, batch_size=4) == pytest.approx(whole)


def test_mae8_scores_only_close_pairs_and_pixelwise_auroc_pools_all_pixels():
    from sklearn.metrics import roc_auc_score

    y = np.array([[[1.0, 9.0], [7.5, 20.0]]])  # (1, 2, 2) distance map
    pred = np.array([[[2.0, 0.0], [7.0, 0.0]]])
    assert METRICS.get("mae8").compute(pred, y) == pytest.approx((1.0 + 0.5) / 2)
    masks = np.array([[[0, 1], [1, 0]], [[0, 0], [1, 1]]], dtype=np.float32)
    logits = np.array([[[0.1, 0.9], [0.4, 0.3]], [[0.2, 0.5], [0.8, 0.35]]])
    expected = 1.0 - roc_auc_score(masks.ravel(), logits.ravel())
    assert METRICS.get("one_minus_auroc_pixelwise").compute(logits, masks) == pytest.approx(
        expected
    )
    with pytest.raises(ValueError, match="single class"):
        METRICS.get("one_minus_auroc_pixelwise").compute(logits, np.zeros_like(masks))
