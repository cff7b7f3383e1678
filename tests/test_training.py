import pytest
import torch

from orca.config.stages import AlignConfig, RefineConfig
from orca.data.tasks import get_task
from orca.metrics import LOSSES, METRICS
from orca.model import create_model
from orca.training.align import train_embedder
from orca.training.finetune import fine_tune
from orca.training.optim import SCHEDULES, warmup_then_decay


def _toy_task_data(n=24, seed=0):
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    t = torch.linspace(0, 6.28, 150)
    x = torch.sin(t * (1 + y[:, None])) + 0.1 * torch.randn(n, 150, generator=generator)
    return x[:, None, :].float(), y  # (N, 1, 150)


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_align_trains_only_the_embedder_and_lowers_the_distance(tiny_bert_dir):
    model = create_model(get_task("gunpoint"), str(tiny_bert_dir), seed=0)
    x, y = _toy_task_data()
    generator = torch.Generator().manual_seed(1)
    source = torch.randn(60, 32, generator=generator) + 1.0
    source_labels = torch.arange(60) % 3
    body_before, head_before = _snapshot(model.body), _snapshot(model.predictor)
    embedder_before = _snapshot(model.embedder)
    config = AlignConfig(epochs=6, lr=1e-2, lr_milestones=(100,), samples_per_class=8)
    history = train_embedder(model, x, y, source, source_labels, config, seed=0)
    assert len(history.distances) == 7
    assert history.distances[-1] < 0.9 * history.distances[0]
    for key, value in _snapshot(model.body).items():
        assert torch.equal(value, body_before[key]), key
    for key, value in _snapshot(model.predictor).items():
        assert torch.equal(value, head_before[key]), key
    after = _snapshot(model.embedder)
    assert not torch.equal(after["projection.weight"], embedder_before["projection.weight"])
    assert not torch.equal(after["norm.weight"], embedder_before["norm.weight"])


def test_align_with_zero_epochs_keeps_the_initial_embedder(tiny_bert_dir):
    model = create_model(get_task("gunpoint"), str(tiny_bert_dir), seed=0)
    before = _snapshot(model.embedder)
    x, y = _toy_task_data(n=8)
    history = train_embedder(
        model, x, y, torch.randn(20, 32), torch.arange(20) % 2, AlignConfig(epochs=0), seed=0
    )
    assert len(history.distances) == 1 and history.distances[0] > 0
    for key, value in _snapshot(model.embedder).items():
        assert torch.equal(value, before[key])


def test_fine_tune_learns_and_selects_on_validation(tiny_bert_dir):
    torch.manual_seed(0)
    model = create_model(get_task("gunpoint"), str(tiny_bert_dir), seed=0)
    x, y = _toy_task_data(n=48)
    body_before = _snapshot(model.body)
    config = RefineConfig(epochs=8, batch_size=8, lr=3e-3, accumulation_steps=2, clip_norm=1.0)
    result = fine_tune(
        model,
        (x[:32], y[:32]),
        (x[32:], y[32:]),
        config,
        LOSSES.get("cross_entropy"),
        METRICS.get("error_rate"),
        seed=0,
    )
    assert len(result.history) == 8
    assert result.history[-1].train_loss < result.history[0].train_loss
    best = min(result.history, key=lambda r: r.val_metric)
    assert result.best_val_metric == best.val_metric
    assert result.history[result.best_epoch].val_metric == best.val_metric
    # Full fine-tuning: the body changed too.
    changed = [k for k, v in _snapshot(model.body).items() if not torch.equal(v, body_before[k])]
    assert any("attention" in k for k in changed) and any("intermediate" in k for k in changed)


def test_warmup_then_linear_decay_per_step():
    factor = warmup_then_decay(total_steps=10, warmup_steps=2, decay="linear")
    assert [round(factor(s), 3) for s in range(11)] == [
        0.5,
        1.0,
        1.0,
        0.875,
        0.75,
        0.625,
        0.5,
        0.375,
        0.25,
        0.125,
        0.0,
    ]
    cosine = warmup_then_decay(total_steps=4, warmup_steps=0, decay="cosine")
    assert [round(cosine(s), 3) for s in range(5)] == [1.0, 0.854, 0.5, 0.146, 0.0]
    constant = warmup_then_decay(total_steps=4, warmup_steps=2, decay="constant")
    assert [constant(s) for s in range(5)] == [0.5, 1.0, 1.0, 1.0, 1.0]


def test_an_unknown_schedule_raises_naming_it_and_the_valid_ones():
    with pytest.raises(
        ValueError, match=r"unknown schedule 'step'; valid schedules: constant, cosine, linear"
    ):
        warmup_then_decay(total_steps=10, warmup_steps=2, decay="step")


def test_a_registered_schedule_is_used_by_name():
    SCHEDULES.register("half", lambda progress: 0.5)
    try:
        factor = warmup_then_decay(total_steps=4, warmup_steps=1, decay="half")
        assert [factor(s) for s in range(4)] == [1.0, 0.5, 0.5, 0.5]
        assert RefineConfig(schedule="half").schedule == "half"
    finally:
        SCHEDULES.unregister("half")


def _changed_after_training(model, mode, steps_data):
    from orca.training.refine_modes import apply_refine_mode

    apply_refine_mode(model, mode)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    x, y = steps_data
    fine_tune(
        model,
        (x[:16], y[:16]),
        (x[16:], y[16:]),
        RefineConfig(epochs=2, batch_size=8, lr=1e-2, warmup_fraction=0.0),
        LOSSES.get("cross_entropy"),
        METRICS.get("error_rate"),
        seed=0,
    )
    changed = {k for k, v in model.named_parameters() if not torch.equal(v, before[k])}
    return changed, set(before)


@pytest.mark.parametrize("mode", ["full", "fpt", "layernorm", "linear_probe"])
def test_each_refine_mode_changes_exactly_its_parameters(tiny_bert_dir, mode):
    model = create_model(get_task("gunpoint"), str(tiny_bert_dir), seed=0)
    changed, everything = _changed_after_training(model, mode, _toy_task_data(n=24))
    # The body's own input embedding and pooler are never run, so they never change.
    unused = {
        k for k in everything if k.startswith(("body.model.embeddings.", "body.model.pooler."))
    }
    in_body = {k for k in everything if k.startswith("body.") and k not in unused}
    norms = {k for k in everything if "LayerNorm" in k or k.startswith("embedder.norm.")}
    expected = {
        "full": everything - unused,
        "fpt": (everything - in_body - unused) | (in_body & norms),
        "layernorm": {k for k in everything if k.startswith("predictor.")} | (norms - unused),
        "linear_probe": {k for k in everything if k.startswith("predictor.")},
    }[mode]
    assert changed == expected
    if mode == "fpt":
        assert not any("attention.self" in k or "intermediate" in k for k in changed)
        assert "embedder.projection.weight" in changed and "embedder.positions.weight" in changed


def test_scratch_body_has_the_same_architecture_and_random_weights(tiny_bert_dir):
    spec = get_task("gunpoint")
    pretrained = create_model(spec, str(tiny_bert_dir), seed=0)
    scratch = create_model(spec, str(tiny_bert_dir), seed=0, pretrained=False)
    shapes = {k: v.shape for k, v in pretrained.state_dict().items()}
    assert shapes == {k: v.shape for k, v in scratch.state_dict().items()}
    key = "body.model.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(pretrained.state_dict()[key], scratch.state_dict()[key])


@pytest.mark.parametrize("procedure", ["per_class", "minibatch"])
def test_align_distance_falls_on_real_gunpoint_against_the_wnut16_proxy(procedure):
    """The real thing, small: GunPoint's training series, the packaged MiniLM body and
    WNUT-16 proxy features from the body's own embedding; OTDD must fall."""
    from orca.data.ucr import load_ucr
    from orca.model.text_body import load_text_body
    from orca.proxy.text import load_text_proxy, text_proxy_features

    body = load_text_body("minilm-l6")
    _, sentences = load_text_proxy("wnut16")
    proxy = text_proxy_features(body, sentences, max_examples=200, max_tokens=32, batch_size=64)
    raw = load_ucr("GunPoint")
    x = torch.from_numpy(raw.x_train).float()
    y = torch.from_numpy(raw.y_train).long()
    model = create_model(get_task("gunpoint"), "minilm-l6", seed=0, body=body)
    config = AlignConfig(
        epochs=4, lr=1e-3, lr_milestones=(100,), procedure=procedure, batch_size=25
    )
    history = train_embedder(
        model,
        x,
        y,
        torch.from_numpy(proxy.features),
        torch.from_numpy(proxy.labels),
        config,
        seed=0,
    )
    assert len(history.distances) == 5
    assert history.distances[-1] < 0.95 * history.distances[0], history.distances


def test_align_stops_once_the_target_distance_is_reached(tiny_bert_dir):
    model = create_model(get_task("gunpoint"), str(tiny_bert_dir), seed=0)
    x, y = _toy_task_data()
    source = torch.randn(60, 32, generator=torch.Generator().manual_seed(1)) + 1.0
    config = AlignConfig(epochs=8, lr=1e-2, lr_milestones=(100,), samples_per_class=8)
    full = train_embedder(model, x, y, source, torch.arange(60) % 3, config, seed=0)
    target = full.distances[3]
    model = create_model(get_task("gunpoint"), str(tiny_bert_dir), seed=0)
    stopped = train_embedder(
        model, x, y, source, torch.arange(60) % 3, config.replace(target_distance=target), seed=0
    )
    assert stopped.stopped_early and not full.stopped_early
    assert stopped.distances[:4] == full.distances[:4]
    assert len(stopped.distances) == 5  # epochs 0-3, then the measurement after training
