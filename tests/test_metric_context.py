"""Per-example metric context through the pipeline: a PSICOV-like task's context goes from
the loader through ingest (hold-out and subsample) into the split files, stays aligned with
its rows, and reaches the paper's metric in evaluation, classical selection and `orca
predict`; tasks without context keep their fingerprints.

One tiny PSICOV directory (three training proteins, two test proteins) and its ingested
splits are shared by the module.
"""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_benchmark_loaders import long_range_mae8_by_loops, psicov_protein_features

from orca.data.arrow_io import read_split, write_split
from orca.data.benchmarks.nb360_dense import psicov_distances
from orca.data.tasks import TASKS, RawTask, TaskSpec, get_task, register_task
from orca.errors import UserError
from orca.metrics import LOSSES, METRICS
from orca.stages.ingest import ingest

TRAIN_LENGTHS = {"1abc": 30, "2def": 140, "3ghi": 34, "4jkl": 50}  # deepcov: 140 is cropped
TEST_LENGTHS = {"5mno": 40, "6pqr": 130}  # psicov: 130 + 10 > 128 -> a 2 x 2 grid of tiles
CCMPRED = 54  # the channel psicov_features puts the ccmpred (L, L) map in


def _write_protein(root: Path, dataset: str, pdb: str, length: int, rng) -> dict:
    features = psicov_protein_features(length, rng)
    (root / dataset / "features" / f"{pdb}.pkl").write_bytes(pickle.dumps(features))
    distances = rng.random((length, length)) * 30  # about a quarter within 8 A
    entry = np.array([length, "A" * length, distances], dtype=object)
    np.save(root / dataset / "distance" / f"{pdb}-cb.npy", entry, allow_pickle=True)
    return {"ccmpred": features["ccmpred"], "truth": psicov_distances(distances, 16.0)}


@pytest.fixture(scope="module")
def psicov(tmp_path_factory):
    """The PSICOV files, each protein's ccmpred map and true distances (as the loader
    clips them), and the task ingested twice: whole, and with half its training crops."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(21)
    proteins = {}
    for dataset, lengths in (("deepcov", TRAIN_LENGTHS), ("psicov", TEST_LENGTHS)):
        (root / "protein" / dataset / "features").mkdir(parents=True)
        (root / "protein" / dataset / "distance").mkdir(parents=True)
        (root / "protein" / f"{dataset}.lst").write_text("\n".join(lengths) + "\n")
        for pdb, length in lengths.items():
            proteins[pdb] = _write_protein(root / "protein", dataset, pdb, length, rng)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ORCA_DATA_DIR", str(root))
        raw = get_task("psicov").loader()
        out = tmp_path_factory.mktemp("splits")
        whole = ingest("psicov", out / "whole", seed=0)
        half = ingest("psicov", out / "half", seed=0, train_fraction=0.5)
    splits = {name: read_split(ref["path"]) for name, ref in whole["splits"].items()}
    half_train = read_split(half["splits"]["train"]["path"])
    return SimpleNamespace(
        raw=raw, proteins=proteins, dataset=whole, splits=splits, half_train=half_train
    )


def _ids(split_names: dict, context: dict[str, np.ndarray]) -> list[str]:
    return [list(split_names)[k] for k in context["protein"]]


def assert_rows_match_their_context(split, names: list[str], proteins: dict) -> None:
    """Each row's target is its protein's true map at the row's recorded offset."""
    context = split.context
    assert sorted(context) == ["col_start", "length", "protein", "row_start"]
    assert all(len(values) == len(split.y) for values in context.values())
    for k, pdb in enumerate(names):
        truth = proteins[pdb]["truth"]
        r, c, n = (int(context[f][k]) for f in ("row_start", "col_start", "length"))
        assert n == len(truth)
        rows = slice(max(0, -r), min(128, n - r))
        cols = slice(max(0, -c), min(128, n - c))
        window = truth[r + rows.start : r + rows.stop, c + cols.start : c + cols.stop]
        np.testing.assert_array_equal(split.y[k, 0, rows, cols], window)


def test_ingest_writes_each_rows_context_into_its_split(psicov):
    splits = psicov.splits
    assert [len(s.y) for s in splits.values()] == [3, 1, 5]  # validation: 3% of 4 -> 1 crop
    assert splits["test"].metadata["context"] == ["col_start", "length", "protein", "row_start"]
    train_names = [*TRAIN_LENGTHS]
    # Validation was carved from the training crops: together they are every protein once.
    carved = [*_ids(TRAIN_LENGTHS, splits["train"].context)]
    carved += _ids(TRAIN_LENGTHS, splits["validation"].context)
    assert sorted(carved) == sorted(train_names)
    for name in ("train", "validation"):
        names = _ids(TRAIN_LENGTHS, splits[name].context)
        assert_rows_match_their_context(splits[name], names, psicov.proteins)
    test_names = _ids(TEST_LENGTHS, splits["test"].context)
    assert test_names == ["5mno"] + ["6pqr"] * 4
    assert_rows_match_their_context(splits["test"], test_names, psicov.proteins)
    for field, values in psicov.raw.context["test"].items():  # test rows keep their order
        np.testing.assert_array_equal(splits["test"].context[field], values)


def test_subsampled_training_rows_keep_their_context(psicov):
    half, whole = psicov.half_train, psicov.splits["train"]
    assert len(half.y) == 2 and half.metadata["train_fraction"] == 0.5
    names = _ids(TRAIN_LENGTHS, half.context)
    assert set(names) < set(_ids(TRAIN_LENGTHS, whole.context))
    assert_rows_match_their_context(half, names, psicov.proteins)


def test_evaluate_scores_the_papers_mae8_with_the_test_splits_context(psicov):
    """A model that predicts 10 x ccmpred per residue pair: its test MAE8 by the pipeline's
    evaluate, from the split file alone, is the loop over each protein's whole map."""
    from orca.training.finetune import evaluate

    model = torch.nn.Conv2d(57, 1, kernel_size=1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
        model.weight[0, CCMPRED] = 10.0
    test = psicov.splits["test"]
    metric = METRICS.get(get_task("psicov").metric)
    assert metric.name == "psicov_mae8"
    value = evaluate(
        model, torch.from_numpy(test.x), torch.from_numpy(test.y), metric, 4, test.context
    )
    expected = np.mean(
        [
            long_range_mae8_by_loops(10 * p["ccmpred"], p["truth"])
            for p in (psicov.proteins[pdb] for pdb in TEST_LENGTHS)
        ]
    )
    assert value == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match=r"needs the per-example context \['protein'"):
        evaluate(model, torch.from_numpy(test.x), torch.from_numpy(test.y), metric, 4)


def test_the_evaluate_stage_scores_the_paper_metric_from_the_split_files(psicov, tmp_path):
    """The stage reads the test split named in the ingest reference, context included; the
    same score from the loader's own context says the file kept it row for row."""
    from orca.checkpoint import save_state
    from orca.model import create_model
    from orca.stages.evaluate import evaluate
    from orca.training.finetune import predict

    raw = psicov.raw
    model = create_model(get_task("psicov"), "test-tiny-vit", seed=0, pretrained=False).eval()
    save_state(tmp_path / "model.pt", model.state_dict(), {"task": "psicov"})
    reference = {"path": str(tmp_path / "model.pt")}
    result = evaluate("psicov", "test-tiny-vit", psicov.dataset, reference, 0, "cpu")
    outputs = predict(model, torch.from_numpy(raw.x_test), 64).numpy()
    expected = METRICS.get("psicov_mae8").score(outputs, raw.y_test, raw.context["test"])
    assert result["metric"] == "psicov_mae8" and result["value"] == pytest.approx(expected)


@pytest.fixture
def masked_task():
    """A tiny Cosmic-like task: 4x4 images -> 0/1 masks, an ignore mask per example."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 1, 4, 4)).astype(np.float32)
    y = (x + rng.normal(scale=0.8, size=x.shape) > 0.3).astype(np.float32)
    ignore = (rng.random(x.shape) < 0.25).astype(np.uint8)
    raw = RawTask(
        x[:30], y[:30], x[30:], y[30:], "masked", "1",
        context={"train": {"ignore": ignore[:30]}, "test": {"ignore": ignore[30:]}},
    )  # fmt: skip
    spec = TaskSpec(
        name="masked-rays",
        description="cosmic-like",
        modality="2d",
        input_shape=(1, 4, 4),
        output="dense2d",
        num_outputs=1,
        loss="bce",
        metric="cosmic_one_minus_auroc",
        loader=lambda: raw,
    )
    register_task(spec)
    yield spec, raw
    TASKS.unregister(spec.name)


def test_classical_selection_and_its_test_score_use_the_splits_masks(masked_task, tmp_path):
    from orca.classical.selection import predict as classical_predict
    from orca.classical.selection import select
    from orca.stages.classical import fit_classical

    spec, raw = masked_task
    dataset = ingest(spec.name, tmp_path / "splits", seed=0)
    validation = read_split(dataset["splits"]["validation"]["path"])
    assert validation.context["ignore"].dtype == np.uint8 and len(validation.y) == 6
    record = fit_classical(spec.name, "knn", dataset, seed=0, out_dir=tmp_path / "knn")
    train = read_split(dataset["splits"]["train"]["path"])
    chosen = select(
        "knn", "dense2d", spec.metric, 1, (train.x, train.y), (validation.x, validation.y), 0,
        validation_context=validation.context,
    )  # fmt: skip
    assert record["metric"] == "cosmic_one_minus_auroc"
    assert record["hyperparameters"] == chosen.params
    assert [c["validation_value"] for c in record["candidates"]] == [
        c.validation_value for c in chosen.candidates
    ]
    # The test score, by hand: (logit > 0) against the masks, ignored pixels zeroed in both.
    hidden = raw.context["test"]["ignore"] == 1
    predicted = (classical_predict(chosen, raw.x_test) > 0) & ~hidden
    actual = (raw.y_test == 1) & ~hidden
    tpr = (predicted & actual).sum() / actual.sum()
    tnr = (~predicted & ~actual).sum() / (~actual).sum()
    assert record["value"] == pytest.approx(1 - (tpr + tnr) / 2)
    with pytest.raises(ValueError, match=r"needs the per-example context \['ignore'\]"):
        select(
            "knn", "dense2d", spec.metric, 1, (train.x, train.y), (validation.x, validation.y), 0
        )
    # `orca predict --split` reads its split as ingest writes it: context included.
    from tasks.model_registry import ingested_split

    again = ingested_split(spec.name, "validation")
    np.testing.assert_array_equal(again.context["ignore"], validation.context["ignore"])


def test_fine_tune_selects_its_epochs_on_the_validation_context(masked_task):
    """Refine's validation scores each epoch with the validation rows' ignore mask."""
    from orca.config.stages import RefineConfig
    from orca.training.finetune import fine_tune, predict

    _, raw = masked_task
    x, y = torch.from_numpy(raw.x_train), torch.from_numpy(raw.y_train)
    mask = raw.context["train"]["ignore"]
    torch.manual_seed(0)
    model = torch.nn.Conv2d(1, 1, kernel_size=1)
    config = RefineConfig(epochs=1, batch_size=8, lr=1e-2, warmup_fraction=0.0)
    metric, loss = METRICS.get("cosmic_one_minus_auroc"), LOSSES.get("bce")
    with pytest.raises(ValueError, match=r"needs the per-example context \['ignore'\]"):
        fine_tune(model, (x[:20], y[:20]), (x[20:], y[20:]), config, loss, metric)
    result = fine_tune(
        model, (x[:20], y[:20]), (x[20:], y[20:]), config, loss, metric,
        val_context={"ignore": mask[20:]},
    )  # fmt: skip
    after = predict(model, x[20:], 64).numpy()  # one epoch: the last is the best
    expected = metric.score(after, raw.y_train[20:], {"ignore": mask[20:]})
    assert result.history[0].val_metric == pytest.approx(expected)
    assert expected != pytest.approx(
        metric.score(after, raw.y_train[20:], {"ignore": 0 * mask[20:]})
    )


def test_contexts_are_checked_where_they_enter(psicov):
    raw = psicov.raw
    with pytest.raises(ValueError, match=r"context 'protein': expected 5 integers"):
        replace(raw, context={"test": {**raw.context["test"], "protein": np.zeros(3)}})
    with pytest.raises(ValueError, match=r"context for split 'validation'.*\['test', 'train'\]"):
        replace(raw, context={"validation": raw.context["train"]})
    with pytest.raises(ValueError, match=r"unknown context field 'proteins'"):
        replace(raw, context={"test": {"proteins": raw.context["test"]["protein"]}})

    # A task whose metric needs context its loader does not give fails in ingest, by name.
    spec = replace(
        get_task("psicov"), name="psicov-no-context", loader=lambda: replace(raw, context={})
    )
    register_task(spec)
    try:
        with pytest.raises(ValueError, match=r"\[train\]: task 'psicov-no-context'.*'psicov_mae8'"):
            ingest(spec.name, Path("/nonexistent/never-written"), seed=0)
    finally:
        TASKS.unregister(spec.name)


def test_the_earlier_metrics_stay_selectable():
    for task, earlier in (
        ("psicov", "mae8"),
        ("cosmic", "one_minus_auroc_pixelwise"),
        ("fsd50k", "one_minus_map"),
    ):
        assert replace(get_task(task), metric=earlier).metric == earlier
    with pytest.raises(ValueError, match="metric for output 'multilabel'"):
        replace(get_task("fsd50k"), metric="psicov_mae8")


# Fingerprints of context-free splits, computed before context existed (pure integer data:
# the same bytes, and so the same hashes, on every machine).
BEFORE_CONTEXT = {
    "classes": "e9b85271e016befb",
    "dense": "4f475d5585173074",
    "ingest": ("a4c0beebd1dcc8bb", "a0ddcf2ef3022522"),  # whole, half the training rows
}


def test_splits_without_context_keep_their_fingerprints(tmp_path):
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    classes = np.array([0, 1, 2, 0, 1, 2])
    assert write_split(tmp_path / "a.arrow", x, classes, {}) == BEFORE_CONTEXT["classes"]
    dense = (np.arange(12, dtype=np.float32) / 4).reshape(6, 1, 2)
    assert (
        write_split(tmp_path / "b.arrow", x.reshape(6, 2, 2), dense, {}, {})
        == BEFORE_CONTEXT["dense"]
    )
    assert read_split(tmp_path / "b.arrow").context == {}
    clips = {"clip": np.array([0, 0, 1, 1, 2, 2])}
    assert write_split(tmp_path / "c.arrow", x, classes, {}, clips) != BEFORE_CONTEXT["classes"]

    def load() -> RawTask:
        inputs = (np.arange(40 * 6, dtype=np.float32) % 7).reshape(40, 1, 6)
        labels = np.arange(40) % 3
        return RawTask(inputs[:30], labels[:30], inputs[30:], labels[30:], "test", "1")

    spec = TaskSpec(
        name="fingerprint-probe",
        description="integers",
        modality="1d",
        input_shape=(1, 6),
        output="classification",
        num_outputs=3,
        loss="cross_entropy",
        metric="error_rate",
        loader=load,
    )
    register_task(spec)
    try:
        whole = ingest(spec.name, tmp_path / "whole", seed=0)["fingerprint"]
        half = ingest(spec.name, tmp_path / "half", seed=1, train_fraction=0.5)["fingerprint"]
    finally:
        TASKS.unregister(spec.name)
    assert (whole, half) == BEFORE_CONTEXT["ingest"]


def test_predict_takes_the_context_from_the_input_file(psicov, tmp_path):
    """`orca predict`'s pieces: context.<name> arrays read from INPUT.npz, a metric missing
    one refused with its name before the model loads, the metric scored with them."""
    from cli.commands_predict import Request, check_metric_context, score
    from orca.serving.files import InputFileError, read_context

    test = psicov.splits["test"]
    path = tmp_path / "input.npz"
    np.savez(path, x=test.x[:1], y=test.y, **{f"context.{k}": v for k, v in test.context.items()})
    context = read_context(path, len(test.y))
    assert sorted(context) == sorted(test.context)
    model = SimpleNamespace(metadata={"metric": "psicov_mae8"})
    check_metric_context(Request(model, test.x, test.y, str(path), context))
    partial = {k: v for k, v in context.items() if k != "length"}
    with pytest.raises(UserError, match=r"needs per-example context \['length'\].*context\.length"):
        check_metric_context(Request(model, test.x, test.y, str(path), partial))
    check_metric_context(Request(model, test.x, None, str(path), {}))  # no targets, no metric
    predictions = test.y + 0.5
    expected = METRICS.get("psicov_mae8").score(predictions, test.y, test.context)
    assert score("psicov_mae8", predictions, test.y, str(path), context) == expected
    np.savez(path, x=test.x[:1], **{"context.protein": np.zeros(2)})
    with pytest.raises(InputFileError, match=r"input\.npz: .*expected 8 integers"):
        read_context(path, 8)
