"""Per-epoch checkpoints of fine-tuning: a run killed partway resumes to the same weights.

Checkpoints are written at the end of each epoch, before `on_epoch` is called for it, so a
process killed inside `on_epoch` after epoch 1 resumes at epoch 2.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from orca.checkpoint import CheckpointError, save_state
from orca.config.stages import RefineConfig
from orca.data.arrow_io import write_split
from orca.data.tasks import TaskSpec, get_task
from orca.metrics import LOSSES, METRICS
from orca.model import create_model
from orca.stages.refine import checkpoints_for, refine
from orca.training.finetune import fine_tune
from orca.training.refine_modes import apply_refine_mode

CONFIG = RefineConfig(
    epochs=4, batch_size=8, lr=3e-3, warmup_fraction=0.25, checkpoint_interval_s=0
)
REPO = Path(__file__).resolve().parents[1]


class Interrupt(Exception):
    """Raised from on_epoch to stop a run in-process (the kill test uses SIGKILL instead)."""


def _spec() -> TaskSpec:
    return TaskSpec(
        name="t",
        description="",
        modality="1d",
        input_shape=(1, 32),
        output="classification",
        num_outputs=2,
        loss="cross_entropy",
        metric="error_rate",
        loader=lambda: None,
        max_seq_len=8,
    )


def _data():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(36, 1, 32, generator=generator)
    y = torch.arange(36) % 2
    x[y == 1] += 0.5
    return (x[:24], y[:24]), (x[24:], y[24:])


def _train(bert_dir, checkpoint_dir=None, *, config=CONFIG, seed=0, on_epoch=None, mode="full"):
    """One fine-tuning run from a freshly built model; the same call in any process starts
    from the same weights and global RNG state."""
    torch.manual_seed(seed)
    model = create_model(_spec(), str(bert_dir), seed=0)
    apply_refine_mode(model, mode)
    train, val = _data()
    result = fine_tune(
        model,
        train,
        val,
        config,
        LOSSES.get("cross_entropy"),
        METRICS.get("error_rate"),
        seed=seed,
        on_epoch=on_epoch,
        checkpoint_dir=checkpoint_dir,
    )
    return model, result


def _stop_after(epoch):
    def on_epoch(record):
        if record.epoch == epoch:
            raise Interrupt

    return on_epoch


def _assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture
def one_thread():
    """Same thread count as the subprocess, so CPU kernels reduce in the same order."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


KILLED_RUN = """
import os, signal, sys
import torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
import test_resume

def die(record):
    if record.epoch == 1:  # the checkpoint of epoch 1 is already on disk
        os.kill(os.getpid(), signal.SIGKILL)

test_resume._train({bert!r}, {checkpoints!r}, on_epoch=die)
raise SystemExit("not killed")
"""


def test_killed_run_resumes_to_the_same_final_weights(tiny_bert_dir, tmp_path, one_thread):
    checkpoints = tmp_path / "checkpoints"
    script = KILLED_RUN.format(
        tests=str(REPO / "tests"), bert=str(tiny_bert_dir), checkpoints=str(checkpoints)
    )
    killed = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=dict(os.environ), capture_output=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch-0001"]
    saved = checkpoints / "epoch-0001"
    assert sorted(p.name for p in saved.iterdir()) == [
        "best.safetensors",
        "manifest.json",
        "model.safetensors",
        "trainer.pt",
    ]
    # Debris of a save that died mid-write: an epoch directory without its manifest and a
    # temporary directory. Both are skipped; epoch 1 is what is resumed.
    (checkpoints / "epoch-0002").mkdir()
    (checkpoints / "epoch-0002" / "model.safetensors").write_bytes(b"\x00" * 10)
    (checkpoints / ".epoch-0002.tmp-deadbeef").mkdir()

    seen = []
    resumed_model, resumed = _train(tiny_bert_dir, checkpoints, on_epoch=seen.append)
    assert resumed.resumed_from_epoch == 1
    assert [record.epoch for record in seen] == [2, 3]
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch-0003"]

    model, reference = _train(tiny_bert_dir)
    assert reference.resumed_from_epoch is None
    assert resumed.history == reference.history
    assert (resumed.best_epoch, resumed.best_val_metric) == (
        reference.best_epoch,
        reference.best_val_metric,
    )
    _assert_same_state(resumed.best_state, reference.best_state)
    _assert_same_state(resumed_model.state_dict(), model.state_dict())
    # A run whose last epoch is checkpointed (it died after training) trains no further.
    again_model, again = _train(tiny_bert_dir, checkpoints, on_epoch=seen.append)
    assert again.resumed_from_epoch == 3 and again.history == reference.history
    assert len(seen) == 2
    _assert_same_state(again_model.state_dict(), model.state_dict())
    # Training moved the weights, so equality is not trivial.
    untrained = create_model(_spec(), str(tiny_bert_dir), seed=0).state_dict()
    key = "body.model.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(model.state_dict()[key], untrained[key])


@pytest.fixture(scope="module")
def after_epoch_0(tiny_bert_dir, tmp_path_factory):
    """A checkpoint directory of a CONFIG run stopped after epoch 0; tests work on copies."""
    checkpoints = tmp_path_factory.mktemp("after-epoch-0") / "checkpoints"
    with pytest.raises(Interrupt):
        _train(tiny_bert_dir, checkpoints, on_epoch=_stop_after(0))
    return checkpoints


def test_a_checkpoint_from_another_setup_is_rejected(tiny_bert_dir, tmp_path, after_epoch_0):
    checkpoints = shutil.copytree(after_epoch_0, tmp_path / "checkpoints")
    cases = [
        ({"config": CONFIG.replace(epochs=5)}, "config.epochs: checkpoint 4, now 5"),
        ({"config": CONFIG.replace(batch_size=4)}, "config.batch_size: checkpoint 8, now 4"),
        ({"seed": 1}, "seed: checkpoint 0, now 1"),
        ({"mode": "linear_probe"}, "trainable parameters differ"),
    ]
    for changes, message in cases:
        with pytest.raises(CheckpointError, match="different run setup") as error:
            _train(tiny_bert_dir, checkpoints, **changes)
        assert message in str(error.value)
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch-0000"]  # left as it was


def test_a_checkpoint_without_manifest_is_ignored(tiny_bert_dir, tmp_path, after_epoch_0):
    checkpoints = shutil.copytree(after_epoch_0, tmp_path / "checkpoints")
    (checkpoints / "epoch-0000" / "manifest.json").unlink()
    seen = []

    def stop_after_0(record):
        seen.append(record.epoch)
        raise Interrupt

    with pytest.raises(Interrupt):
        _train(tiny_bert_dir, checkpoints, on_epoch=stop_after_0)
    assert seen == [0]  # started over rather than resumed
    assert (checkpoints / "epoch-0000" / "manifest.json").is_file()  # and replaced it


@pytest.mark.parametrize("damaged", ["trainer.pt", "model.safetensors", "best.safetensors"])
def test_a_damaged_complete_checkpoint_raises(tiny_bert_dir, tmp_path, after_epoch_0, damaged):
    checkpoints = shutil.copytree(after_epoch_0, tmp_path / "checkpoints")
    path = checkpoints / "epoch-0000" / damaged
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=f"{damaged}: (unreadable|not a readable)"):
        _train(tiny_bert_dir, checkpoints)


def _stage_inputs(tmp_path, bert_dir):
    spec = get_task("gunpoint")
    rng = np.random.default_rng(0)
    splits = {}
    for name, rows in (("train", 8), ("validation", 4)):
        x = rng.standard_normal((rows, *spec.input_shape)).astype(np.float32)
        path = tmp_path / f"{name}.arrow"
        write_split(path, x, np.arange(rows) % 2, {})
        splits[name] = {"path": str(path)}
    embedder = tmp_path / "embedder.safetensors"
    save_state(embedder, create_model(spec, str(bert_dir), seed=0).embedder.state_dict())
    return {"splits": splits}, {"path": str(embedder)}


def test_refine_stage_resumes_a_failed_attempt_and_cleans_up(tiny_bert_dir, tmp_path):
    dataset, embedder = _stage_inputs(tmp_path, tiny_bert_dir)
    out_dir = tmp_path / "refine-out"
    config = RefineConfig(epochs=2, batch_size=8, lr=1e-4, checkpoint_interval_s=0)
    args = ("gunpoint", str(tiny_bert_dir), dataset, embedder, config, out_dir, 0)
    with pytest.raises(Interrupt):
        refine(*args, on_epoch=_stop_after(0))
    assert not out_dir.exists()
    assert (checkpoints_for(out_dir) / "epoch-0000" / "manifest.json").is_file()
    reference = refine(*args, on_epoch=_stop_after(0))  # epoch 0 is done: not called again
    assert reference["resumed_from_epoch"] == 0
    assert [record["epoch"] for record in reference["history"]] == [0, 1]
    assert Path(reference["path"]).is_file()
    assert not checkpoints_for(out_dir).exists()


def test_checkpoints_wait_for_the_interval_and_any_interval_resumes(tiny_bert_dir, tmp_path):
    """With a long interval no epoch is written; a checkpoint written with one interval is
    continued under another (how often to save is not part of the run's setup)."""
    directory = tmp_path / "ckpt"
    _train(tiny_bert_dir, directory, config=CONFIG.replace(checkpoint_interval_s=3600))
    assert not directory.exists() or not any(directory.iterdir())
    with pytest.raises(Interrupt):
        _train(tiny_bert_dir, directory, on_epoch=_stop_after(1))
    _, resumed = _train(tiny_bert_dir, directory, config=CONFIG.replace(checkpoint_interval_s=5))
    assert resumed.resumed_from_epoch == 1
