"""Stage: featurise the labelled proxy dataset with the pretrained body's own input embedding."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from orca.atomic import atomic_directory
from orca.config import ProxyConfig
from orca.data.arrow_io import write_split
from orca.model.text_body import load_text_body
from orca.proxy.text import TEXT_PROXIES, read_conll, text_proxy_features


def extract_proxy(
    backbone: str,
    config: ProxyConfig,
    out_dir: str | Path,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    corpus = TEXT_PROXIES.get(config.dataset)()
    sentences = read_conll(corpus)
    body = load_text_body(backbone)
    proxy = text_proxy_features(
        body,
        sentences,
        max_examples=config.max_examples,
        max_tokens=config.max_tokens,
        batch_size=config.batch_size,
        seed=seed,
        progress=progress,
    )
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp:
        fingerprint = write_split(
            tmp / "proxy.arrow",
            proxy.features,
            proxy.labels,
            {
                "proxy": config.dataset,
                "source": str(corpus),
                "backbone": backbone,
                "label_names": list(proxy.label_names),
            },
        )
    return {
        "path": str(out_dir / "proxy.arrow"),
        "rows": len(proxy.labels),
        "dim": int(proxy.features.shape[1]),
        "num_labels": len(proxy.label_names),
        "fingerprint": fingerprint,
    }
