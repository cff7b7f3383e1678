"""Every body family x input kind x output kind that makes sense: shapes, no NaNs, layouts.

Text bodies (BERT, RoBERTa, MPNet) take 1D, 2D and tabular inputs; vision bodies (ViT,
Swin) take 2D inputs. Each builds with tiny configs and trains a step end to end.
"""

import pytest
import torch

from orca.data.tasks import TaskSpec
from orca.model import create_model
from orca.model.predictors import Dense1dHead, Dense2dHead

LOSS_FOR = {
    "classification": "cross_entropy",
    "multilabel": "bce",
    "regression": "mse",
    "dense1d": "mse",
    "dense2d": "relative_l2",
}
METRIC_FOR = {
    "classification": "error_rate",
    "multilabel": "one_minus_map",
    "regression": "mae",
    "dense1d": "nrmse",
    "dense2d": "relative_l2",
}
TEXT_CASES = [
    ("1d", (2, 100), "classification", 3, (3,)),
    ("1d", (2, 100), "multilabel", 5, (5,)),
    ("1d", (1, 100), "regression", 1, (1,)),
    ("1d", (1, 100), "dense1d", 2, (2, 100)),
    ("2d", (1, 17, 23), "classification", 4, (4,)),
    ("2d", (3, 16, 16), "dense2d", 1, (1, 16, 16)),
    ("2d", (2, 17, 23), "dense2d", 2, (2, 17, 23)),
    ("tabular", (4, 10), "classification", 2, (2,)),
    ("tabular", (1, 30), "regression", 3, (3,)),
]
VISION_CASES = [
    ("2d", (1, 28, 28), "classification", 10, (10,)),
    ("2d", (3, 32, 32), "multilabel", 4, (4,)),
    ("2d", (5, 20, 24), "regression", 2, (2,)),
    ("2d", (1, 28, 28), "dense2d", 1, (1, 28, 28)),
    ("2d", (4, 40, 36), "dense2d", 3, (3, 40, 36)),
]
CASES = [(family, *case) for family in ("bert", "roberta", "mpnet") for case in TEXT_CASES] + [
    (family, *case) for family in ("test-tiny-vit", "test-tiny-swin") for case in VISION_CASES
]


def tiny_spec(modality, shape, output, n_out, max_seq_len=32):
    return TaskSpec(
        name="t",
        description="",
        modality=modality,
        input_shape=shape,
        output=output,
        num_outputs=n_out,
        loss=LOSS_FOR[output],
        metric=METRIC_FOR[output],
        loader=lambda: None,
        max_seq_len=max_seq_len,
    )


@pytest.mark.parametrize(("family", "modality", "shape", "output", "n_out", "expected"), CASES)
def test_model_shapes_and_finite_outputs(
    backbones, family, modality, shape, output, n_out, expected
):
    model = create_model(tiny_spec(modality, shape, output, n_out), backbones[family], seed=0)
    x = torch.randn(3, *shape)
    tokens = model.embed(x)
    assert tokens.shape[0] == 3 and tokens.shape[2] == model.body.hidden_size
    if model.body.kind == "text":
        assert tokens.shape[1] <= 32
    else:
        assert tokens.shape[1] == model.body.grid[0] * model.body.grid[1]
    hidden = model.encode(tokens)
    assert hidden.shape[0] == 3 and hidden.shape[2] == model.body.output_size
    out = model.predict(hidden)
    assert out.shape == (3, *expected)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    assert model.embedder.projection.weight.grad.abs().sum() > 0
    body_grads = [p.grad for p in model.body.parameters() if p.grad is not None]
    assert body_grads and all(torch.isfinite(g).all() for g in body_grads)


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


def test_dense2d_head_resizes_a_constant_map_to_the_input_size():
    head = Dense2dHead(4, 1, patch=(4, 4), grid=(2, 2), output_hw=(10, 6), fit="resize")
    with torch.no_grad():
        head.head.weight.zero_()
        head.head.bias.fill_(2.5)
    out = head(torch.randn(2, 4, 4))
    assert out.shape == (2, 1, 10, 6)
    torch.testing.assert_close(out, torch.full_like(out, 2.5))


@pytest.mark.parametrize(
    ("backbone", "modality", "shape", "output", "message"),
    [
        ("bert", "tabular", (1, 500), "classification", "500 features but the body has only 128"),
        ("bert", "1d", (1, 1009), "classification", "input length 1009 has no stride"),
        ("bert", "1d", (1, 100), "dense2d", "'dense2d' needs an image input"),
        ("bert", "2d", (1, 8, 8), "dense1d", "'dense1d' needs a sequence input"),
        (
            "test-tiny-vit",
            "tabular",
            (1, 10),
            "classification",
            "a vision body takes no 'tabular' input",
        ),
        ("test-tiny-swin", "tabular", (1, 10), "regression", "supported body/input pairs: "),
    ],
)
def test_shapes_that_cannot_fit_fail_at_build_time(
    backbones, backbone, modality, shape, output, message
):
    with pytest.raises(ValueError, match=message):
        create_model(tiny_spec(modality, shape, output, 2, max_seq_len=512), backbones[backbone])


@pytest.mark.parametrize(
    ("output", "loss", "metric", "message"),
    [
        ("classification", "mse", "error_rate", "loss for output 'classification'"),
        ("multilabel", "bce", "error_rate", "metric for output 'multilabel'.*one_minus_map"),
        ("regression", "cross_entropy", "mae", "expected one of: 'mse', 'l1', 'relative_l2'"),
    ],
)
def test_losses_and_metrics_must_fit_the_output_kind(output, loss, metric, message):
    with pytest.raises(ValueError, match=message):
        TaskSpec(
            name="t",
            description="",
            modality="1d",
            input_shape=(1, 10),
            output=output,
            num_outputs=2,
            loss=loss,
            metric=metric,
            loader=lambda: None,
        )


def test_embedder_weights_for_other_channels_are_refused(backbones, tmp_path):
    from orca.checkpoint import CheckpointError, load_into, save_state

    two = create_model(tiny_spec("1d", (2, 100), "classification", 3), backbones["bert"])
    save_state(tmp_path / "embedder.safetensors", two.embedder.state_dict(), {})
    three = create_model(tiny_spec("1d", (3, 100), "classification", 3), backbones["bert"])
    with pytest.raises(CheckpointError, match=r"projection.weight \(checkpoint \(32, 2, 4\)"):
        load_into(three.embedder, tmp_path / "embedder.safetensors")
