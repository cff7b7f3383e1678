"""The `paper` preset (orca/presets/paper.py): the authors' settings, per task, against their
configs transcribed here by hand; how it is applied (under the user's overrides, from the
command line, a flow parameter or a task file); and the pieces it switches on: the authors'
embedder initialisations, the halved OTDD cost (against POT), the optimizer's betas and
momentum, the lr decay horizon and summed gradient accumulation."""

from __future__ import annotations

import math
import warnings

import numpy as np
import ot
import pydantic
import pytest
import torch
from conftest import write_tiny_text_model
from test_task_file import write_task
from torch import nn

from cli.main import main
from orca.config.pipeline import PipelineConfig
from orca.config.stages import AlignConfig, RefineConfig
from orca.data.task_file import read_task_file
from orca.data.tasks import TaskSpec, get_task, task_names
from orca.metrics import LOSSES, METRICS
from orca.model import create_model
from orca.model.bodies import load_body
from orca.model.embedder_init import initialise_embedder
from orca.model.embedders import EMBEDDERS
from orca.model.orca_model import set_body_dropout
from orca.otdd import OTDD, OTDDConfig
from orca.presets.paper import AUTHORS_CONFIGS, sequence_length_mismatches
from orca.training.align import alignment_metric, train_embedder
from orca.training.finetune import fine_tune
from orca.training.optim import accumulation_divisor, create_optimizer, warmup_then_decay

# The authors' src/configs/*.yaml (sjunhongshen/ORCA), the hyperparameters block, copied by
# hand: drop_out, target_seq_len (512 when absent: task_configs.get_config), maxsamples,
# the optimizer block, scheduler WarmupLR's warmup_epochs and decay_epochs.
ECG_YAML = dict(weight="roberta", epochs=15, embedder_epochs=60, maxsamples=128, drop_out=0,
                target_seq_len=64, batch_size=4, accum=16, clip=-1, optimizer="SGD", lr=0.000001,
                betas=[0.9, 0.98], weight_decay=0.1, momentum=0.99, warmup_epochs=5,
                decay_epochs=200)  # fmt: skip
DEEPSEA_YAML = dict(weight="roberta", epochs=13, embedder_epochs=60, maxsamples=64, drop_out=0,
                    target_seq_len=512, batch_size=16, accum=1, clip=1, optimizer="Adam",
                    lr=0.00001, betas=[0.9, 0.98], weight_decay=0, momentum=0.99,
                    warmup_epochs=10, decay_epochs=25)  # fmt: skip
SATELLITE_YAML = dict(weight="roberta", epochs=60, embedder_epochs=60, maxsamples=128,
                      drop_out=0, target_seq_len=512, batch_size=16, accum=4, clip=-1,
                      optimizer="AdamW", lr=0.00003, betas=[0.9, 0.98], weight_decay=0.000003,
                      momentum=0.9, warmup_epochs=5, decay_epochs=60)  # fmt: skip
DARCY_YAML = dict(weight="base", epochs=100, embedder_epochs=60, maxsamples=128, drop_out=0.0,
                  target_seq_len=512, batch_size=4, accum=1, clip=-1, optimizer="AdamW",
                  lr=0.001, betas=[0.9, 0.98], weight_decay=0.005, momentum=0.9,
                  warmup_epochs=5, decay_epochs=100)  # fmt: skip
BURGERS_YAML = dict(weight="roberta", epochs=200, embedder_epochs=60, maxsamples=128,
                    drop_out=0, target_seq_len=128, batch_size=4, accum=1, clip=1,
                    optimizer="Adam", lr=0.00001, betas=[0.9, 0.98], weight_decay=0.00001,
                    momentum=0.99, warmup_epochs=5, decay_epochs=200)  # fmt: skip
CREDIT_G_YAML = dict(weight="roberta", epochs=20, embedder_epochs=20, maxsamples=128,
                     drop_out=0.05, target_seq_len=8, batch_size=64, accum=1, clip=1,
                     optimizer="Adam", lr=0.00001, betas=[0.9, 0.98], weight_decay=0.001,
                     momentum=0.999, warmup_epochs=5, decay_epochs=20)  # fmt: skip
AUTHORS_YAML = {
    "ecg": ECG_YAML,  # ecg.yaml
    "deepsea": DEEPSEA_YAML,  # deepsea.yaml
    "satellite": SATELLITE_YAML,  # satellite.yaml
    "nb360-darcy": DARCY_YAML,  # darcy.yaml
    "darcy": DARCY_YAML,  # orca's own Darcy task stands in for theirs
    "pdebench-burgers": BURGERS_YAML,  # PDEBG.yaml
    "openml-credit-g": CREDIT_G_YAML,  # OPENML31.yaml
}
BODIES = {"roberta": "roberta-base", "base": "swin-base"}
OPTIMIZERS = {"SGD": "sgd", "Adam": "adam", "AdamW": "adamw"}


def expected_fields(y: dict) -> tuple[dict, dict]:
    """orca's align and refine fields for one of their configs, by the rules of
    docs/paper-preset.md, written out independently of orca/presets/paper.py."""
    align = {
        "epochs": y["embedder_epochs"],
        "lr": y["lr"] * 10 if y["lr"] <= 1e-3 else y["lr"],  # module='embedder'
        "optimizer": OPTIMIZERS[y["optimizer"]],
        "weight_decay": y["weight_decay"],
        "momentum": y["momentum"],
        "betas": tuple(y["betas"]),
        # their loop takes batches until it holds more than maxsamples
        "samples_per_class": (y["maxsamples"] // y["batch_size"] + 1) * y["batch_size"],
        "lr_milestones": (21, 41, 61),  # StepLR sched [20, 40, 60]: lr drops once epoch > s
        "lr_gamma": 0.2,
        "procedure": "per_class",
        "metric": "otdd",
        "otdd_inner": "sinkhorn",
        "otdd_epsilon": 0.1,
        "otdd_cost": "half",
        "embedder_init": "paper",
    }
    refine = {
        "epochs": y["epochs"],
        "batch_size": y["batch_size"],
        "lr": y["lr"],
        "optimizer": OPTIMIZERS[y["optimizer"]],
        "weight_decay": y["weight_decay"],
        "momentum": y["momentum"],
        "betas": tuple(y["betas"]),
        "accumulation_steps": y["accum"],
        "accumulated_loss": "sum",
        "clip_norm": None if y["clip"] <= 0 else y["clip"],
        "dropout": y["drop_out"],
        "schedule": "linear",
        "warmup_fraction": y["warmup_epochs"] / y["epochs"],
        "decay_epochs": y["decay_epochs"],
        "patience": None,
        "task_lr_scale": 1.0,
        "probe_steps": 0,
        "mixup": 0.0,
    }
    return align, refine


@pytest.mark.parametrize("task", sorted(AUTHORS_YAML))
def test_the_preset_sets_the_authors_values(task):
    y = AUTHORS_YAML[task]
    config = PipelineConfig.for_task(task, preset="paper")
    align, refine = expected_fields(y)
    assert config.preset == "paper" and config.backbone == BODIES[y["weight"]]
    for section, expected in (("align", align), ("refine", refine)):
        actual = getattr(config, section)
        for name, value in expected.items():
            assert getattr(actual, name) == pytest.approx(value), f"{section}.{name}"
    assert AUTHORS_CONFIGS[task].target_seq_len == y["target_seq_len"]


def test_the_ecg_numbers_written_out():
    """One task's resolved values, hand-computed: nothing derived in the test."""
    config = PipelineConfig.for_task("ecg", preset="paper")
    assert config.align.lr == pytest.approx(1e-5) and config.align.samples_per_class == 132
    assert config.refine.warmup_fraction == pytest.approx(1 / 3)
    refine = config.refine
    assert (refine.lr, refine.optimizer, refine.momentum, refine.betas) == (
        1e-6,
        "sgd",
        0.99,
        (0.9, 0.98),
    )
    assert (config.refine.accumulation_steps, config.refine.clip_norm) == (16, None)


def test_every_paper_task_builds_a_valid_config_and_the_rest_get_the_method_settings():
    for task in AUTHORS_CONFIGS:
        assert task in task_names()
        assert PipelineConfig.for_task(task, preset="paper").refine.decay_epochs is not None
    other = PipelineConfig.for_task("gunpoint", preset="paper")
    plain = PipelineConfig.for_task("gunpoint")
    assert other.backbone == plain.backbone and other.refine.epochs == plain.refine.epochs
    assert (other.align.embedder_init, other.align.otdd_cost) == ("paper", "half")
    assert (other.refine.task_lr_scale, other.refine.accumulated_loss) == (1.0, "sum")


def test_the_sequence_lengths_orca_cannot_apply_are_named():
    specs = [get_task(name) for name in task_names()]
    assert sequence_length_mismatches(specs) == {
        "burgers": (16, 128),
        "pdebench-burgers": (512, 128),
    }


def test_the_orca_preset_is_the_registered_defaults():
    assert PipelineConfig.for_task("ecg", preset="orca") == PipelineConfig.for_task("ecg")
    assert PipelineConfig.for_task("ecg").preset == "orca"


def test_user_overrides_and_backbone_win_over_the_preset():
    overrides = {"refine": {"lr": 1e-4, "task_lr_scale": 10.0}, "align": {"otdd_cost": "squared"}}
    config = PipelineConfig.for_task(
        "ecg", preset="paper", overrides=overrides, backbone="minilm-l6"
    )
    assert config.refine.lr == 1e-4 and config.refine.task_lr_scale == 10.0  # orca's default
    assert config.align.otdd_cost == "squared" and config.backbone == "minilm-l6"
    assert config.refine.epochs == 15 and config.align.embedder_init == "paper"  # the preset's


def test_a_flow_parameter_gets_the_preset_under_the_sections_it_gives():
    """What Prefect does with a flow's `config` parameter (pydantic validation), and
    PipelineConfig.from_dict: the preset fills what the mapping leaves out."""
    given = {"task": "ecg", "preset": "paper", "refine": {"epochs": 2, "task_lr_scale": 10.0}}
    expected = PipelineConfig.for_task(
        "ecg", preset="paper", overrides={"refine": {"epochs": 2, "task_lr_scale": 10.0}}
    )
    assert pydantic.TypeAdapter(PipelineConfig).validate_python(given) == expected
    assert PipelineConfig.from_dict(given) == expected
    assert PipelineConfig.from_dict(expected.to_dict()) == expected  # a stored parameter
    bare = PipelineConfig.from_dict({"task": "ecg", "backbone": "roberta-base"})
    assert bare.refine == RefineConfig() and bare.preset == "orca"  # as before: no preset


def test_unknown_preset_names_fail_with_the_valid_choices(capsys):
    with pytest.raises(
        ValueError, match="preset: unknown preset 'papr'; valid presets: orca, paper"
    ):
        PipelineConfig.for_task("ecg", preset="papr")
    with pytest.raises(ValueError, match="unknown preset 'papr'"):
        PipelineConfig.from_dict({"task": "ecg", "backbone": "roberta-base", "preset": "papr"})
    for argv in (["run", "gunpoint", "--preset", "papr"], ["bench", "--tasks", "gunpoint",
                                                            "--preset", "papr"]):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "unknown preset 'papr'; valid presets: orca, paper" in err


def test_a_task_file_names_a_preset_under_its_own_sections(tmp_path):
    path = write_task(tmp_path, name="preset-task", extra="preset: paper\nrefine: {mixup: 0.2}\n")
    spec = read_task_file(path)
    assert spec.preset == "paper" and spec.align.embedder_init == "paper"
    assert spec.refine.mixup == 0.2 and spec.refine.task_lr_scale == 1.0  # the file's wins
    config = PipelineConfig.for_task(None, task_file=str(path))
    assert config.preset == "paper" and config.refine.mixup == 0.2
    (tmp_path / "bad").mkdir()
    bad = write_task(tmp_path / "bad", name="bad-preset", extra="preset: authors\n")
    with pytest.raises(ValueError, match="unknown preset 'authors'; valid presets: orca, paper"):
        read_task_file(bad)


# --- the authors' embedder initialisations --------------------------------------------


def probe_task(shape: tuple[int, ...], modality: str) -> TaskSpec:
    return TaskSpec(
        name="init-probe",
        description="embedder initialisation probe",
        modality=modality,
        input_shape=shape,
        output="classification",
        num_outputs=3,
        loss="cross_entropy",
        metric="error_rate",
        loader=lambda: None,
    )


def perturbed(norm: nn.LayerNorm) -> None:
    """Give a body's LayerNorm values no default LayerNorm has, so a copy is recognisable."""
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 1.5, norm.weight.numel()))
        norm.bias.copy_(torch.linspace(-0.2, 0.2, norm.bias.numel()))


@pytest.fixture(scope="module")
def text_body(tmp_path_factory):
    directory = write_tiny_text_model(tmp_path_factory.mktemp("paper-roberta"), "roberta")
    body = load_body(str(directory))
    perturbed(body.embedding_norm)
    return body


def text_model(body):
    return create_model(probe_task((4, 256), "1d"), body.source, seed=0, body=body)


def xavier_std(weight: torch.Tensor, gain: float) -> float:
    receptive = weight[0, 0].numel()
    fan_in, fan_out = weight.shape[1] * receptive, weight.shape[0] * receptive
    return gain * math.sqrt(2.0 / (fan_in + fan_out))


def test_paper_init_of_a_text_body_1d_embedder(text_body):
    model = text_model(text_body)
    built = {k: v.clone() for k, v in model.embedder.state_dict().items()}
    initialise_embedder(model, "orca", trained=True, seed=0)
    assert all(torch.equal(v, built[k]) for k, v in model.embedder.state_dict().items())

    initialise_embedder(model, "paper", trained=True, seed=0)
    embedder, weight = model.embedder, model.embedder.projection.weight
    assert torch.count_nonzero(embedder.projection.bias) == 0
    expected = xavier_std(weight, math.sqrt(2.0))
    assert float(weight.detach().std()) == pytest.approx(expected, rel=0.15)
    assert float(weight.detach().abs().max()) <= expected * math.sqrt(3) + 1e-7  # its bound
    for name in ("weight", "bias"):  # the body's LayerNorm and position table, copied
        assert torch.equal(getattr(embedder.norm, name), getattr(text_body.embedding_norm, name))
    assert torch.equal(embedder.positions.weight, text_body.position_embeddings.weight)
    again = text_model(text_body)
    initialise_embedder(again, "paper", trained=True, seed=0)
    assert torch.equal(again.embedder.projection.weight, weight)  # seeded


def test_paper_no_align_embedder_of_a_text_body(text_body):
    """Their no-align embedder (stage 2 skipped), reached through stage 2 with 0 epochs."""
    model = text_model(text_body)
    x, labels = torch.randn(12, 4, 256), torch.arange(12) % 2
    source, source_labels = torch.randn(20, 32), torch.arange(20) % 2
    config = AlignConfig(epochs=0, embedder_init="paper")
    train_embedder(model, x, labels, source, source_labels, config, seed=0)
    embedder = model.embedder
    assert torch.equal(embedder.norm.weight, torch.ones(32))  # a default LayerNorm
    assert torch.equal(embedder.norm.bias, torch.zeros(32))
    weight = embedder.projection.weight.detach()  # Conv1d: their conv_init, not re-drawn
    assert float(weight.std()) == pytest.approx(xavier_std(weight, math.sqrt(2.0)), rel=0.15)
    assert torch.count_nonzero(embedder.projection.bias) == 0
    assert torch.equal(embedder.positions.weight, text_body.position_embeddings.weight)


@pytest.fixture(scope="module")
def swin_body():
    torch.manual_seed(0)
    body = load_body("test-tiny-swin", pretrained=False)
    perturbed(body.patch_norm)
    return body


def test_paper_init_of_a_vision_body_2d_embedder(swin_body):
    model = create_model(probe_task((5, 32, 32), "2d"), "test-tiny-swin", seed=0, body=swin_body)
    initialise_embedder(model, "paper", trained=True, seed=0)
    source = swin_body.patch_projection
    weight = model.embedder.projection.weight  # (D, 5, p, p) from the body's (D, 3, p, p)
    for channel, filter_ in enumerate((0, 1, 2, 0, 1)):  # repeated, not rescaled
        assert torch.equal(weight[:, channel], source.weight[:, filter_])
    assert torch.equal(model.embedder.projection.bias, source.bias)
    assert torch.equal(model.embedder.norm.weight, swin_body.patch_norm.weight)

    initialise_embedder(model, "paper", trained=False, seed=0)  # their no-align embedder
    weight = model.embedder.projection.weight.detach()
    assert float(weight.std()) == pytest.approx(0.02, rel=0.2)  # truncated normal
    assert torch.count_nonzero(model.embedder.projection.bias) == 0
    assert torch.equal(model.embedder.norm.weight, torch.ones_like(weight[:, 0, 0, 0]))


@pytest.mark.skipif("vision/1d" not in EMBEDDERS, reason="no vision-body 1D embedder here")
def test_paper_init_keeps_the_fresh_position_table_of_a_vision_body_on_1d(swin_body):
    """Their Embeddings1D on a Swin body: a fresh N(0, 1) position table, only the
    LayerNorm taken from the body; the conv by their conv_init."""
    model = create_model(probe_task((2, 300), "1d"), "test-tiny-swin", seed=0, body=swin_body)
    initialise_embedder(model, "paper", trained=True, seed=0)
    positions = model.embedder.positions.detach()
    assert positions.numel() >= 1000
    assert abs(float(positions.mean())) < 0.1 and float(positions.std()) == pytest.approx(
        1, abs=0.1
    )
    assert torch.equal(model.embedder.norm.weight, swin_body.patch_norm.weight)
    assert torch.count_nonzero(model.embedder.projection.bias) == 0


def test_dropout_reaches_every_attention_and_hidden_dropout_of_the_body(text_body):
    model = text_model(text_body)
    x = torch.randn(3, 4, 256)
    model.train()
    for probability, stochastic in ((0.0, False), (0.5, True)):
        assert set_body_dropout(model, probability) > 0
        layer = model.body.model.encoder.layer[0]
        assert layer.attention.self.dropout.p == probability  # what sdpa attention reads
        assert (not torch.equal(model(x), model(x))) == stochastic


# --- the OTDD cost convention --------------------------------------------------------


def points() -> tuple[torch.Tensor, ...]:
    """Two labelled 3-D clouds, two classes each, at distances of order 1."""
    g = torch.Generator().manual_seed(0)
    xs = 0.4 * torch.randn(12, 3, generator=g, dtype=torch.float64)
    xt = 0.4 * torch.randn(10, 3, generator=g, dtype=torch.float64) + 0.2
    return xs, torch.tensor([0] * 6 + [1] * 6), xt, torch.tensor([0] * 4 + [1] * 6)


def sq(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1).numpy()


def label_costs(a, la, b, lb, distance) -> np.ndarray:
    return np.array([[distance(a[la == i], b[lb == j]) for j in lb.unique()] for i in la.unique()])


def test_the_half_cost_is_pots_exact_ot_of_half_the_augmented_cost():
    xs, ys, xt, yt = points()
    w2 = lambda a, b: ot.emd2(ot.unif(len(a)), ot.unif(len(b)), sq(a, b))  # noqa: E731
    cost = sq(xs, xt) + label_costs(xs, ys, xt, yt, w2)[ys][:, yt]
    reference = ot.emd2(ot.unif(12), ot.unif(10), 0.5 * cost)
    config = OTDDConfig(inner="exact", outer="exact", max_samples=None)
    half = OTDD(xs, ys, config.replace(cost="half"))(xt, yt)
    squared = OTDD(xs, ys, config)(xt, yt)
    assert float(half) == pytest.approx(reference, rel=1e-10)
    assert float(squared) == pytest.approx(2 * reference, rel=1e-10)


def test_the_half_cost_debiased_sinkhorn_matches_pot():
    """The authors' stage-2 OTDD: label distances by debiased Sinkhorn (eps 0.1) on
    ||x - y||^2, then the debiased Sinkhorn divergence (eps 0.1) of (||x - y||^2 + W) / 2;
    OT_eps = <P, C> + eps KL(P | a b^T), P from POT."""
    xs, ys, xt, yt = points()
    eps = 0.1

    def entropic(a, b, cost):
        with warnings.catch_warnings():  # symmetric problems stall near 1e-7: accurate enough
            warnings.simplefilter("ignore")
            plan = ot.sinkhorn(a, b, cost, eps, numItermax=10000, stopThr=1e-6)
        return (plan * cost).sum() + eps * (plan * np.log(plan / np.outer(a, b))).sum()

    def divergence(a_points, b_points, cost_fn):
        a, b = ot.unif(len(a_points)), ot.unif(len(b_points))
        return (
            entropic(a, b, cost_fn(a_points, b_points))
            - 0.5 * entropic(a, a, cost_fn(a_points, a_points))
            - 0.5 * entropic(b, b, cost_fn(b_points, b_points))
        )

    inner = lambda a, b: divergence(a, b, sq)  # noqa: E731
    w = {
        pair: label_costs(*pair_points, inner)
        for pair, pair_points in {
            "st": (xs, ys, xt, yt), "ss": (xs, ys, xs, ys), "tt": (xt, yt, xt, yt)
        }.items()
    }  # fmt: skip
    a, b = ot.unif(12), ot.unif(10)

    def half(p, lp, q, lq, labels):
        return 0.5 * (sq(p, q) + labels[lp][:, lq])

    reference = (
        entropic(a, b, half(xs, ys, xt, yt, w["st"]))
        - 0.5 * entropic(a, a, half(xs, ys, xs, ys, w["ss"]))
        - 0.5 * entropic(b, b, half(xt, yt, xt, yt, w["tt"]))
    )
    config = OTDDConfig(
        inner="sinkhorn", outer="sinkhorn", cost="half", epsilon=eps, max_samples=None,
        sinkhorn_tol=1e-12, sinkhorn_max_iter=100_000,
    )  # fmt: skip
    assert float(OTDD(xs, ys, config)(xt, yt)) == pytest.approx(reference, rel=1e-5)


def test_the_half_cost_halves_value_and_gradient_at_twice_the_epsilon():
    """OT_eps(C / 2) = OT_2eps(C) / 2 with the same plan: the stage-2 loss and its gradient
    are half of orca's at twice the regularisation (inner distances exact, unaffected)."""
    xs, ys, xt, yt = points()
    values, gradients = {}, {}
    for cost, eps in (("half", 0.1), ("squared", 0.2)):
        config = OTDDConfig(inner="exact", cost=cost, epsilon=eps, max_samples=None)
        target = xt.clone().requires_grad_(True)
        value = OTDD(xs, ys, config.replace(sinkhorn_tol=1e-10))(target, yt)
        value.backward()
        values[cost], gradients[cost] = float(value.detach()), target.grad
    assert values["half"] == pytest.approx(values["squared"] / 2, rel=1e-6)
    torch.testing.assert_close(gradients["half"], gradients["squared"] / 2, rtol=1e-5, atol=1e-9)


def test_stage_2_builds_its_otdd_with_the_configured_cost():
    source, labels = torch.randn(30, 4), torch.arange(30) % 3
    metric = alignment_metric(AlignConfig(otdd_cost="half"), source, labels, seed=0)
    assert metric.config.cost == "half"
    with pytest.raises(ValueError, match="unknown cost convention 'third'; valid cost conv"):
        OTDDConfig(cost="third")


# --- optimizers, the decay horizon, summed accumulation -------------------------------


def test_optimizers_take_betas_and_momentum():
    params = [nn.Parameter(torch.zeros(2))]
    adam = create_optimizer("adam", params, lr=1e-3, betas=(0.9, 0.98))
    assert adam.param_groups[0]["betas"] == (0.9, 0.98)
    sgd = create_optimizer("sgd", params, lr=1e-3, momentum=0.99, weight_decay=0.1)
    assert (sgd.param_groups[0]["momentum"], sgd.param_groups[0]["weight_decay"]) == (0.99, 0.1)


def test_stage_2_builds_its_optimizer_with_the_tasks_momentum_and_betas(text_body, monkeypatch):
    import orca.training.align as align_module

    seen = {}

    def recording(name, params, **options):
        seen.update(options, name=name)
        return create_optimizer(name, params, **options)

    monkeypatch.setattr(align_module, "create_optimizer", recording)
    config = AlignConfig(epochs=0, optimizer="sgd", momentum=0.99, betas=(0.8, 0.9))
    x, labels = torch.randn(8, 4, 256), torch.arange(8) % 2
    source, source_labels = torch.randn(10, 32), torch.arange(10) % 2
    train_embedder(text_model(text_body), x, labels, source, source_labels, config)
    assert seen["name"] == "sgd" and seen["momentum"] == 0.99 and seen["betas"] == (0.8, 0.9)


def test_the_decay_runs_over_its_own_horizon():
    """Their WarmupLR after warm-up: (total - step) / (total - warmup), total the decay
    horizon in steps, which may outlast training."""
    factor = warmup_then_decay(total_steps=10, warmup_steps=2, decay="linear", decay_steps=20)
    assert [round(factor(s), 4) for s in (2, 6, 10)] == [1.0, round(14 / 18, 4), round(10 / 18, 4)]
    short = warmup_then_decay(total_steps=10, warmup_steps=0, decay="linear", decay_steps=5)
    assert [short(s) for s in (5, 9)] == [0.0, 0.0]
    assert (accumulation_divisor("mean", 4), accumulation_divisor("sum", 4)) == (4, 1)


def tiny_fine_tune(body, **fields):
    torch.manual_seed(0)
    model = text_model(body)
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(16, 4, 256, generator=g), torch.arange(16) % 3
    before = {k: v.clone() for k, v in model.named_parameters()}
    base = dict(batch_size=8, lr=1e-2, probe_steps=0, patience=None, clip_norm=None,
                warmup_fraction=0.0, optimizer="sgd", momentum=0.0)  # fmt: skip
    config = RefineConfig(**{**base, **fields})
    loss, metric = LOSSES.get("cross_entropy"), METRICS.get("error_rate")
    result = fine_tune(model, (x, y), (x[:6], y[:6]), config, loss, metric, seed=0)
    delta = torch.cat([(p - before[k]).detach().flatten() for k, p in model.named_parameters()])
    return result, delta


def test_fine_tuning_decays_to_decay_epochs_and_sums_accumulated_losses(text_body):
    result, _ = tiny_fine_tune(text_body, epochs=2, decay_epochs=4)  # 2 steps an epoch
    assert [r.lr for r in result.history] == pytest.approx([1e-2 * 0.75, 1e-2 * 0.5])
    result, _ = tiny_fine_tune(text_body, epochs=2)
    assert result.history[-1].lr == 0.0  # orca's: to 0 at the last epoch
    # One SGD step over two micro-batches: the summed losses' step is twice the mean's.
    _, mean = tiny_fine_tune(text_body, epochs=1, accumulation_steps=2)
    _, summed = tiny_fine_tune(text_body, epochs=1, accumulation_steps=2, accumulated_loss="sum")
    assert float(summed.norm()) == pytest.approx(2 * float(mean.norm()), rel=1e-4)
    torch.testing.assert_close(summed, 2 * mean, rtol=1e-3, atol=1e-6)  # float32 updates


def test_the_documentation_lists_every_task_of_the_preset():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "paper-preset.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in doc.splitlines() if line.startswith("| ")}
    for task, config in AUTHORS_CONFIGS.items():
        assert task in rows and f"| {config.source} |" in rows[task], task
