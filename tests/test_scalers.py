"""Input and target standardisation: statistics against NumPy, and what OrcaModel does
with them (a zero predictor output is the training mean, in the targets' own units)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from orca.data.tasks import get_task
from orca.model import create_model
from orca.model.scalers import Standardizer, target_shape


def test_per_element_statistics_match_numpy_with_a_per_channel_floor():
    rng = np.random.default_rng(0)
    data = rng.normal(loc=[[5.0], [-3.0]], scale=[[2.0], [0.5]], size=(40, 2, 30))
    data[:, 0, 3] = 5.0 + 0.001 * rng.normal(size=40)  # a near-constant position
    scaler = Standardizer((2, 30))
    scaler.fit(torch.from_numpy(data).float(), floor_axes=(2,), floor=0.1)
    np.testing.assert_allclose(scaler.mean.numpy(), data.mean(axis=0), rtol=1e-5, atol=1e-5)
    channel_std = data.std(axis=(0, 2))
    expected_std = np.maximum(data.std(axis=0), 0.1 * channel_std[:, None])
    np.testing.assert_allclose(scaler.std.numpy(), expected_std, rtol=1e-5)
    assert float(scaler.std[0, 3]) == pytest.approx(0.1 * channel_std[0], rel=1e-5)  # floored
    out = scaler(torch.from_numpy(data).float()).numpy()
    np.testing.assert_allclose(out[:, 1].mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(out[:, 1].std(axis=0), 1.0, rtol=1e-4)
    back = scaler.inverse(torch.from_numpy(out)).numpy()
    np.testing.assert_allclose(back, data, rtol=1e-4, atol=1e-4)


def test_per_element_statistics_and_constant_elements_keep_unit_std():
    data = torch.tensor([[1.0, 7.0, 0.0], [3.0, 7.0, 10.0]])  # column 1 is constant
    scaler = Standardizer((3,))
    scaler.fit(data)
    assert scaler.mean.tolist() == pytest.approx([2.0, 7.0, 5.0])
    assert scaler.std.tolist() == pytest.approx([1.0, 1.0, 5.0])  # constant -> 1
    assert scaler(torch.tensor([[2.0, 7.0, 0.0]]))[0].tolist() == pytest.approx([0.0, 0.0, -1.0])


@pytest.mark.parametrize(
    ("task", "shape"),
    [("gunpoint", None), ("covid3month", (1,)), ("burgers", (1, 128)), ("darcy", (1, 33, 33))],
)
def test_target_shape_by_output_kind(task, shape):
    assert target_shape(get_task(task)) == shape


def test_a_zero_predictor_predicts_the_training_mean_field_in_target_units(tiny_bert_dir):
    spec = get_task("burgers")
    model = create_model(spec, str(tiny_bert_dir), seed=0).eval()
    generator = torch.Generator().manual_seed(0)
    x = 100.0 + 20.0 * torch.randn(16, *spec.input_shape, generator=generator)  # raw units
    y = 5.0 + torch.randn(16, 1, 128, generator=generator)
    model.fit_scalers(x, y)
    for parameter in model.predictor.parameters():
        torch.nn.init.zeros_(parameter)
    with torch.no_grad():
        out = model(x[:3])
    torch.testing.assert_close(out, y.mean(dim=0, keepdim=True).expand(3, -1, -1))
    # the embedder sees standardised inputs, whatever the raw units
    with torch.no_grad():
        seen = model.input_scaler(x)
    assert abs(float(seen.mean())) < 1e-4 and abs(float(seen.std()) - 1.0) < 0.05
    # the statistics travel with the model's weights
    again = create_model(spec, str(tiny_bert_dir), seed=0)
    again.load_state_dict(model.state_dict())
    torch.testing.assert_close(again.target_scaler.mean, model.target_scaler.mean)
    torch.testing.assert_close(again.input_scaler.std, model.input_scaler.std)


def test_classification_has_no_target_scaler(tiny_bert_dir):
    model = create_model(get_task("gunpoint"), str(tiny_bert_dir), seed=0)
    assert model.target_scaler is None and model.input_scaler is not None
