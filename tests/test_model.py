import pytest
import torch
from safetensors.torch import load_file, save_file

from orca.data.tasks import get_task
from orca.model import create_model
from orca.model.bodies import BodyWeightsError
from orca.model.embedders import Conv1dEmbedder, choose_stride
from orca.model.text_body import load_text_body
from orca.registry import UnknownNameError


@pytest.mark.parametrize(
    ("length", "limit", "stride"),
    [
        (150, 512, 1),
        (150, 64, 3),
        (150, 50, 3),
        (150, 49, 5),
        (1000, 512, 2),
        (8, 3, 4),
        (1460, 512, 4),
    ],
)
def test_stride_is_the_smallest_divisor_that_fits(length, limit, stride):
    assert choose_stride(length, limit) == stride
    assert length % stride == 0 and length // stride <= limit


def test_text_body_loads_from_a_local_directory(tiny_bert_dir):
    body = load_text_body(str(tiny_bert_dir))
    assert body.hidden_size == 32
    assert body.position_offset == 0 and body.max_positions == 128
    ids = body.tokenizer(["the day is new"], return_tensors="pt")["input_ids"]
    assert ids.shape[1] == 6 and (ids != body.tokenizer.unk_token_id).all()
    tokens = body.input_embeddings(ids)
    assert tokens.shape == (1, 6, 32)
    out = body(tokens)
    assert out.shape == (1, 6, 32) and torch.isfinite(out).all()


def test_mismatched_weights_are_listed(tiny_bert_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in tiny_bert_dir.iterdir():
        (broken / item.name).write_bytes(item.read_bytes())
    state = load_file(str(broken / "model.safetensors"))
    state["encoder.extra_layer.weight"] = torch.zeros(2)
    del state["encoder.layer.1.output.dense.bias"]
    save_file(state, str(broken / "model.safetensors"))
    with pytest.raises(BodyWeightsError, match=r"missing_keys: encoder.layer.1.output.dense.bias"):
        load_text_body(str(broken))


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(UnknownNameError, match=r"valid backbones: .*minilm-l6.*roberta-base"):
        load_text_body("no-such-model")


def test_packaged_minilm_body_loads_offline():
    body = load_text_body("minilm-l6")
    assert body.hidden_size == 384 and body.max_positions == 512
    assert len(body.model.encoder.layer) == 6


def test_roberta_style_positions_start_after_padding_idx():
    from transformers import RobertaConfig, RobertaModel

    from orca.model.text_body import TextBody

    config = RobertaConfig(
        vocab_size=20,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=40,
        pad_token_id=1,
    )
    body = TextBody(RobertaModel(config), "in-memory")
    assert body.position_offset == 2 and body.max_positions == 38
    embedder = Conv1dEmbedder(
        3,
        60,
        16,
        max_tokens=body.max_positions,
        norm=body.embedding_norm,
        positions=body.position_embeddings,
        position_offset=body.position_offset,
    )
    assert embedder.position_ids.tolist() == list(range(2, 2 + 30))


def test_orca_model_stages_and_copied_embedding_layers(tiny_bert_dir):
    spec = get_task("gunpoint")
    model = create_model(spec, str(tiny_bert_dir), seed=0)
    body_embeddings = model.body.model.embeddings
    # LayerNorm and position table are copies of the body's, not shared modules.
    assert torch.equal(model.embedder.norm.weight, body_embeddings.LayerNorm.weight)
    assert model.embedder.norm is not body_embeddings.LayerNorm
    assert torch.equal(model.embedder.positions.weight, body_embeddings.position_embeddings.weight)
    x = torch.randn(4, *spec.input_shape)
    tokens = model.embed(x)
    assert tokens.shape == (4, 15, 32)  # L=150, max_seq_len=16 -> stride 10 -> 15 tokens
    expected = model.embedder.norm(model.embedder.projection(x).transpose(1, 2))
    expected = expected + body_embeddings.position_embeddings.weight[:15]
    torch.testing.assert_close(tokens, expected)
    logits = model.predict(model.encode(tokens))
    assert logits.shape == (4, 2) and torch.isfinite(logits).all()
    torch.testing.assert_close(model(x), logits)
    again = create_model(spec, str(tiny_bert_dir), seed=0)
    assert torch.equal(again.embedder.projection.weight, model.embedder.projection.weight)


def test_an_orca_model_leaves_out_the_bodys_token_table(tiny_bert_dir):
    """The embedder makes the tokens, so the body's word embeddings are not part of the
    model: not in its state dict (checkpoints, saved models), and a standalone body's
    input embedding is unaffected."""
    standalone = load_text_body(str(tiny_bert_dir))
    assert "model.embeddings.word_embeddings.weight" in standalone.state_dict()
    model = create_model(get_task("gunpoint"), str(tiny_bert_dir), seed=0)
    keys = model.state_dict().keys()
    assert not any("word_embeddings" in key for key in keys)
    assert "body.model.embeddings.position_embeddings.weight" in keys
    out = model(torch.randn(2, 1, 150))
    assert out.shape == (2, 2) and torch.isfinite(out).all()
    with pytest.raises(RuntimeError, match="token table was released"):
        model.body.input_embeddings(torch.zeros(1, 4, dtype=torch.long))
    tokens = standalone.input_embeddings(torch.zeros(1, 4, dtype=torch.long))
    assert tokens.shape == (1, 4, standalone.hidden_size)


@pytest.mark.parametrize("module", ["orca.model.embedders", "orca.model.bodies"])
def test_importing_one_model_module_registers_every_body_and_embedder(module):
    """Registration is done by orca/model/__init__.py, which Python runs before any of the
    package's modules: whichever module a process imports first, the registries are full."""
    import json
    import subprocess
    import sys

    program = (
        f"import json, {module}\n"
        "from orca.model.bodies import BODIES, BODY_LOADERS\n"
        "from orca.model.embedders import EMBEDDERS\n"
        "print(json.dumps([BODY_LOADERS.names(), EMBEDDERS.names(), BODIES.names()]))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    loaders, embedders, bodies = json.loads(done.stdout)
    assert loaders == ["text", "vision"]
    assert embedders == ["text/1d", "text/2d", "text/tabular", "vision/1d", "vision/2d"]
    assert {"minilm-l6", "swin-base"} <= set(bodies)
