import pytest

from orca.alignment.metrics import ALIGNMENT_METRICS
from orca.config.base import flatten
from orca.config.pipeline import PipelineConfig
from orca.config.stages import AlignConfig, ProxyConfig, RefineConfig
from orca.config.sweep import DEFAULT_METHODS
from orca.methods import METHODS, MethodSpec
from orca.otdd import INNER_KINDS, OUTER_KINDS, OTDDConfig
from orca.proxy.datasets import PROXY_DATASETS
from orca.registry import Registry, UnknownNameError
from orca.stages.order import FAMILY_STAGES
from orca.training.align_procedures import ALIGN_PROCEDURES
from orca.training.optim import OPTIMIZERS, SCHEDULES


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
    assert registry.items() == [("b", 2), ("a", 1)]  # registration order
    assert ["c"] not in registry  # an unhashable value is no name, not a TypeError
    with pytest.raises(UnknownNameError, match=r"field: unknown widget \['c'\]; valid widgets"):
        registry.check(["c"], field="field")


@pytest.mark.parametrize(
    ("factory", "field", "value", "message"),
    [
        (
            RefineConfig,
            "optimizer",
            "rmsprop",
            r"refine\.optimizer: unknown optimizer 'rmsprop'; valid optimizers: adam, adamw, sgd",
        ),
        (RefineConfig, "lr", 0.0, r"refine.lr=0.0 is out of range; expected > 0"),
        (RefineConfig, "epochs", 2.5, "refine.epochs=2.5 must be an integer"),
        (
            RefineConfig,
            "schedule",
            "step",
            r"refine\.schedule: unknown schedule 'step'; valid schedules: constant, cosine, linear",
        ),
        (
            AlignConfig,
            "otdd_inner",
            "fast",
            r"align\.otdd_inner: unknown inner kind 'fast'; valid inner kinds: exact, gaussian, "
            "sinkhorn",
        ),
        (
            AlignConfig,
            "procedure",
            "batch",
            r"align\.procedure: unknown align procedure 'batch'; "
            "valid align procedures: minibatch, per_class",
        ),
        (
            AlignConfig,
            "metric",
            "kl",
            r"align\.metric: unknown alignment metric 'kl'; "
            "valid alignment metrics: cosine, l2, mmd, otdd",
        ),
        (AlignConfig, "epochs", -1, "align.epochs=-1 is out of range"),
        (ProxyConfig, "max_tokens", "many", "proxy.max_tokens='many' must be an integer"),
    ],
)
def test_configs_name_the_bad_field_and_the_valid_values(factory, field, value, message):
    with pytest.raises(ValueError, match=message):
        factory(**{field: value})


# Every config field that names a choice, with the registry that holds the choices.
CHOICE_FIELDS = [
    (ProxyConfig, "dataset", "proxy.dataset", PROXY_DATASETS),
    (AlignConfig, "metric", "align.metric", ALIGNMENT_METRICS),
    (AlignConfig, "procedure", "align.procedure", ALIGN_PROCEDURES),
    (AlignConfig, "optimizer", "align.optimizer", OPTIMIZERS),
    (AlignConfig, "otdd_inner", "align.otdd_inner", INNER_KINDS),
    (RefineConfig, "optimizer", "refine.optimizer", OPTIMIZERS),
    (RefineConfig, "schedule", "refine.schedule", SCHEDULES),
    (OTDDConfig, "inner", "inner", INNER_KINDS),
    (OTDDConfig, "outer", "outer", OUTER_KINDS),
]
CHOICE_IDS = [f"{factory.__name__}.{field}" for factory, field, _, _ in CHOICE_FIELDS]


@pytest.mark.parametrize(("factory", "field", "label", "registry"), CHOICE_FIELDS, ids=CHOICE_IDS)
def test_a_choice_field_takes_exactly_the_names_of_its_registry(factory, field, label, registry):
    for name in registry.names():
        assert getattr(factory(**{field: name}), field) == name
    with pytest.raises(ValueError) as info:
        factory(**{field: "not-registered"})
    message = str(info.value)
    assert message.startswith((f"{label}: ", f"{label}=")), message  # names the field
    assert "'not-registered'" in message
    assert all(name in message for name in registry.names())


@pytest.mark.parametrize(("factory", "field", "label", "registry"), CHOICE_FIELDS, ids=CHOICE_IDS)
def test_registering_an_entry_is_all_a_new_choice_takes(factory, field, label, registry):
    with pytest.raises(ValueError, match="'extra-choice'"):
        factory(**{field: "extra-choice"})
    registry.register("extra-choice", object())
    try:
        assert getattr(factory(**{field: "extra-choice"}), field) == "extra-choice"
    finally:
        registry.unregister("extra-choice")
    with pytest.raises(ValueError, match="'extra-choice'"):
        factory(**{field: "extra-choice"})


def test_methods_and_their_families_come_from_their_registries():
    assert set(DEFAULT_METHODS) == set(METHODS.names()) and len(DEFAULT_METHODS) == len(METHODS)
    families = [METHODS.get(name).family for name in DEFAULT_METHODS]
    assert families == sorted(families, key=list(FAMILY_STAGES).index)  # family by family
    assert DEFAULT_METHODS[:4] == ("orca", "orca-mmd", "orca-l2", "orca-cosine")
    with pytest.raises(ValueError, match=r"family='neural' is not a valid choice.*'classical'"):
        MethodSpec("new", "a method of no family", True, family="neural")


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


def test_prefects_parameter_schema_lists_each_registry_as_it_is_now():
    """The flow-parameter schema (the Prefect UI's drop-downs, the server's check of a new
    run) takes each choice field's enum from its registry when the schema is made: an entry
    registered later is listed, with no config edited."""
    from prefect.utilities.callables import parameter_schema

    from flows.pipeline import pipeline
    from orca.training.optim import OPTIMIZERS

    def enums() -> dict[str, list[str]]:
        definitions = parameter_schema(pipeline).model_dump()["definitions"]
        return {
            f"{config}.{name}": spec["enum"]
            for config, schema in definitions.items()
            for name, spec in schema["properties"].items()
            if "enum" in spec
        }

    before = enums()
    assert before["AlignConfig.metric"] == ["otdd", "mmd", "l2", "cosine"]
    assert before["RefineConfig.schedule"] == ["linear", "cosine", "constant"]
    assert before["PipelineConfig.method"][:2] == ["orca", "orca-mmd"]
    assert "lion" not in before["RefineConfig.optimizer"]
    OPTIMIZERS.register("lion", OPTIMIZERS.get("adamw"))
    try:
        assert enums()["RefineConfig.optimizer"] == ["sgd", "adam", "adamw", "lion"]
    finally:
        OPTIMIZERS.unregister("lion")
