"""The default fine-tuning recipe: a pure function of the data's shape and a throughput;
the throughput probe and the predictor warm start; early stopping restores the best epoch."""

from __future__ import annotations

import pytest
import torch

from orca.config.stages import RefineConfig
from orca.data.tasks import get_task
from orca.metrics import LOSSES, Metric
from orca.model import create_model
from orca.model.orca_model import set_body_dropout
from orca.training.finetune import fine_tune
from orca.training.probe_warm_start import warm_start_predictor
from orca.training.recipe import choose_batch_size, measure_throughput, plan_refine


@pytest.mark.parametrize(
    ("n_train", "batch"),
    [(3, 3), (10, 4), (40, 4), (112, 16), (200, 32), (5000, 32)],
)
def test_batch_size_is_a_power_of_two_near_an_eighth_of_the_data(n_train, batch):
    assert choose_batch_size(n_train) == batch


def test_small_data_gets_the_target_steps_when_the_budget_allows():
    # 40 examples, batches of 4: 10 steps an epoch, 400 steps -> 40 epochs. An epoch costs
    # (40 + 10 / 3) / 50 s = 0.8667 s, so 40 epochs are expected to take 34.7 s.
    plan = plan_refine(n_train=40, n_val=10, examples_per_second=50.0, budget_s=600.0)
    assert (plan.batch_size, plan.steps_per_epoch, plan.epochs) == (4, 10, 40)
    assert plan.patience == 20  # half the epochs
    assert plan.expected_seconds == pytest.approx(34.7)
    assert not plan.budget_limited
    assert plan.lr == pytest.approx(5e-5)


def test_the_budget_cuts_the_epochs_it_cannot_afford():
    # 1000 examples, batches of 32: 32 steps an epoch, 13 epochs wanted. An epoch costs
    # (1000 + 250 / 3) / 20 = 54.17 s; a 300 s budget affords 5 of them.
    plan = plan_refine(n_train=1000, n_val=250, examples_per_second=20.0, budget_s=300.0)
    assert (plan.batch_size, plan.steps_per_epoch) == (32, 32)
    assert plan.epochs == 5 and plan.budget_limited
    assert plan.expected_seconds == pytest.approx(270.8, abs=0.05)
    assert plan.expected_seconds <= 300.0
    assert plan.patience == 10  # never fewer than 10


def test_at_least_one_epoch_even_when_the_budget_is_smaller():
    plan = plan_refine(n_train=1000, n_val=0, examples_per_second=1.0, budget_s=10.0)
    assert plan.epochs == 1 and plan.budget_limited


def test_many_epochs_are_capped_and_accumulation_counts_steps():
    plan = plan_refine(n_train=8, n_val=2, examples_per_second=1e4, budget_s=600.0)
    assert plan.epochs == 150  # 2 steps an epoch would want 200
    plan = plan_refine(
        n_train=64, n_val=16, examples_per_second=1e4, budget_s=600.0, accumulation_steps=2
    )
    assert (plan.batch_size, plan.steps_per_epoch, plan.epochs) == (8, 4, 100)


def test_explicit_fields_pass_through_and_the_budget_does_not_cut_explicit_epochs():
    plan = plan_refine(
        n_train=1000,
        n_val=0,
        examples_per_second=1.0,
        budget_s=10.0,
        epochs=7,
        batch_size=5,
        lr=3e-4,
        patience=None,
    )
    assert (plan.epochs, plan.batch_size, plan.lr, plan.patience) == (7, 5, 3e-4, None)
    assert not plan.budget_limited
    config = RefineConfig().resolved(plan)
    assert (config.epochs, config.batch_size, config.lr, config.patience) == (7, 5, 3e-4, None)
    assert not config.needs_plan


def test_auto_fields_validate_and_fine_tune_refuses_an_unresolved_config(tiny_bert_dir):
    assert RefineConfig().needs_plan
    with pytest.raises(ValueError, match=r"refine\.epochs='many'.*or 'auto'"):
        RefineConfig(epochs="many")
    with pytest.raises(ValueError, match=r"refine\.budget_s"):
        RefineConfig(budget_s=0)
    model = create_model(get_task("gunpoint"), str(tiny_bert_dir), seed=0)
    x, y = torch.randn(8, 1, 150), torch.arange(8) % 2
    with pytest.raises(ValueError, match="auto"):
        fine_tune(model, (x, y), (x, y), RefineConfig(), LOSSES.get("cross_entropy"), None)


def test_throughput_probe_changes_no_weight_and_no_random_stream(tiny_bert_dir):
    model = create_model(get_task("gunpoint"), str(tiny_bert_dir), seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(16, 1, 150), torch.arange(16) % 2
    torch.manual_seed(3)
    speed = measure_throughput(model, x, y, LOSSES.get("cross_entropy"), 4, min_seconds=0.05)
    after_probe = torch.rand(1)
    torch.manual_seed(3)
    assert speed > 0
    assert torch.equal(after_probe, torch.rand(1))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in model.parameters())


def test_warm_start_trains_only_the_predictor_and_lowers_its_loss(tiny_bert_dir):
    torch.manual_seed(0)
    model = create_model(get_task("gunpoint"), str(tiny_bert_dir), seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(32, 1, 150)
    y = (x[:, 0, :75].mean(dim=1) > 0).long()
    result = warm_start_predictor(model, x, y, LOSSES.get("cross_entropy"), steps=50)
    assert result.loss_after < result.loss_before
    assert result.examples == 32
    for key, value in model.state_dict().items():
        changed = not torch.equal(value, before[key])
        assert changed == key.startswith("predictor."), key
    assert model.training


def test_body_dropout_is_set_on_every_dropout_layer(tiny_bert_dir):
    model = create_model(get_task("gunpoint"), str(tiny_bert_dir), seed=0)
    count = set_body_dropout(model, 0.0)
    layers = [m for m in model.body.modules() if isinstance(m, torch.nn.Dropout)]
    assert count == len(layers) > 0
    assert all(m.p == 0.0 for m in layers)


def test_early_stopping_restores_the_best_epochs_weights(tiny_bert_dir):
    """Scores improve at epochs 0 and 1, then not for 2 epochs: patience 2 stops after
    epoch 3, and the returned state is epoch 1's weights, not the last ones."""
    scores = iter([0.5, 0.3, 0.4, 0.45, 0.1, 0.1])
    metric = Metric("scripted", lambda pred, y: next(scores), True, "fixed order")
    torch.manual_seed(0)
    model = create_model(get_task("gunpoint"), str(tiny_bert_dir), seed=0)
    x, y = torch.randn(24, 1, 150), torch.arange(24) % 2
    weights = []
    config = RefineConfig(epochs=6, batch_size=8, lr=3e-3, patience=2, probe_steps=0)
    result = fine_tune(
        model,
        (x[:16], y[:16]),
        (x[16:], y[16:]),
        config,
        LOSSES.get("cross_entropy"),
        metric,
        on_epoch=lambda r: weights.append({k: v.clone() for k, v in model.state_dict().items()}),
    )
    assert len(result.history) == 4 and result.stopped_early
    assert result.best_epoch == 1
    for key, value in weights[1].items():
        assert torch.equal(result.best_state[key], value), key
    key = "body.model.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(result.best_state[key], weights[-1][key])


def test_warm_start_keeps_the_head_with_the_lowest_validation_loss(tiny_bert_dir):
    """Validation labels are the training rule flipped: every step that fits train makes
    validation worse, so the starting (zero) head is kept."""
    torch.manual_seed(0)
    model = create_model(get_task("gunpoint"), str(tiny_bert_dir), seed=0)
    x = torch.randn(48, 1, 150)
    y = (x[:, 0, :75].mean(dim=1) > 0).long()
    train, val = (x[:32], y[:32]), (x[32:], 1 - y[32:])
    start = {k: v.clone() for k, v in model.predictor.state_dict().items()}
    result = warm_start_predictor(model, *train, LOSSES.get("cross_entropy"), steps=50, val=val)
    assert result.steps == 0
    assert result.val_loss_after == pytest.approx(result.val_loss_before)
    for key, value in model.predictor.state_dict().items():
        assert torch.equal(value, start[key]), key
    # with validation labels that follow the rule, training steps are kept (more examples:
    # the head reads every token, and 32 are too few for it to generalise to validation)
    model = create_model(get_task("gunpoint"), str(tiny_bert_dir), seed=0)
    x = torch.randn(400, 1, 150)
    y = (x[:, 0, :75].mean(dim=1) > 0).long()
    result = warm_start_predictor(
        model, x[:300], y[:300], LOSSES.get("cross_entropy"), steps=50, val=(x[300:], y[300:])
    )
    assert result.steps > 0 and result.val_loss_after < result.val_loss_before


def test_the_predictor_starts_near_uniform_scores_and_gradients_reach_the_embedder(
    tiny_bert_dir,
):
    model = create_model(get_task("gunpoint"), str(tiny_bert_dir), seed=0)
    out = model(torch.randn(4, 1, 150))
    assert float(out.abs().max()) < 0.05  # softmax within about 1% of uniform
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 1, 0, 1])).backward()
    assert float(model.embedder.projection.weight.grad.abs().sum()) > 0
