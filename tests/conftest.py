"""Test isolation: all orca, Prefect and MLflow state goes to a fresh temporary directory.

The environment is set at import time, before any test module imports Prefect or MLflow,
so a second test run never sees the first one's cache records.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

_STATE = Path(tempfile.mkdtemp(prefix="orca-tests-"))
os.environ["ORCA_HOME"] = str(_STATE / "state")
for _var in (
    "PREFECT_API_URL",
    "MLFLOW_TRACKING_URI",
    "PREFECT_HOME",
    "PREFECT_RESULTS_LOCAL_STORAGE_PATH",
):
    os.environ.pop(_var, None)
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
os.environ["HF_HUB_OFFLINE"] = "1"

from orca.state import activate  # noqa: E402

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


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test server and database for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_STATE, ignore_errors=True)
