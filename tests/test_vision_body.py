"""timm vision bodies: local weight files with key checks, the body run untouched after its
patch embedding, and the 2D embedder initialised from the pretrained patch projection."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from orca.config.stages import RefineConfig
from orca.data.tasks import TaskSpec
from orca.metrics import LOSSES, METRICS
from orca.model import create_model
from orca.model.bodies import BodyWeightsError, load_body
from orca.model.vision_embedder import tile_input_channels
from orca.training.finetune import fine_tune
from orca.training.refine_modes import apply_refine_mode


def image_task(shape=(3, 32, 32), output="classification", n_out=3):
    return TaskSpec(
        name="images",
        description="",
        modality="2d",
        input_shape=shape,
        output=output,
        num_outputs=n_out,
        loss="cross_entropy",
        metric="error_rate",
        loader=lambda: None,
    )


@pytest.mark.parametrize("name", ["test-tiny-vit", "test-tiny-swin"])
def test_local_weights_load_exactly(tiny_vision_backbones, name):
    backbone = tiny_vision_backbones[name]
    saved = load_file(backbone.split("@", 1)[1])
    body = load_body(backbone)
    state = body.model.state_dict()
    assert set(saved) <= set(state)
    assert all(torch.equal(state[k], v) for k, v in saved.items())
    scratch = load_body(backbone, pretrained=False)
    assert any(not torch.equal(scratch.model.state_dict()[k], v) for k, v in saved.items())


@pytest.mark.parametrize("name", ["test-tiny-vit", "test-tiny-swin"])
def test_body_runs_exactly_what_timm_runs_after_the_patch_embedding(tiny_vision_backbones, name):
    model = create_model(image_task(), tiny_vision_backbones[name], seed=0).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ours = model.encode(model.embed(x))
        reference = model.body.model.forward_features(x)  # timm's own forward
    if name == "test-tiny-vit":
        reference = reference[:, model.body.model.num_prefix_tokens :]
    else:
        reference = reference.flatten(1, 2)
    torch.testing.assert_close(ours, reference)
    # The embedder holds copies: training it never touches the body's patch embedding.
    assert model.embedder.projection is not model.body.patch_projection


def test_broken_weight_files_list_every_mismatching_key(tiny_vision_backbones, tmp_path):
    state = load_file(tiny_vision_backbones["test-tiny-vit"].split("@", 1)[1])
    del state["blocks.1.mlp.fc2.bias"]
    state["blocks.0.attn.qkv.weight"] = torch.zeros(3, 3)
    state["blocks.9.extra"] = torch.zeros(1)
    state["head.weight"] = torch.zeros(10, 32)  # a classifier: ignored, ORCA replaces it
    path = tmp_path / "broken.safetensors"
    save_file(state, str(path))
    with pytest.raises(BodyWeightsError) as caught:
        load_body(f"test-tiny-vit@{path}")
    message = str(caught.value)
    assert "missing_keys: blocks.1.mlp.fc2.bias" in message
    assert "unexpected_keys: blocks.9.extra" in message
    assert "blocks.0.attn.qkv.weight (file (3, 3), model (96, 32))" in message
    assert "head.weight" not in message


def test_torch_pickle_checkpoints_with_a_state_dict_entry_load(tiny_vision_backbones, tmp_path):
    saved = load_file(tiny_vision_backbones["test-tiny-swin"].split("@", 1)[1])
    path = tmp_path / "swin.pth"
    torch.save({"state_dict": saved, "epoch": 3}, path)
    body = load_body(f"test-tiny-swin@{path}")
    assert torch.equal(body.model.norm.weight, saved["norm.weight"])


def test_missing_weight_file_and_unreachable_hub_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"weights file .*nope.safetensors does not exist"):
        load_body(f"test-tiny-vit@{tmp_path / 'nope.safetensors'}")
    with pytest.raises(BodyWeightsError, match=r"Offline, pass test-tiny-swin@/path/to/weights"):
        load_body("test-tiny-swin")  # HF_HUB_OFFLINE=1 in the tests


def test_patch_projection_is_tiled_over_input_channels():
    weight = torch.randn(8, 3, 4, 4)
    assert torch.equal(tile_input_channels(weight, 3), weight)
    torch.testing.assert_close(tile_input_channels(weight, 1), weight.sum(1, keepdim=True))
    five = tile_input_channels(weight, 5)
    assert five.shape == (8, 5, 4, 4)
    torch.testing.assert_close(five[:, 3], weight[:, 0] * 3 / 5)
    # A constant image gives the same response with 6 channels as with 3.
    six = tile_input_channels(weight, 6)
    torch.testing.assert_close(six.sum(1), weight.sum(1))


def test_embedder_starts_from_the_pretrained_patch_embedding(tiny_vision_backbones):
    model = create_model(image_task(shape=(1, 28, 28)), tiny_vision_backbones["test-tiny-vit"])
    body_weight = model.body.patch_projection.weight
    torch.testing.assert_close(model.embedder.projection.weight, body_weight.sum(1, keepdim=True))
    torch.testing.assert_close(model.embedder.positions, model.body.patch_positions)
    grey = torch.rand(2, 1, 28, 28)
    rgb = torch.nn.functional.interpolate(grey, size=(32, 32), mode="bilinear").repeat(1, 3, 1, 1)
    torch.testing.assert_close(model.embed(grey), model.body.input_embeddings(rgb))


@pytest.mark.parametrize("mode", ["fpt", "layernorm"])
def test_refine_modes_on_a_swin_body_train_exactly_their_parameters(tiny_vision_backbones, mode):
    model = create_model(image_task(), tiny_vision_backbones["test-tiny-swin"], seed=0)
    apply_refine_mode(model, mode)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    x, y = torch.randn(16, 3, 32, 32), torch.arange(16) % 3
    config = RefineConfig(epochs=1, batch_size=8, lr=1e-2, warmup_fraction=0.0, clip_norm=None)
    fine_tune(
        model,
        (x, y),
        (x[:4], y[:4]),
        config,
        LOSSES.get("cross_entropy"),
        METRICS.get("error_rate"),
    )
    changed = {k for k, v in model.named_parameters() if not torch.equal(v, before[k])}
    # The body's own patch embedding is bypassed (the embedder replaces it): never trained.
    unused = {k for k in before if k.startswith("body.model.patch_embed.")}
    norms = {k for k in before if ".norm" in k} - unused
    body_norms = {k for k in norms if k.startswith("body.")}
    predictor = {k for k in before if k.startswith("predictor.")}
    embedder = {k for k in before if k.startswith("embedder.")}
    assert body_norms and {k for k in body_norms if "downsample" in k}
    expected = {
        "fpt": embedder | predictor | body_norms,
        "layernorm": predictor | norms,
    }[mode]
    assert changed == expected
