"""Stage: featurise the labelled proxy dataset with the pretrained body's own input embedding.

The body runs on the run's device (orca.devices); the features come back to the CPU as
float32 and the reference records where the body was.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from orca.atomic import atomic_directory
from orca.config.stages import ProxyConfig
from orca.data.arrow_io import write_split
from orca.devices import device_of, torch_device
from orca.model.bodies import load_body
from orca.proxy.datasets import resolve_proxy_name
from orca.proxy.text import ProxyFeatures, load_text_proxy, text_proxy_features
from orca.proxy.vision import load_vision_proxy, vision_proxy_features
from orca.registry import Registry

# body kind -> featurise(body, dataset name, config, seed, progress) -> (source, features)
FEATURISERS: Registry[Callable[..., tuple[Path, ProxyFeatures]]] = Registry("proxy featuriser")


@FEATURISERS.register("text")
def _text(body, name: str, config: ProxyConfig, seed: int, progress) -> tuple[Path, ProxyFeatures]:
    source, sentences = load_text_proxy(name)
    features = text_proxy_features(
        body,
        sentences,
        max_examples=config.max_examples,
        max_tokens=config.max_tokens,
        batch_size=config.batch_size,
        seed=seed,
        progress=progress,
    )
    return source, features


@FEATURISERS.register("vision")
def _vision(
    body, name: str, config: ProxyConfig, seed: int, progress
) -> tuple[Path, ProxyFeatures]:
    source, images = load_vision_proxy(name)
    features = vision_proxy_features(
        body,
        images,
        max_examples=config.max_examples,
        batch_size=config.batch_size,
        seed=seed,
        progress=progress,
    )
    return source, features


def extract_proxy(
    backbone: str,
    config: ProxyConfig,
    out_dir: str | Path,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Featurise the proxy dataset `config` names with `backbone`'s input embedding, on
    `device` (a name in orca.devices.DEVICES), into `out_dir`/proxy.arrow."""
    body = load_body(backbone).to(torch_device(device))
    dataset = resolve_proxy_name(config.dataset, body.kind)
    corpus, proxy = FEATURISERS.get(body.kind)(body, dataset, config, seed, progress)
    out_dir = Path(out_dir)
    with atomic_directory(out_dir, manifest=True) as tmp:
        fingerprint = write_split(
            tmp / "proxy.arrow",
            proxy.features,
            proxy.labels,
            {
                "proxy": dataset,
                "source": str(corpus),
                "backbone": backbone,
                "label_names": list(proxy.label_names),
            },
        )
    return {
        "path": str(out_dir / "proxy.arrow"),
        "dataset": dataset,
        "rows": len(proxy.labels),
        "dim": int(proxy.features.shape[1]),
        "num_labels": len(proxy.label_names),
        "device": device_of(body),
        "fingerprint": fingerprint,
    }
