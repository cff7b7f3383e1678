"""Mixup in fine-tuning: "auto" mixes only class labels, the loss is the hand-computed
convex combination, alpha 0 is the plain loss, and bad settings name the field."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from orca.config.stages import RefineConfig
from orca.training.mixup import AUTO_ALPHA, mixed_loss, mixup_alpha


def test_auto_mixes_class_labels_only():
    assert mixup_alpha("auto", torch.tensor([0, 2, 1])) == AUTO_ALPHA
    assert mixup_alpha("auto", torch.tensor([0.5, 1.5])) == 0.0  # regression
    assert mixup_alpha("auto", torch.zeros(3, 4, 4)) == 0.0  # a dense field
    assert mixup_alpha("auto", torch.tensor([[True, False]])) == 0.0
    assert mixup_alpha(0.0, torch.tensor([0, 1])) == 0.0
    assert mixup_alpha(1.5, torch.tensor([0.5])) == 1.5  # explicit values are kept


def test_mixed_loss_is_the_convex_combination_of_the_two_losses():
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    x, y = torch.randn(6, 5), torch.tensor([0, 1, 2, 0, 1, 2])
    loss_fn = torch.nn.functional.cross_entropy
    ours = mixed_loss(loss_fn, model, x, y, 0.4, torch.Generator().manual_seed(7))
    # the same draws by hand: a seed for numpy's Beta, then the pairing
    generator = torch.Generator().manual_seed(7)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    weight = float(np.random.default_rng(seed).beta(0.4, 0.4))
    weight = max(weight, 1 - weight)
    partner = torch.randperm(6, generator=generator)
    out = model(weight * x + (1 - weight) * x[partner])
    expected = weight * loss_fn(out, y) + (1 - weight) * loss_fn(out, y[partner])
    assert 0.5 <= weight <= 1.0
    assert torch.allclose(ours, expected)
    ours.backward()  # differentiable through the mixed input
    assert model.weight.grad is not None


def test_alpha_zero_and_single_examples_are_the_plain_loss():
    model = torch.nn.Linear(4, 2)
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 1, 0, 1])
    loss_fn = torch.nn.functional.cross_entropy
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    assert torch.equal(mixed_loss(loss_fn, model, x, y, 0.0, generator), loss_fn(model(x), y))
    assert torch.equal(generator.get_state(), state)  # no random draws without mixing
    one = mixed_loss(loss_fn, model, x[:1], y[:1], 0.4, generator)
    assert torch.equal(one, loss_fn(model(x[:1]), y[:1]))


@pytest.mark.parametrize("value", [-0.1, 11, "often"])
def test_bad_mixup_setting_names_the_field(value):
    with pytest.raises(ValueError, match=r"refine\.mixup"):
        RefineConfig(mixup=value)
