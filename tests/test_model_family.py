"""Every input kind x output kind the text body supports: shapes, no NaNs, token layouts."""

import pytest
import torch

from orca.data.tasks import TaskSpec
from orca.model import create_model
from orca.model.predictors import Dense1dHead, Dense2dHead

CASES = [
    ("1d", (2, 100), "classification", 3, "cross_entropy", (3,)),
    ("1d", (2, 100), "multilabel", 5, "bce", (5,)),
    ("1d", (1, 100), "regression", 1, "mse", (1,)),
    ("1d", (1, 100), "dense1d", 2, "mse", (2, 100)),
    ("2d", (1, 17, 23), "classification", 4, "cross_entropy", (4,)),
    ("2d", (3, 16, 16), "dense2d", 1, "mse", (1, 16, 16)),
    ("2d", (2, 17, 23), "dense2d", 2, "relative_l2", (2, 17, 23)),
    ("tabular", (4, 10), "classification", 2, "cross_entropy", (2,)),
    ("tabular", (1, 30), "regression", 3, "mse", (3,)),
]


@pytest.mark.parametrize(("modality", "shape", "output", "n_out", "loss", "expected"), CASES)
def test_model_shapes_and_finite_outputs(
    tiny_bert_dir, modality, shape, output, n_out, loss, expected
):
    spec = TaskSpec(
        name="t",
        description="",
        modality=modality,
        input_shape=shape,
        output=output,
        num_outputs=n_out,
        loss=loss,
        metric="relative_l2",
        loader=lambda: None,
        max_seq_len=32,
    )
    model = create_model(spec, str(tiny_bert_dir), seed=0)
    x = torch.randn(3, *shape)
    tokens = model.embed(x)
    assert tokens.shape[0] == 3 and tokens.shape[1] <= 32 and tokens.shape[2] == 32
    out = model(x)
    assert out.shape == (3, *expected)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert model.embedder.projection.weight.grad.abs().sum() > 0


def test_dense1d_head_puts_each_token_back_on_its_positions():
    head = Dense1dHead(hidden_size=4, num_outputs=1, stride=3)
    with torch.no_grad():
        head.head.weight.zero_()
        head.head.weight[:, 0] = 1.0
        head.head.bias.zero_()
    tokens = torch.zeros(1, 5, 4)
    tokens[0, :, 0] = torch.arange(5.0)
    out = head(tokens)  # (1, 1, 15)
    assert out[0, 0].tolist() == [float(i // 3) for i in range(15)]


def test_dense2d_head_puts_each_patch_back_on_its_pixels_and_crops():
    patch, grid = 2, (2, 3)
    head = Dense2dHead(hidden_size=4, num_outputs=1, patch=patch, grid=grid, output_hw=(3, 5))
    with torch.no_grad():
        head.head.weight.zero_()
        head.head.weight[:, 0] = 1.0
        head.head.bias.zero_()
    tokens = torch.zeros(1, 6, 4)
    tokens[0, :, 0] = torch.arange(6.0)  # row-major patch index
    out = head(tokens)
    assert out.shape == (1, 1, 3, 5)
    expected = [[(i // patch) * grid[1] + j // patch for j in range(5)] for i in range(3)]
    assert out[0, 0].tolist() == [[float(v) for v in row] for row in expected]


def test_tabular_with_more_features_than_positions_is_refused(tiny_bert_dir):
    spec = TaskSpec(
        name="t",
        description="",
        modality="tabular",
        input_shape=(1, 500),
        output="classification",
        num_outputs=2,
        loss="cross_entropy",
        metric="error_rate",
        loader=lambda: None,
    )
    with pytest.raises(ValueError, match="500 features but the body has only 128 positions"):
        create_model(spec, str(tiny_bert_dir))
