"""Test isolation: all orca, Prefect and MLflow state goes to a fresh temporary directory.

The environment is set at import time, before any test module imports Prefect or MLflow,
so a second test run never sees the first one's cache records.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch

_STATE = Path(tempfile.mkdtemp(prefix="orca-tests-"))
os.environ["ORCA_HOME"] = str(_STATE / "state")
for _var in (
    "PREFECT_API_URL",
    "MLFLOW_TRACKING_URI",
    "PREFECT_HOME",
    "PREFECT_RESULTS_LOCAL_STORAGE_PATH",
    "ORCA_DATABASE_URL",  # a developer's team database is not the tests' (test_team_postgres)
    "HF_HOME",  # the state directory's huggingface/ (runtime/state.py)
):
    os.environ.pop(_var, None)
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
# One Prefect server per test process, started in it when first needed (runtime/prefect_api.py):
# tests reach Prefect both through `orca` commands and by calling flows directly.
os.environ["ORCA_PREFECT_API"] = "inline"
os.environ["HF_HUB_OFFLINE"] = "1"
# Local proxy copies (CoNLL-2003, CIFAR-10) on a developer's machine must not change tests.
os.environ["ORCA_DATA_DIR"] = str(_STATE / "data")
os.environ["HF_DATASETS_CACHE"] = str(_STATE / "hf-datasets")
for _var in ("ORCA_CONLL2003_DIR", "ORCA_CIFAR10_DIR"):
    os.environ.pop(_var, None)

from runtime.state import activate  # noqa: E402

activate()
torch.set_num_threads(2)

# Words from the WNUT-16 proxy corpus, so the tiny tokenizer produces real ids.
TINY_VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "the",
    "a",
    "to",
    "i",
    "is",
    "in",
    "of",
    "and",
    "for",
    "on",
    "you",
    "it",
    "my",
    "at",
    "new",
    "day",
    "##s",
    ".",
]


def write_tiny_bert(
    directory: Path, *, hidden: int = 32, layers: int = 2, positions: int = 128, seed: int = 0
) -> Path:
    """Save a 2-layer, D=32 BERT with a WordPiece tokenizer as a local model directory."""
    from transformers import BertConfig, BertModel, BertTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(TINY_VOCAB),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=positions,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(directory)
    BertTokenizer(vocab={token: i for i, token in enumerate(TINY_VOCAB)}).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def state_root() -> Path:
    return Path(os.environ["ORCA_HOME"])


def cached_stage_flow(stage_name: str) -> tuple[Any, list[int]]:
    """A flow running one cached stage-like task (a stage's cache policy, the configured
    result storage): returns (run, calls); run(value) -> (state name, result), and calls
    lists the values the task computed."""
    from prefect import flow, task

    from orca.atomic import atomic_directory
    from tasks import storage
    from tasks.caching import stage_cache_policy, stage_dir

    calls: list[int] = []

    @task(
        cache_policy=stage_cache_policy(stage_name),
        result_storage=storage.result_storage(),
        persist_result=True,
        result_serializer="json",
    )
    def stage(value: int) -> dict:
        calls.append(value)
        with atomic_directory(stage_dir(stage_name, {"value": value}), manifest=True) as out:
            (out / "double.json").write_text(str(2 * value))
        return {"double": 2 * value}

    @flow
    def run(value: int) -> tuple[str, dict]:
        storage.ensure_result_storage()
        state = stage(value, return_state=True)
        return state.name, state.result()

    return run, calls


def set_args(overrides: dict[str, dict[str, Any]]) -> list[str]:
    """`orca ... --set` arguments for config overrides ({"refine": {"epochs": 1}})."""
    return [f"--set={section}.{name}={value}" for section, fields in overrides.items()
            for name, value in fields.items()]  # fmt: skip


def state_env(state: Path, **extra: str) -> dict[str, str]:
    """os.environ for a subprocess whose state lives under `state`.

    The variables this test process derived from its own state directory (PREFECT_HOME,
    the result storage path, MLflow's URI, ...) are dropped, so the child derives its own;
    `extra` is added last."""
    from runtime.state import StateDir

    env = dict(os.environ)
    for key, value in StateDir.from_env().environment().items():
        if env.get(key) == value:
            env.pop(key)
    return {**env, "ORCA_HOME": str(state), **extra}


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def write_tiny_text_model(directory: Path, family: str, *, hidden: int = 32) -> Path:
    """Save a 2-layer, D=32 RoBERTa or MPNet encoder (weights and config only)."""
    from transformers import MPNetConfig, MPNetModel, RobertaConfig, RobertaModel

    classes = {"roberta": (RobertaConfig, RobertaModel), "mpnet": (MPNetConfig, MPNetModel)}
    config_class, model_class = classes[family]
    torch.manual_seed(0)
    config = config_class(
        vocab_size=40,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=130,
        pad_token_id=1,
    )
    model_class(config, add_pooling_layer=False).save_pretrained(directory)
    return directory


# Tiny timm vision bodies, registered like the real ones (random weights; 32x32 images).
TINY_VISION_BODIES = {
    "test-tiny-vit": (
        "vit_tiny_patch16_224",
        {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2},
    ),
    "test-tiny-swin": (
        "swin_tiny_patch4_window7_224",
        {
            "img_size": 32,
            "patch_size": 2,
            "window_size": 4,
            "embed_dim": 16,
            "depths": (1, 1),
            "num_heads": (1, 2),
        },
    ),
}


def _register_tiny_vision_bodies() -> None:
    from orca.model.bodies import BODIES, BodySpec

    for name, (arch, options) in TINY_VISION_BODIES.items():
        if name not in BODIES:
            BODIES.register(
                name, BodySpec(name, "vision", lambda arch=arch: arch, "test body", options)
            )


_register_tiny_vision_bodies()


@pytest.fixture(scope="session")
def tiny_text_dirs(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> dict:
    """Local directories of tiny BERT, RoBERTa and MPNet encoders, by family."""
    return {
        "bert": tiny_bert_dir,
        "roberta": write_tiny_text_model(tmp_path_factory.mktemp("tiny-roberta"), "roberta"),
        "mpnet": write_tiny_text_model(tmp_path_factory.mktemp("tiny-mpnet"), "mpnet"),
    }


@pytest.fixture(scope="session")
def tiny_vision_backbones(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Backbone strings NAME@FILE for the tiny vision bodies, weights saved as safetensors."""
    from safetensors.torch import save_file

    from orca.model.bodies import load_body

    directory = tmp_path_factory.mktemp("tiny-vision")
    backbones = {}
    for name in TINY_VISION_BODIES:
        torch.manual_seed(0)
        body = load_body(name, pretrained=False)
        path = directory / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in body.model.state_dict().items()}, str(path))
        backbones[name] = f"{name}@{path}"
    return backbones


@pytest.fixture(scope="session")
def backbones(tiny_text_dirs, tiny_vision_backbones) -> dict[str, str]:
    """Every tiny test body's backbone string, by family name."""
    return {**{k: str(v) for k, v in tiny_text_dirs.items()}, **tiny_vision_backbones}


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test server and database for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_STATE, ignore_errors=True)
