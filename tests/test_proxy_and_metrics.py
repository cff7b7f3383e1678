import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, roc_auc_score

from orca.metrics import LOSSES, METRICS
from orca.model.text_body import load_text_body
from orca.proxy.text import load_text_proxy, read_conll, sentence_label, text_proxy_features


def test_read_conll_and_sentence_labels(tmp_path):
    corpus = tmp_path / "ner.txt"
    corpus.write_text(
        "-DOCSTART- O\n\nthe\tO\nday\tB-geo\n\t\nnew\tB-person\nday\tI-person\na\tB-geo\n"
    )
    sentences = read_conll(corpus)
    assert [s.tokens for s in sentences] == [("the", "day"), ("new", "day", "a")]
    assert [sentence_label(s.tags) for s in sentences] == ["geo", "person"]
    assert sentence_label(("O", "O")) == "O"
    assert sentence_label(("B-a", "B-b")) == "a"  # tie: first seen
    bad = tmp_path / "bad.txt"
    bad.write_text("lonely\n")
    with pytest.raises(ValueError, match=r"bad\.txt:1: expected a token and a tag column"):
        read_conll(bad)


def test_packaged_wnut16_corpus_reads():
    path, sentences = load_text_proxy("wnut16")
    assert path.name == "ner.txt"
    assert len(sentences) == 2394
    assert sum(len(s.tokens) for s in sentences) == 46469


def test_proxy_features_are_mean_pooled_body_input_embeddings(tiny_bert_dir, tmp_path):
    body = load_text_body(str(tiny_bert_dir))
    corpus = tmp_path / "c.txt"
    corpus.write_text("the\tO\nday\tB-x\n\nmy\tO\nnew\tO\nday\tO\n\nto\tB-y\n")
    sentences = read_conll(corpus)
    proxy = text_proxy_features(body, sentences, max_examples=10, max_tokens=8, batch_size=2)
    assert proxy.features.shape == (3, 32) and proxy.label_names == ("O", "x", "y")
    assert proxy.labels.tolist() == [1, 0, 2]
    # Hand check for sentence 2: [CLS] my new day [SEP], no padding in a batch of its own.
    ids = body.tokenizer(["my", "new", "day"], is_split_into_words=True, return_tensors="pt")[
        "input_ids"
    ]
    with torch.no_grad():
        expected = body.input_embeddings(ids)[0].mean(dim=0).numpy()
    np.testing.assert_allclose(proxy.features[1], expected, rtol=1e-5, atol=1e-6)


def test_metrics_against_sklearn_and_hand_values():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 3.0], [0.5, 0.0]])
    y = np.array([0, 1, 0, 1])
    assert METRICS.get("error_rate").compute(logits, y) == 50.0
    assert METRICS.get("one_minus_auroc").compute(logits, y) == pytest.approx(
        1 - roc_auc_score(y, logits[:, 1] - logits[:, 0])
    )
    assert METRICS.get("one_minus_macro_f1").compute(logits, y) == pytest.approx(
        1 - f1_score(y, logits.argmax(1), average="macro")
    )
    pred, target = np.array([[3.0, 4.0]]), np.array([[0.0, 5.0]])
    # ||(3,-1)|| / ||(0,5)|| = sqrt(10)/5
    assert METRICS.get("relative_l2").compute(pred, target) == pytest.approx(np.sqrt(10) / 5)
    assert METRICS.get("nrmse").compute(pred, target) == pytest.approx(np.sqrt(10) / 5)
    loss = LOSSES.get("cross_entropy")(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))
    assert float(loss) == pytest.approx(np.log(2))
