"""SIGTERM and SIGINT stop training at the next safe point, leave a checkpoint, and the
re-run resumes: mid-epoch in refine (after an optimizer step), at an epoch's end in align."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import torch
from test_resume import _assert_same_state, _train

from orca import stopping
from orca.metrics import LOSSES
from orca.stopping import StopRequested


@pytest.fixture(autouse=True)
def no_pending_stop():
    stopping.clear()
    yield
    stopping.clear()


def signalling_loss(signum: int, at_call: int):
    """Cross-entropy that sends `signum` to this process during training call `at_call`."""
    real = LOSSES.get("cross_entropy")
    calls = []

    def loss(outputs, targets):
        if outputs.requires_grad:
            calls.append(1)
            if len(calls) == at_call:
                os.kill(os.getpid(), signum)
        return real(outputs, targets)

    return loss, calls


def train_with_loss(monkeypatch, bert_dir, checkpoints, loss):
    monkeypatch.setitem(LOSSES._items, "cross_entropy", loss)
    return _train(bert_dir, checkpoints)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_after_the_step_and_the_rerun_resumes_bit_for_bit(
    signum, tiny_bert_dir, tmp_path, monkeypatch
):
    checkpoints = tmp_path / "checkpoints"
    before = {sig: signal.getsignal(sig) for sig in stopping.STOP_SIGNALS}
    loss, calls = signalling_loss(signum, at_call=5)  # 3 batches an epoch: epoch 1, batch 2
    with pytest.raises(StopRequested) as stopped:
        train_with_loss(monkeypatch, tiny_bert_dir, checkpoints, loss)
    assert len(calls) == 5  # not one batch more
    assert stopped.value.signum == signum and stopped.value.exit_status == 128 + signum
    assert [p.name for p in checkpoints.iterdir()] == ["epoch-0001-batch-000002"]
    assert stopped.value.checkpoint == str(checkpoints / "epoch-0001-batch-000002")
    assert {sig: signal.getsignal(sig) for sig in stopping.STOP_SIGNALS} == before
    monkeypatch.undo()
    stopping.clear()

    model, resumed = _train(tiny_bert_dir, checkpoints)
    assert resumed.resumed_from_epoch == 0
    reference_model, reference = _train(tiny_bert_dir)
    assert resumed.history == reference.history
    _assert_same_state(resumed.best_state, reference.best_state)
    _assert_same_state(model.state_dict(), reference_model.state_dict())


def test_a_second_signal_stops_at_once_and_a_passed_on_one_does_not(monkeypatch):
    monkeypatch.setattr(stopping, "_REPEAT_AFTER_S", 0.2)
    with stopping.handle_stop_signals():
        os.kill(os.getpid(), signal.SIGINT)
        assert stopping.stop_requested()
        os.kill(os.getpid(), signal.SIGINT)  # at once: an engine passing it on, the same
        time.sleep(0.3)
        with pytest.raises(KeyboardInterrupt, match="second SIGINT"):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)


def test_a_stop_without_checkpoints_names_none(tiny_bert_dir, monkeypatch):
    loss, calls = signalling_loss(signal.SIGTERM, at_call=2)
    with pytest.raises(StopRequested, match="in refine epoch 1, after batch 2") as stopped:
        train_with_loss(monkeypatch, tiny_bert_dir, None, loss)
    assert stopped.value.checkpoint is None and len(calls) == 2


def test_training_in_a_worker_thread_stops_on_the_process_request(tiny_bert_dir, tmp_path):
    """Worker threads cannot install signal handlers: the command's handler sets the
    process-wide request, which the loop in the thread honours."""
    outcome = {}

    def work():
        try:
            _train(tiny_bert_dir, tmp_path / "checkpoints")
        except StopRequested as stop:
            outcome["stop"] = stop

    stopping.request_stop(signal.SIGTERM)
    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=120)
    assert outcome["stop"].where == "in refine epoch 1, after batch 1"
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["epoch-0000-batch-000001"]


def _align(bert_dir, checkpoint_dir, on_epoch=None):
    from test_training import _toy_task_data

    from orca.config.stages import AlignConfig
    from orca.data.tasks import get_task
    from orca.model import create_model
    from orca.training.align import train_embedder

    torch.manual_seed(0)
    model = create_model(get_task("gunpoint"), str(bert_dir), seed=0)
    x, y = _toy_task_data()
    generator = torch.Generator().manual_seed(1)
    source = torch.randn(60, 32, generator=generator) + 1.0
    config = AlignConfig(epochs=5, lr=1e-2, lr_milestones=(2,), samples_per_class=8)
    history = train_embedder(
        model,
        x,
        y,
        source,
        torch.arange(60) % 3,
        config,
        seed=0,
        on_epoch=on_epoch,
        checkpoint_dir=checkpoint_dir,
    )
    return model, history


def test_align_stops_after_the_epoch_and_the_rerun_continues_it(tiny_bert_dir, tmp_path):
    def signal_in_epoch_1(epoch, distance):
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(StopRequested, match="in align after epoch 2") as stopped:
        _align(tiny_bert_dir, tmp_path, signal_in_epoch_1)
    assert stopped.value.checkpoint == str(tmp_path / "align")
    stopping.clear()
    seen = []
    model, resumed = _align(tiny_bert_dir, tmp_path, lambda epoch, d: seen.append(epoch))
    assert seen == [2, 3, 4, 5]  # epochs 2-4, then the final measurement
    reference_model, reference = _align(tiny_bert_dir, None)
    assert resumed.distances == reference.distances
    _assert_same_state(model.embedder.state_dict(), reference_model.embedder.state_dict())
    # another setup does not continue that state
    from orca.checkpoint import CheckpointError
    from orca.training.align_state import AlignCheckpoint

    with pytest.raises(CheckpointError, match="different run setup"):
        AlignCheckpoint(tmp_path, {"seed": 1}).restore(None, None, None, None)


def test_a_stop_reaches_the_processes_that_share_its_stop_file(tmp_path):
    """A benchmark's workers are processes that its signal does not reach: the stop is
    also a file they share ($ORCA_STOP_FILE)."""
    import subprocess
    import sys

    stop_file = tmp_path / "stops" / "bench"
    waiter = (
        "import time\nfrom orca import stopping\n"
        "deadline = time.monotonic() + 60\n"
        "while not stopping.stop_requested():\n"
        "    assert time.monotonic() < deadline\n    time.sleep(0.05)\n"
        "print(stopping.requesting_signal())\n"
    )
    with stopping.shared_stop_file(stop_file):
        worker = subprocess.Popen([sys.executable, "-c", waiter], stdout=subprocess.PIPE)
        time.sleep(0.5)
        assert worker.poll() is None  # no stop yet
        stopping.request_stop(signal.SIGTERM)
        assert stop_file.is_file()
        out, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0 and out.decode().strip() == str(int(signal.SIGTERM))
    assert not stop_file.exists() and stopping.STOP_FILE_ENV not in os.environ


def test_a_stopped_sweep_run_is_reported_as_an_ordinary_failure():
    """Prefect's process pool drops a BaseException (its caller then waits for ever), so a
    run's stop crosses to the benchmark as RunStopped, an Exception; StopRequested itself
    pickles whole."""
    import pickle

    from tasks.sweep_runs import run_pipeline

    stop = StopRequested(signal.SIGTERM, "in refine epoch 2, after batch 1", "/ckpt")
    copy = pickle.loads(pickle.dumps(stop))
    assert (copy.signum, copy.where, copy.checkpoint, str(copy)) == (
        stop.signum,
        stop.where,
        stop.checkpoint,
        str(stop),
    )

    def stopped(*args, **kwargs):
        raise stop

    with pytest.raises(stopping.RunStopped, match="stopped by SIGTERM in refine epoch 2"):
        run_pipeline.fn(stopped, None, "parent")


def test_a_stop_is_passed_on_to_torchrun(tmp_path, monkeypatch):
    """refine on several processes runs under torchrun, which a signal to the command
    alone does not reach: the stop is passed on as SIGTERM and raised here."""
    from orca.training.torchrun import run_module

    (tmp_path / "forever_module.py").write_text("import time\nwhile True:\n    time.sleep(0.1)\n")
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    timer = threading.Timer(4.0, stopping.request_stop, args=(signal.SIGTERM,))
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(StopRequested, match="in forever_module on 1 torchrun processes"):
            run_module("forever_module", [], 1, tmp_path / "records.jsonl", threads=1)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 60
