"""Proxy datasets: the paper's (CoNLL-2003, CIFAR-10) when a local copy exists, else the
packaged ones (WNUT-16, MNIST); vision proxies through the body's own patch embedding."""

import json
import pickle

import numpy as np
import pyarrow as pa
import pytest
import torch

from orca.config.pipeline import PipelineConfig
from orca.config.stages import ProxyConfig
from orca.model.bodies import load_body
from orca.proxy.datasets import resolve_proxy_name
from orca.proxy.text import load_text_proxy
from orca.proxy.vision import load_vision_proxy, prepare_images, vision_proxy_features
from orca.stages.proxy import extract_proxy


def test_packaged_defaults_when_no_local_copies_exist():
    assert resolve_proxy_name("auto", "text") == "wnut16"
    assert resolve_proxy_name("auto", "vision") == "mnist"
    _, digits = load_vision_proxy("mnist")
    assert digits.images.shape == (5000, 1, 28, 28) and digits.images.max() <= 1.0
    assert sorted(np.unique(digits.labels)) == list(range(10))


def test_published_conll2003_files_are_preferred(tmp_path, monkeypatch):
    (tmp_path / "train.txt").write_text(
        "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n"
        "German JJ B-NP B-MISC\n\nPeter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n"
    )
    monkeypatch.setenv("ORCA_CONLL2003_DIR", str(tmp_path))
    assert resolve_proxy_name("auto", "text") == "conll2003"
    path, sentences = load_text_proxy("conll2003")
    assert path == tmp_path / "train.txt"
    assert [s.tags for s in sentences] == [("B-ORG", "O", "B-MISC"), ("B-PER", "I-PER")]


def test_conll2003_from_a_hugging_face_datasets_cache(tmp_path, monkeypatch):
    directory = tmp_path / "conll2003" / "conll2003" / "1.0.0" / "abc123"
    directory.mkdir(parents=True)
    table = pa.table(
        {
            "tokens": [["EU", "rejects", "German"], ["Peter", "Blackburn"]],
            "ner_tags": [[3, 0, 7], [1, 2]],
        }
    )
    path = directory / "conll2003-train.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    names = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    info = {"features": {"ner_tags": {"feature": {"names": names}}}}
    (directory / "dataset_info.json").write_text(json.dumps(info))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path))
    _, sentences = load_text_proxy("conll2003")
    assert sentences[0].tokens == ("EU", "rejects", "German")
    assert [s.tags for s in sentences] == [("B-ORG", "O", "B-MISC"), ("B-PER", "I-PER")]


def _write_cifar_batch(path, n, seed):
    rng = np.random.default_rng(seed)
    batch = {
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"labels": list(rng.integers(0, 10, size=n)),
    }
    path.write_bytes(pickle.dumps(batch))
    return batch


def test_local_cifar10_batches_are_preferred_and_read(tmp_path, monkeypatch):
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    first = _write_cifar_batch(batches / "data_batch_1", 6, 0)
    _write_cifar_batch(batches / "data_batch_2", 4, 1)
    monkeypatch.setenv("ORCA_DATA_DIR", str(tmp_path))
    (tmp_path / "cifar10").symlink_to(batches)
    assert resolve_proxy_name("auto", "vision") == "cifar10"
    _, data = load_vision_proxy("cifar10")
    assert data.images.shape == (10, 3, 32, 32) and data.labels.shape == (10,)
    expected = first[b"data"][0].reshape(3, 32, 32) / 255.0
    np.testing.assert_allclose(data.images[0], expected, rtol=1e-6)
    assert data.label_names[0] == "airplane"


def test_a_data_file_that_would_run_code_is_refused(tmp_path, monkeypatch):
    batches = tmp_path / "cifar10"
    batches.mkdir()
    (batches / "data_batch_1").write_bytes(pickle.dumps({b"data": print}))
    monkeypatch.setenv("ORCA_DATA_DIR", str(tmp_path))
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load builtins.print"):
        load_vision_proxy("cifar10")


def test_a_proxy_of_the_wrong_kind_is_refused(tiny_bert_dir, tiny_vision_backbones):
    with pytest.raises(ValueError, match=r"'mnist' is a vision dataset but the body is a text"):
        PipelineConfig.for_task(
            "gunpoint", backbone=str(tiny_bert_dir), overrides={"proxy": {"dataset": "mnist"}}
        )
    with pytest.raises(ValueError, match=r"a vision body, which takes no 'tabular' input"):
        PipelineConfig.for_task("breast-cancer", backbone=tiny_vision_backbones["test-tiny-vit"])
    with pytest.raises(
        ValueError,
        match=r"proxy.dataset='imagenet' is not a valid choice; expected one of: 'auto', .*'mnist'",
    ):
        ProxyConfig(dataset="imagenet")


def test_vision_proxy_features_are_the_bodys_pooled_patch_embeddings(tiny_vision_backbones):
    body = load_body(tiny_vision_backbones["test-tiny-vit"])
    _, digits = load_vision_proxy("mnist")
    proxy = vision_proxy_features(body, digits, max_examples=40, batch_size=16, seed=0)
    assert proxy.features.shape == (40, 32) and proxy.labels.shape == (40,)
    keep = np.sort(np.random.default_rng(0).choice(5000, size=40, replace=False))
    np.testing.assert_array_equal(proxy.labels, digits.labels[keep])
    with torch.no_grad():
        images = prepare_images(body, torch.from_numpy(digits.images[keep[:3]]))
        assert images.shape == (3, 3, 32, 32)
        manual = body.input_embeddings(images).mean(dim=1)
    np.testing.assert_allclose(proxy.features[:3], manual.numpy(), rtol=1e-5, atol=1e-6)


def test_proxy_stage_for_a_vision_body(tiny_vision_backbones, tmp_path):
    from orca.data.arrow_io import read_split

    backbone = tiny_vision_backbones["test-tiny-swin"]
    out = extract_proxy(backbone, ProxyConfig(max_examples=30), tmp_path / "proxy")
    assert out["dataset"] == "mnist" and out["rows"] == 30 and out["dim"] == 16
    split = read_split(out["path"])
    assert split.x.shape == (30, 16) and np.isfinite(split.x).all()
