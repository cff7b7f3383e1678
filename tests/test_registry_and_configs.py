import pytest

from orca.config.base import flatten
from orca.config.pipeline import PipelineConfig
from orca.config.stages import AlignConfig, ProxyConfig, RefineConfig
from orca.registry import Registry, UnknownNameError


def test_registry_lists_valid_names_and_rejects_duplicates():
    registry: Registry[int] = Registry("widget")
    registry.register("b", 2)
    registry.register("a", 1)
    assert registry.get("a") == 1
    assert registry.names() == ["a", "b"]
    with pytest.raises(UnknownNameError, match="unknown widget 'c'; valid widgets: a, b"):
        registry.get("c")
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a", 3)


@pytest.mark.parametrize(
    ("factory", "field", "value", "message"),
    [
        (RefineConfig, "optimizer", "rmsprop", "refine.optimizer='rmsprop' is not a valid choice"),
        (RefineConfig, "lr", 0.0, r"refine.lr=0.0 is out of range; expected > 0"),
        (RefineConfig, "epochs", 2.5, "refine.epochs=2.5 must be an integer"),
        (RefineConfig, "schedule", "step", "expected one of: 'linear', 'cosine', 'constant'"),
        (AlignConfig, "otdd_inner", "fast", "align.otdd_inner='fast'"),
        (AlignConfig, "epochs", -1, "align.epochs=-1 is out of range"),
        (ProxyConfig, "max_tokens", "many", "proxy.max_tokens='many' must be an integer"),
    ],
)
def test_configs_name_the_bad_field_and_the_valid_values(factory, field, value, message):
    with pytest.raises(ValueError, match=message):
        factory(**{field: value})


def test_config_round_trip_and_unknown_keys():
    config = RefineConfig(lr=3e-4, optimizer="sgd")
    assert RefineConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"unknown field.*learning_rate.*valid fields: epochs"):
        RefineConfig.from_dict({"learning_rate": 1.0})


def test_pipeline_config_resolves_task_defaults_and_overrides():
    config = PipelineConfig.for_task("gunpoint", overrides={"refine": {"lr": 1e-3}})
    assert config.backbone == "minilm-l6"
    assert config.refine.lr == 1e-3
    assert config.align.epochs == 60  # the task's registered default (DEMO_ALIGN)
    assert config.align_epochs == 60
    assert PipelineConfig.for_task("gunpoint", method="no-align").align_epochs == 0
    again = PipelineConfig.from_dict(config.to_dict())
    assert again == config
    flat = flatten(config.to_dict())
    assert flat["refine.lr"] == 1e-3 and flat["task"] == "gunpoint"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "gunpiont"}, "unknown task 'gunpiont'; valid tasks: .*gunpoint"),
        (
            {"task": "gunpoint", "method": "orcaa"},
            "unknown method 'orcaa'; valid methods: forest, fpt, knn, linear, no-align, orca, "
            "orca-cosine, orca-l2, orca-mmd, scratch",
        ),
        (
            {"task": "gunpoint", "backbone": "gpt9"},
            "unknown backbone 'gpt9'; valid backbones: .*minilm-l6",
        ),
        ({"task": "gunpoint", "seed": -3}, "seed=-3 is out of range"),
        ({"task": "gunpoint", "overrides": {"refne": {}}}, "unknown override section"),
        ({"task": "gunpoint", "overrides": {"align": {"epochz": 1}}}, "unknown field.*epochz"),
    ],
)
def test_pipeline_config_rejects_bad_names(kwargs, message):
    task = kwargs.pop("task")
    with pytest.raises(ValueError, match=message):
        PipelineConfig.for_task(task, **kwargs)


@pytest.mark.parametrize(
    ("method", "metric", "epochs", "mode", "pretrained"),
    [
        ("orca", "otdd", 60, "full", True),
        ("orca-mmd", "mmd", 60, "full", True),
        ("orca-l2", "l2", 60, "full", True),
        ("orca-cosine", "cosine", 60, "full", True),
        ("no-align", "otdd", 0, "full", True),
        ("fpt", "otdd", 0, "fpt", True),
        ("scratch", "otdd", 0, "full", False),
    ],
)
def test_each_method_sets_its_stages(method, metric, epochs, mode, pretrained):
    config = PipelineConfig.for_task("gunpoint", method=method)
    assert config.align.metric == metric and config.align_epochs == epochs
    assert config.refine_mode == mode and config.pretrained_body is pretrained
