"""The classical baselines (knn, linear, forest): selection on validation against a direct
scikit-learn grid, one read of the test split, output shapes per output kind, real metric
values; then a classical method through the pipeline, benchmark and compare flows."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlflow import MlflowClient

from orca.classical import CLASSICAL_MODELS, hyperparameter_grid
from orca.classical.outputs import OUTPUT_ADAPTERS
from orca.classical.registry import ClassicalModel
from orca.classical.selection import predict, score_test, select
from orca.metrics import METRICS

MODELS = ("knn", "linear", "forest")
SIZES = {"train": 40, "validation": 20, "test": 20}


def _inputs(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    return rng.normal(size=(n, *shape)).astype(np.float32)


def _classification(rng, n):
    """3 classes, well separated along every input value."""
    y = np.arange(n) % 3
    return 0.3 * _inputs(rng, n, (1, 12)) + 2.0 * y[:, None, None], y


def _regression(rng, n):
    x = _inputs(rng, n, (6,))
    return x, x @ np.linspace(-1, 1, 12).reshape(6, 2)  # (N, 2), exactly linear


def _dense1d(rng, n):
    x = _inputs(rng, n, (1, 24))
    return x, np.concatenate([2 * x, -x], axis=1)  # (N, 2, 24): 48 values, > 32 components


def _dense2d(rng, n):
    x = _inputs(rng, n, (1, 4, 4))
    return x, 3 * x  # (N, 1, 4, 4)


def _multilabel(rng, n):
    x = _inputs(rng, n, (8,))
    return x, (x[:, :3] > 0).astype(np.float32)  # (N, 3)


# output kind -> (make split, metric, num_outputs, output shape per example)
KINDS = {
    "classification": (_classification, "error_rate", 3, (3,)),
    "regression": (_regression, "relative_l2", 2, (2,)),
    "dense1d": (_dense1d, "relative_l2", 2, (2, 24)),
    "dense2d": (_dense2d, "relative_l2", 1, (1, 4, 4)),
    "multilabel": (_multilabel, "one_minus_auroc_multilabel", 3, (3,)),
}


def _splits(output: str, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    make = KINDS[output][0]
    rng = np.random.default_rng(seed)
    return {name: make(rng, n) for name, n in SIZES.items()}


@pytest.mark.parametrize("output", list(KINDS))
@pytest.mark.parametrize("model", MODELS)
def test_each_model_selects_on_validation_and_predicts_the_metrics_shapes(model, output):
    _, metric, num_outputs, shape = KINDS[output]
    splits = _splits(output)
    selection = select(
        model, output, metric, num_outputs, splits["train"], splits["validation"], seed=0
    )
    kind = OUTPUT_ADAPTERS.get(output).kind
    grid = hyperparameter_grid(model, kind, SIZES["train"], splits["train"][0][0].size)
    assert [c.params for c in selection.candidates] == grid
    scores = [c.validation_value for c in selection.candidates]
    assert selection.validation_value == min(scores)  # every metric here: lower is better
    assert selection.params == grid[scores.index(min(scores))]  # ties: the first
    outputs = predict(selection, splits["test"][0])
    assert outputs.shape == (SIZES["test"], *shape)
    assert np.isfinite(outputs).all()
    value = score_test(selection, splits["test"])
    assert value == METRICS.get(metric).compute(outputs, splits["test"][1])
    assert 0.0 <= value < 1.0  # better than chance / than predicting zeros


def test_real_values_on_separable_and_linear_tasks():
    for model in MODELS:
        splits = _splits("classification")
        selection = select(model, "classification", "error_rate", 3, *_fit(splits), seed=0)
        assert score_test(selection, splits["test"]) == 0.0, model
    splits = _splits("regression")
    selection = select("linear", "regression", "relative_l2", 2, *_fit(splits), seed=0)
    assert selection.params == {"alpha": 1e-3}  # the least penalty fits an exact line best
    assert score_test(selection, splits["test"]) < 1e-3
    splits = _splits("multilabel")
    metric = "one_minus_auroc_multilabel"
    selection = select("linear", "multilabel", metric, 3, *_fit(splits), seed=0)
    assert score_test(selection, splits["test"]) < 0.05


def _fit(splits):
    return splits["train"], splits["validation"]


def _noisy_classes(seed: int = 3):
    """Overlapping classes, so that the candidates' validation errors differ."""
    rng = np.random.default_rng(seed)

    def split(n):
        y = rng.integers(0, 3, size=n)
        return rng.normal(size=(n, 5)) + 0.8 * y[:, None], y

    return split(60), split(40)


def _sklearn_choice(candidates, build, score):
    """The first candidate with the lowest validation score, found with scikit-learn alone."""
    values = [score(build(params)) for params in candidates]
    return candidates[int(np.argmin(values))], min(values)


def test_the_choice_is_scikit_learns_own_best_on_validation():
    from sklearn.ensemble import ExtraTreesClassifier
    from sklearn.linear_model import Ridge
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    (x_train, y_train), (x_val, y_val) = _noisy_classes()

    def error(estimator):
        fitted = estimator.fit(x_train, y_train)
        return 100.0 * (1.0 - accuracy_score(y_val, fitted.predict(x_val)))

    knn = [
        {"n_neighbors": k, "weights": w}
        for k in (1, 3, 5, 7, 9, 15)
        for w in ("uniform", "distance")
        if k > 1 or w == "uniform"
    ]
    forest = [
        {"min_samples_leaf": leaf, "max_features": f} for leaf in (1, 5) for f in ("sqrt", 1.0)
    ]
    references = {
        "knn": _sklearn_choice(knn, lambda p: KNeighborsClassifier(**p), error),
        "forest": _sklearn_choice(
            forest,
            lambda p: ExtraTreesClassifier(n_estimators=100, random_state=7, **p),
            error,
        ),
    }
    for model, (params, value) in references.items():
        selection = select(
            model, "classification", "error_rate", 3, (x_train, y_train), (x_val, y_val), seed=7
        )
        assert (selection.params, selection.validation_value) == (params, pytest.approx(value))
        assert len({c.validation_value for c in selection.candidates}) > 1  # a real choice

    rng = np.random.default_rng(5)
    x = rng.normal(size=(50, 30))
    y = x[:, :3] @ np.array([1.0, -2.0, 0.5]) + rng.normal(scale=2.0, size=50)
    (x_train, y_train), (x_val, y_val) = (x[:30], y[:30]), (x[30:], y[30:])

    def one_minus_r2(estimator):
        return 1.0 - r2_score(y_val, estimator.fit(x_train, y_train).predict(x_val))

    alphas = [{"alpha": a} for a in (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)]
    params, value = _sklearn_choice(
        alphas, lambda p: make_pipeline(StandardScaler(), Ridge(**p)), one_minus_r2
    )
    selection = select(
        "linear", "regression", "one_minus_r2", 1, (x_train, y_train), (x_val, y_val), seed=0
    )
    assert (selection.params, selection.validation_value) == (params, pytest.approx(value))
    assert params != alphas[0] and params != alphas[-1]  # chosen inside the grid


def test_higher_is_better_and_nan_scores_are_ranked_right():
    from orca.metrics import Metric

    scores = iter([float("nan"), 0.2, 0.9, 0.9, 0.1])  # one per knn candidate, in grid order
    METRICS.register("higher-fake", Metric("higher-fake", lambda o, y: next(scores), False, ""))
    try:
        (x_train, y_train), validation = _noisy_classes()
        train = (x_train[:5], y_train[:5])
        chosen = select("knn", "classification", "higher-fake", 3, train, validation, seed=0)
    finally:
        METRICS.unregister("higher-fake")
    assert len(chosen.candidates) == 5  # k in 1, 3, 5 (uniform; 3 and 5 also distance)
    assert chosen.params == {"n_neighbors": 3, "weights": "distance"}  # the first 0.9
    assert chosen.validation_value == 0.9


PREDICTIONS: list[np.ndarray] = []  # the inputs of every _CountingClassifier prediction


class _CountingClassifier:
    """A k-NN classifier that logs the inputs of every prediction it makes."""

    def __init__(self, params):
        from sklearn.neighbors import KNeighborsClassifier

        self.inner = KNeighborsClassifier(**params)

    def fit(self, x, y):
        self.inner.fit(x, y)
        self.classes_ = self.inner.classes_
        return self

    def predict_proba(self, x):
        PREDICTIONS.append(np.array(x))
        return self.inner.predict_proba(x)


@pytest.fixture
def counting_model():
    from orca.classical.knn import knn_grid

    def build(params, seed, n_jobs):
        return _CountingClassifier(params)

    builders = {"classifier": build, "multilabel": build, "regressor": build}
    CLASSICAL_MODELS.register("counting", ClassicalModel("counting", "test", knn_grid, builders))
    PREDICTIONS.clear()
    yield "counting"
    CLASSICAL_MODELS.unregister("counting")


@pytest.fixture
def hand_made_task():
    from orca.data.tasks import TASKS, RawTask, TaskSpec, register_task

    splits = _splits("classification", seed=1)

    def load() -> RawTask:
        return RawTask(
            x_train=splits["train"][0],
            y_train=splits["train"][1],
            x_val=splits["validation"][0],
            y_val=splits["validation"][1],
            x_test=splits["test"][0],
            y_test=splits["test"][1],
            source="tests/test_classical.py",
            version="1",
        )

    spec = TaskSpec(
        name="classical-test-task",
        description="3 separable classes",
        modality="1d",
        input_shape=(1, 12),
        output="classification",
        num_outputs=3,
        loss="cross_entropy",
        metric="error_rate",
        loader=load,
    )
    register_task(spec)
    yield spec.name, splits
    TASKS.unregister(spec.name)


def test_the_stage_reads_and_predicts_the_test_split_once(
    hand_made_task, counting_model, tmp_path, monkeypatch
):
    from orca.stages import classical as classical_stage
    from orca.stages.ingest import ingest

    task_name, splits = hand_made_task
    dataset = ingest(task_name, tmp_path / "ingest", seed=0)
    reads = []
    read_split = classical_stage.read_split

    def counting_read(path):
        reads.append(str(path).rsplit("/", 1)[-1])
        return read_split(path)

    monkeypatch.setattr(classical_stage, "read_split", counting_read)
    out = tmp_path / "classical"
    reference = classical_stage.fit_classical(task_name, counting_model, dataset, 0, out)

    assert reads == ["train.arrow", "validation.arrow", "test.arrow"]
    test_x = splits["test"][0].astype(np.float32).reshape(SIZES["test"], -1)  # as stored
    on_test = [x for x in PREDICTIONS if np.array_equal(x, test_x)]
    assert len(on_test) == 1  # the chosen model, once
    assert len(PREDICTIONS) == len(reference["candidates"]) + 1
    assert reference["value"] == 0.0 and reference["test_rows"] == SIZES["test"]
    assert reference["metric"] == "error_rate" and reference["lower_is_better"] is True
    record = json.loads((out / "selection.json").read_text())
    assert record["hyperparameters"] == reference["hyperparameters"]
    assert reference["path"] == str(out / "selection.json")


def test_classical_configs_need_no_body():
    from orca.config.pipeline import PipelineConfig
    from orca.methods import METHODS
    from orca.registry import UnknownNameError

    assert {name for name in METHODS if METHODS.get(name).family == "classical"} == set(MODELS)
    # A vision body cannot take a tabular task, and no such body exists: neither matters here.
    for backbone in ("test-tiny-vit", "no-such-body"):
        config = PipelineConfig.for_task("breast-cancer", method="knn", backbone=backbone)
        assert config.family == "classical" and config.align_epochs == 0
    with pytest.raises(ValueError, match="takes no 'tabular' input"):
        PipelineConfig.for_task("breast-cancer", method="orca", backbone="test-tiny-vit")
    with pytest.raises(UnknownNameError, match="unknown classical model 'svm'; valid"):
        hyperparameter_grid("svm", "classifier", 10, 3)
    with pytest.raises(ValueError, match="estimator kind 'ranker' is not valid"):
        hyperparameter_grid("knn", "ranker", 10, 3)
    with pytest.raises(UnknownNameError, match="unknown output kind 'dense3d'"):
        select("knn", "dense3d", "mae", 1, *_fit(_splits("regression")), seed=0)


def test_classical_pipeline_run_caching_and_tracking(prefect_harness):
    from flows.pipeline import pipeline
    from orca.config.pipeline import PipelineConfig

    config = PipelineConfig.for_task("gunpoint", method="knn")
    first = pipeline(config)
    assert first["states"]["ingest"] in ("Completed", "Cached")
    assert first["states"]["classical"] == "Completed" and len(first["states"]) == 2
    assert first["metric"] == "error_rate" and 0.0 <= first["value"] < 30.0
    assert first["align_distance"] is None and first["best_epoch"] is None
    assert first["registered_model"] is None
    assert first["hyperparameters"]["n_neighbors"] in (1, 3, 5, 7, 9, 15)
    assert first["model_path"].endswith("selection.json")

    # The backbone is not part of a classical stage's cache key.
    other = pipeline(config.replace(backbone="another-body", seed=0))
    assert other["states"] == {"ingest": "Cached", "classical": "Cached"}
    assert other["value"] == first["value"] and other["backbone"] == "another-body"

    run = MlflowClient().get_run(first["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["classical.n_neighbors"] == str(first["hyperparameters"]["n_neighbors"])
    assert run.data.params["method"] == "knn"
    assert not any(k.startswith(("refine.", "align.", "proxy.")) for k in run.data.params)
    assert run.data.metrics["test_error_rate"] == pytest.approx(first["value"])
    assert run.data.metrics["best_val_metric"] == pytest.approx(first["validation_value"])
    assert run.data.tags["orca.value"] == repr(float(first["value"]))
    assert run.data.tags["stage.classical"] == "Completed"


def test_bench_and_compare_put_classical_methods_in_the_report(
    prefect_harness, tiny_bert_dir, tmp_path
):
    from flows.compare import compare
    from flows.sweep import sweep
    from orca.config.sweep import SweepConfig

    config = SweepConfig(
        tasks=("gunpoint",),
        methods=("no-align", "knn", "forest"),
        seeds=1,
        backbone=str(tiny_bert_dir),
        overrides={  # as tests/test_sweep_flow.py, so the shared stages may be Cached
            "proxy": {"max_examples": 60, "max_tokens": 16},
            "align": {"epochs": 1, "samples_per_class": 8},
            "refine": {"epochs": 1, "batch_size": 16},
        },
    )
    out = sweep(config)
    assert out["failures"] == []
    assert {r["method"] for r in out["results"]} == {"no-align", "knn", "forest"}
    result = compare(out["sweep_run_id"], reports_dir=str(tmp_path))
    rows = {r["method"]: r for r in result["rows"]}
    assert set(rows) == {"no-align", "knn", "forest"}
    markdown = (tmp_path / "comparison.md").read_text()
    assert "| task | metric | forest | knn | no-align |" in markdown
    # The champion is the fine-tuned model, whatever the classical methods scored.
    assert result["champions"]["gunpoint"].startswith("orca-gunpoint/")

    again = sweep(config)  # every run reused whole from the run cache
    assert all("reused_from" in r for r in again["results"])


def test_cli_run_with_a_classical_method(prefect_harness, capsys):
    from cli.main import main

    assert main(["run", "digits", "--method", "linear", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["method"] == "linear" and set(result["states"]) == {"ingest", "classical"}
    assert result["metric"] == "error_rate" and result["value"] < 20.0
    assert set(result["hyperparameters"]) == {"C"}


def test_reports_treat_classical_methods_like_any_method(tmp_path):
    from orca.reporting.comparison import summarise
    from orca.reporting.profile import performance_ratios
    from orca.reporting.report import write_report
    from orca.reporting.results import write_results

    values = {"orca": (10.0, 0.3), "knn": (5.0, 0.2), "linear": (20.0, 0.1), "forest": (8.0, 0.4)}
    runs = [
        {"task": task, "method": method, "seed": seed, "metric": metric, "value": value + seed,
         "lower_is_better": True}
        for method, scores in values.items()
        for task, metric, value in zip(("a", "b"), ("error_rate", "nrmse"), scores, strict=True)
        for seed in (0, 1)
    ]  # fmt: skip
    _, methods, ratios = performance_ratios(summarise(runs))
    assert methods == ["forest", "knn", "linear", "orca"]
    assert ratios[:, methods.index("knn")][0] == 1.0  # knn best on task a
    report = write_report(runs, tmp_path, title="t", context={"machine": "m"})
    text = report.markdown.read_text()
    assert "| task | metric | forest | knn | linear | orca |" in text
    assert "| a | error_rate ↓ | 8.5 ± 0.71 | **5.5 ± 0.71** | 20.5 ± 0.71 | 10.5 ± 0.71 |" in text
    assert "Wins per method (ties count for each): knn 1, linear 1, forest 0, orca 0" in text
    assert "## The paper's findings on this suite" in text
    assert report.profile.read_bytes()[:4] == b"\x89PNG"
    results = write_results(tmp_path / "RESULTS.md", report.markdown, {"date": "today"})
    assert "| forest | knn | linear | orca |" in results.read_text()
