"""A vision body on 1D inputs: the series laid out on the body's own patch grid
(orca/model/vision_embedder.py, `VisionSequenceEmbedder`), and `orca run` on a 1D task with
a vision body end to end, its proxy being the vision body's."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from torch.nn import functional as F

from orca.data.tasks import TaskSpec
from orca.model import create_model
from orca.model.bodies import load_body
from orca.model.vision_embedder import (
    VisionSequenceEmbedder,
    sequence_layout,
    vision_sequence_embedder_for,
)

BODY_NAMES = ("test-tiny-swin", "test-tiny-vit")  # grids (16, 16) and (4, 4)


def series_task(shape, output="classification", n_out=3):
    loss, metric = {"classification": ("cross_entropy", "error_rate")}.get(output, ("mse", "mae"))
    return TaskSpec(
        name="series",
        description="",
        modality="1d",
        input_shape=shape,
        output=output,
        num_outputs=n_out,
        loss=loss,
        metric=metric,
        loader=lambda: None,
    )


@pytest.fixture(scope="module")
def bodies(tiny_vision_backbones):
    return {name: load_body(tiny_vision_backbones[name]) for name in BODY_NAMES}


@pytest.mark.parametrize("name", BODY_NAMES)
@pytest.mark.parametrize(
    ("shape", "output", "n_out"),
    [
        ((1, 150), "classification", 2),
        ((3, 256), "classification", 4),
        ((2, 1000), "regression", 1),
    ],
)
def test_series_of_any_length_and_channels_go_through_the_vision_body(
    tiny_vision_backbones, name, shape, output, n_out
):
    model = create_model(series_task(shape, output, n_out), tiny_vision_backbones[name], seed=0)
    grid = model.body.grid
    x = torch.randn(3, *shape)
    tokens = model.embed(x)
    assert tokens.shape == (3, grid[0] * grid[1], model.body.hidden_size)
    hidden = model.encode(tokens)
    out_grid = model.body.output_grid(grid)
    assert hidden.shape == (3, out_grid[0] * out_grid[1], model.body.output_size)
    out = model.predict(hidden)
    assert out.shape == (3, n_out) and torch.isfinite(out).all()
    out.square().mean().backward()
    assert model.embedder.projection.weight.grad.abs().sum() > 0
    assert model.embedder.positions.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("length", "grid", "segment", "canvas"),
    [
        (256, (16, 16), 1, 256),  # fits the grid: used as is
        (150, (16, 16), 1, 256),  # shorter than the grid: stretched to one sample a token
        (150, (4, 4), 10, 160),
        (1000, (4, 4), 63, 1008),
        (3136, (56, 56), 1, 3136),  # Swin-B's grid
        (150, (56, 56), 1, 3136),  # GunPoint on Swin-B
    ],
)
def test_layout_rule(length, grid, segment, canvas):
    assert sequence_layout(length, grid) == (segment, canvas)
    tokens = grid[0] * grid[1]
    assert length <= canvas < length + tokens  # stretched by < one token's worth, never cropped


def test_a_series_that_fits_is_cut_into_consecutive_segments_in_grid_order(bodies):
    embedder = VisionSequenceEmbedder(2, 64, bodies["test-tiny-vit"])  # 16 tokens of 4
    assert (embedder.segment, embedder.canvas_length, embedder.fit) == (4, 64, "as is")
    with torch.no_grad():
        embedder.projection.weight.zero_()
        embedder.projection.weight[0, 0] = 0.25  # token feature 0 = mean of channel 0's segment
        embedder.projection.bias.zero_()
    x = torch.randn(5, 2, 64)
    assert torch.equal(embedder.fit_to_canvas(x), x)
    h = embedder.projection(embedder.fit_to_canvas(x)).transpose(1, 2)  # (5, 16, D)
    torch.testing.assert_close(h[..., 0], x[:, 0].reshape(5, 16, 4).mean(-1))
    # Token k sits at row k // gw, column k % gw of the body's grid (row-major).
    gh, gw = embedder.grid
    on_grid = h[..., 0].reshape(5, gh, gw)
    torch.testing.assert_close(on_grid[:, 1, 0], x[:, 0, gw * 4 : gw * 4 + 4].mean(-1))


def test_a_series_that_does_not_fit_is_resampled_not_padded_or_cropped(bodies):
    embedder = VisionSequenceEmbedder(1, 150, bodies["test-tiny-vit"])
    assert (embedder.segment, embedder.canvas_length, embedder.fit) == (10, 160, "resample")
    x = torch.randn(4, 1, 150)
    fitted = embedder.fit_to_canvas(x)
    assert fitted.shape == (4, 1, 160)
    expected = F.interpolate(x, size=160, mode="linear", align_corners=False)
    torch.testing.assert_close(fitted, expected)
    # Linear interpolation: no value outside the series' range, ends kept, no zero padding.
    assert (fitted.amin(-1) >= x.amin(-1) - 1e-6).all() and (
        fitted.amax(-1) <= x.amax(-1) + 1e-6
    ).all()
    torch.testing.assert_close(fitted[..., 0], x[..., 0])
    torch.testing.assert_close(fitted[..., -1], x[..., -1])
    constant = torch.full((2, 1, 150), 3.0)
    torch.testing.assert_close(embedder.fit_to_canvas(constant), torch.full((2, 1, 160), 3.0))


def test_embedder_layers_follow_the_authors_1d_embedder(bodies):
    swin, vit = bodies["test-tiny-swin"], bodies["test-tiny-vit"]
    torch.manual_seed(0)
    first = VisionSequenceEmbedder(1, 150, swin)
    # Swin's patch LayerNorm is copied (a copy: training it leaves the body alone).
    assert first.norm is not swin.patch_norm
    assert torch.equal(first.norm.weight, swin.patch_norm.weight)
    assert torch.equal(first.norm.bias, swin.patch_norm.bias)
    # ViT's patch embedding has no norm: a default LayerNorm.
    assert isinstance(vit.patch_norm, torch.nn.Identity)
    vit_embedder = VisionSequenceEmbedder(1, 150, vit)
    assert torch.equal(vit_embedder.norm.weight, torch.ones(vit.hidden_size))
    # A fresh N(0, 1) position table per token of the grid, drawn from the seed.
    assert first.positions.shape == (256, swin.hidden_size)
    assert abs(first.positions.std().item() - 1.0) < 0.1
    assert abs(first.positions.mean().item()) < 0.1
    torch.manual_seed(0)
    assert torch.equal(VisionSequenceEmbedder(1, 150, swin).positions, first.positions)


def test_the_body_is_neither_resized_nor_reinitialised(tiny_vision_backbones):
    backbone = tiny_vision_backbones["test-tiny-swin"]
    saved = load_file(backbone.split("@", 1)[1])
    model = create_model(series_task((1, 150)), backbone, seed=0)
    state = model.body.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items())
    assert set(saved) <= set(state)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 8, 8), r"vision 1d embedder expects input_shape \(C, L\), got \(1, 8, 8\)"),
        ((1, 1), r"input_shape \(C, L\) = \(1, 1\) needs C >= 1 channel and L >= 2 samples"),
        ((0, 100), r"input_shape \(C, L\) = \(0, 100\) needs C >= 1"),
    ],
)
def test_bad_input_shapes_are_named_at_build_time(bodies, shape, message):
    with pytest.raises(ValueError, match=message):
        vision_sequence_embedder_for(bodies["test-tiny-swin"], shape, 512)


def test_a_batch_of_the_wrong_shape_is_named(bodies):
    embedder = VisionSequenceEmbedder(2, 150, bodies["test-tiny-swin"])
    with pytest.raises(ValueError, match=r"built for series of shape \(C, L\) = \(2, 150\), got"):
        embedder(torch.randn(3, 2, 149))
    with pytest.raises(ValueError, match=r"\(2, 150\), got a batch of shape \(3, 1, 150\)"):
        embedder(torch.randn(3, 1, 150))
    with pytest.raises(ValueError, match=r"takes its 16 x 16 grid of tokens \(256\), got 100"):
        bodies["test-tiny-swin"](torch.randn(2, 100, 16))


SHRINK = [
    *("--set", "proxy.max_examples=60"),
    *("--set", "align.epochs=2"),
    *("--set", "align.samples_per_class=8"),
    *("--set", "refine.epochs=1"),
]


def test_orca_run_on_a_1d_task_with_a_vision_body(prefect_harness, tiny_vision_backbones, capsys):
    from mlflow import MlflowClient

    from cli.main import main

    backbone = tiny_vision_backbones["test-tiny-swin"]
    assert main(["run", "gunpoint", "--backbone", backbone, *SHRINK, "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["task"] == "gunpoint" and result["backbone"] == backbone
    assert set(result["states"]) == {"ingest", "proxy", "align", "refine", "evaluate"}
    assert set(result["states"].values()) <= {"Completed", "Cached"}
    assert result["metric"] == "error_rate" and 0.0 <= result["value"] <= 100.0
    assert math.isfinite(result["align_distance"]["final"])
    run = MlflowClient().get_run(result["mlflow_run_id"])
    # The proxy is the vision body's (MNIST offline), not the text corpus a 1D task gets
    # with a text body.
    assert run.data.params["proxy.dataset"] == "mnist"
