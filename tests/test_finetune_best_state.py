"""fine_tune's best state: a CPU snapshot of the weights at the best validation epoch.

The snapshot is rewritten in place when a later epoch improves, so these tests pin down that
it always holds exactly the best epoch's weights and never shares memory with the model.
"""

from __future__ import annotations

import pytest
import torch

from orca.config.stages import RefineConfig
from orca.data.tasks import get_task
from orca.metrics import LOSSES, Metric
from orca.model import create_model
from orca.training.finetune import fine_tune


def _scripted_metric(values: list[float]) -> Metric:
    """A metric that returns `values` in turn, one per validation pass: it fixes which
    epochs count as improvements, whatever the weights do."""
    scores = iter(values)
    return Metric("scripted", lambda pred, y: next(scores), True, "scores in a fixed order")


def _data(n: int = 24):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 150, generator=generator)
    return x, torch.arange(n) % 2


@pytest.mark.parametrize(
    ("scores", "best_epoch"),
    [
        ([0.5, 0.4, 0.45, 0.3, 0.35], 3),  # improves at 0, 1 and 3: the snapshot is reused
        ([0.5, 0.4, 0.6, 0.7], 1),  # improves at 0 and 1, then only worse epochs
        ([0.5, 0.6, 0.7], 0),
    ],
)
def test_best_state_is_the_best_epochs_weights(tiny_bert_dir, scores, best_epoch):
    torch.manual_seed(0)
    model = create_model(get_task("gunpoint"), str(tiny_bert_dir), seed=0)
    x, y = _data()
    weights = []

    def keep(record):
        weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    config = RefineConfig(epochs=len(scores), batch_size=8, lr=3e-3, accumulation_steps=2)
    result = fine_tune(
        model,
        (x[:16], y[:16]),
        (x[16:], y[16:]),
        config,
        LOSSES.get("cross_entropy"),
        _scripted_metric(scores),
        on_epoch=keep,
    )
    assert result.best_epoch == best_epoch
    assert result.best_val_metric == scores[best_epoch]
    assert result.best_state.keys() == weights[best_epoch].keys()
    for key, value in weights[best_epoch].items():
        assert torch.equal(result.best_state[key], value), key
    key = "body.model.encoder.layer.0.attention.self.query.weight"
    if best_epoch < len(scores) - 1:  # training went on, so the equality above is not trivial
        assert not torch.equal(result.best_state[key], weights[-1][key])
    pointers = {p.untyped_storage().data_ptr() for p in model.state_dict().values()}
    assert not any(v.untyped_storage().data_ptr() in pointers for v in result.best_state.values())
    assert all(v.device.type == "cpu" for v in result.best_state.values())


@pytest.mark.parametrize("accumulation", [1, 2])
def test_train_loss_is_the_sample_weighted_mean_of_batch_losses(tiny_bert_dir, accumulation):
    """The loss sum kept on the device equals the mean over samples of the batch losses,
    with a short last batch weighted by its size, with and without accumulation."""
    x, y = _data(20)
    torch.manual_seed(0)
    model = create_model(get_task("gunpoint"), str(tiny_bert_dir), seed=0)
    losses = []

    def loss_fn(out, target):
        loss = torch.nn.functional.cross_entropy(out, target.long())
        if out.requires_grad:  # a training batch, not the validation loss
            losses.append((float(loss.detach()), len(target)))
        return loss

    config = RefineConfig(epochs=1, batch_size=8, lr=1e-4, accumulation_steps=accumulation)
    result = fine_tune(
        model, (x[:14], y[:14]), (x[14:], y[14:]), config, loss_fn, _scripted_metric([0.0])
    )
    assert [n for _, n in losses] == [8, 6]
    expected = sum(loss * n for loss, n in losses) / 14
    assert result.history[0].train_loss == pytest.approx(expected, rel=1e-6)
