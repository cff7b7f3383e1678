"""Throughput of the refine loop (orca.training.finetune.fine_tune) against a bare PyTorch loop.

Both loops train the same model (a fresh copy with identical initial weights) on the same
synthetic batches of the task's input shape: the same AdamW, the same LambdaLR schedule
(orca.training.optim.warmup_then_decay), the same per-epoch permutation from a seeded
torch.Generator, the same autocast context and gradient clipping (RefineConfig defaults),
and the same validation pass at the end of every epoch. The bare loop does nothing else;
fine_tune also tracks the training loss, keeps the best validation state and, in the
"refine+ckpt" row (when fine_tune accepts `checkpoint_dir`), writes a checkpoint per epoch.

Each loop is warmed up with one short untimed epoch, then the loops run interleaved: every
repeat runs each loop once, in an order from orders(), a Williams design (over each block of
as many repeats as loops, each loop runs once in each position; over two blocks, each
follows each other equally often), so neither run position nor drifting load favours a
loop. Repeats are rounded up to a whole block. Samples/s counts training samples over the
training steps alone ("train") and over whole epochs including validation and whatever
fine_tune does between epochs ("epoch"), median over repeats. Ratios are medians of the
per-repeat ratios to the bare loop of the same repeat, by wall clock (the target's figure)
and by process CPU time (blind to waiting on the disk or for a core; on shared cores it is
disturbed too); the per-repeat ratios and the ratio of the fastest runs are printed as well.
The global torch RNG is seeded identically before every run, so dropout masks agree and the
loops should end on the same weights; the script prints the largest parameter difference.
Target: refine/bare >= 0.95. On a shared machine pass --threads 1: more torch threads than
idle cores makes every loop many times slower and the ratios mostly noise (the script prints
the load average before and after).

    .venv/bin/python benchmarks/bench_refine_throughput.py [--quick] [--backbone NAME|DIR]
        [--task gunpoint] [--samples 256] [--batch-size 16] [--epochs 2] [--repeats 6]
        [--threads N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import copy
import gc
import inspect
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from orca.config.stages import RefineConfig
from orca.data.tasks import TaskSpec, get_task
from orca.metrics import LOSSES, METRICS, Metric
from orca.model.orca_model import create_model
from orca.training.finetune import fine_tune
from orca.training.optim import warmup_then_decay

REFINE, CHECKPOINTED, BARE = "refine", "refine+ckpt", "bare"


@dataclass
class Clock:
    """Epoch timeline of one run. A forward pre-hook on the model notes the first forward
    in eval mode after training forwards: there the training part of an epoch ends."""

    device: torch.device
    start: float = 0.0
    cpu_start: float = 0.0
    cpu_end: float = 0.0
    validation_starts: list[float] = field(default_factory=list)
    epoch_ends: list[float] = field(default_factory=list)
    training: bool = False

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def begin(self) -> None:
        self.sync()
        self.cpu_start = time.process_time()
        self.start = time.perf_counter()

    def end_epoch(self) -> None:
        self.sync()
        self.epoch_ends.append(time.perf_counter())
        self.cpu_end = time.process_time()

    def hook(self, module: torch.nn.Module, args: tuple) -> None:
        if module.training:
            self.training = True
        elif self.training:
            self.training = False
            self.sync()
            self.validation_starts.append(time.perf_counter())

    def train_seconds(self) -> float:
        starts = [self.start, *self.epoch_ends[:-1]]
        return sum(v - s for s, v in zip(starts, self.validation_starts, strict=True))

    def total_seconds(self) -> float:
        return self.epoch_ends[-1] - self.start

    def cpu_seconds(self) -> float:
        return self.cpu_end - self.cpu_start


@dataclass
class Run:
    train_seconds: float
    total_seconds: float
    cpu_seconds: float
    samples: int
    final_state: dict[str, torch.Tensor]
    val_loss: float

    @property
    def train_rate(self) -> float:
        return self.samples / self.train_seconds

    @property
    def epoch_rate(self) -> float:
        return self.samples / self.total_seconds

    @property
    def cpu_rate(self) -> float:
        return self.samples / self.cpu_seconds


def orders(loops: list[str], repeats: int) -> list[list[str]]:
    """Run orders, one per repeat: the rows of a cyclic Latin square (each loop once in each
    position), then the same rows reversed (each loop after each other as often as before
    it). `repeats` is rounded up to a multiple of len(loops) so positions stay balanced."""
    n = len(loops)
    square = [[loops[(row + i) % n] for i in range(n)] for row in range(n)]
    design = square + [row[::-1] for row in square]
    blocks = -(-max(repeats, 1) // n)
    return [design[i % len(design)] for i in range(blocks * n)]


def _autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def bare_loop(
    model: torch.nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    config: RefineConfig,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    metric: Metric,
    *,
    seed: int,
    on_epoch: Callable[[float], None],
) -> None:
    """A textbook training loop with fine_tune's optimizer, schedule, shuffling, autocast,
    clipping and validation pass, and nothing else (accumulation_steps must be 1)."""
    x_train, y_train = train
    x_val, y_val = val
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    # fused, as orca.training.optim builds it: the comparison is of the loops, not kernels
    optimizer = torch.optim.AdamW(
        params, lr=config.lr, weight_decay=config.weight_decay, fused=True
    )
    steps_per_epoch = -(-len(x_train) // config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = round(config.warmup_fraction * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_then_decay(total_steps, warmup_steps, config.schedule)
    )
    for _ in range(config.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(order), config.batch_size):
            index = order[start : start + config.batch_size]
            xb, yb = x_train[index].to(device), y_train[index].to(device)
            with _autocast(device):
                loss = loss_fn(model(xb).float(), yb)
            loss.backward()
            if config.clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, config.clip_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        model.eval()
        outputs = []
        with torch.no_grad():
            for start in range(0, len(x_val), config.eval_batch_size):
                xb = x_val[start : start + config.eval_batch_size].to(device)
                with _autocast(device):
                    outputs.append(model(xb).float().cpu())
        val_out = torch.cat(outputs)
        val_loss = float(loss_fn(val_out, y_val))
        metric.compute(val_out.numpy(), y_val.numpy())
        on_epoch(val_loss)


def synthetic_data(
    task: TaskSpec, model: torch.nn.Module, n: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random inputs of the task's shape and random targets of the model's output shape."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *task.input_shape, generator=generator)
    model.eval()
    with torch.no_grad():
        out_shape = tuple(model(x[:2]).shape[1:])
    if task.loss == "cross_entropy" and task.output == "classification":
        y = torch.randint(task.num_outputs, (n,), generator=generator)
    elif task.loss == "bce":
        y = torch.randint(2, (n, *out_shape), generator=generator).float()
    else:
        y = torch.randn(n, *out_shape, generator=generator)
    return x, y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="minilm-l6", help="body name or local HF model dir")
    parser.add_argument("--task", default="gunpoint", help="task whose spec shapes the model")
    parser.add_argument("--samples", type=int, default=256, help="synthetic training samples")
    parser.add_argument("--val-samples", type=int, default=16, help="synthetic validation samples")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=6, help="rounded up to a whole block")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-root", default=None, help="where checkpoints go (a temp dir)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 16 samples, 1 epoch, 1 block"
    )
    args = parser.parse_args()
    if args.quick:
        args.samples, args.epochs, args.repeats = 16, 1, 1

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    task = get_task(args.task)
    config = RefineConfig(epochs=args.epochs, batch_size=args.batch_size)
    loss_fn, metric = LOSSES.get(task.loss), METRICS.get(task.metric)
    template = create_model(task, args.backbone, seed=args.seed)
    x, y = synthetic_data(task, template, args.samples + args.val_samples, args.seed)
    train = (x[: args.samples], y[: args.samples])
    val = (x[args.samples :], y[args.samples :])
    loops = [REFINE, BARE]
    if "checkpoint_dir" in inspect.signature(fine_tune).parameters:
        loops.insert(1, CHECKPOINTED)
    schedule = orders(loops, args.repeats)

    def run(loop: str, data: tuple[torch.Tensor, torch.Tensor], cfg: RefineConfig) -> Run:
        model = copy.deepcopy(template).to(device)
        clock = Clock(device)
        handle = model.register_forward_pre_hook(clock.hook)
        val_losses: list[float] = []
        directory = None
        gc.collect()
        torch.manual_seed(args.seed)  # the same dropout masks in every run
        clock.begin()
        if loop == BARE:

            def after_epoch(val_loss: float) -> None:
                clock.end_epoch()
                val_losses.append(val_loss)

            bare_loop(model, data, val, cfg, loss_fn, metric, seed=args.seed, on_epoch=after_epoch)
        else:

            def after_epoch(record) -> None:
                clock.end_epoch()
                val_losses.append(record.val_loss)

            extra = {}
            if loop == CHECKPOINTED:
                directory = tempfile.mkdtemp(prefix="orca-bench-ckpt-", dir=args.checkpoint_root)
                extra["checkpoint_dir"] = directory
            fine_tune(
                model,
                data,
                val,
                cfg,
                loss_fn,
                metric,
                seed=args.seed,
                on_epoch=after_epoch,
                **extra,
            )
        handle.remove()
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
        final = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        return Run(
            clock.train_seconds(),
            clock.total_seconds(),
            clock.cpu_seconds(),
            len(data[0]) * cfg.epochs,
            final,
            val_losses[-1],
        )

    print("refine-loop throughput: orca fine_tune vs a bare PyTorch loop, same model and batches")
    print(
        f"torch {torch.__version__}, device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
        + f", torch threads {torch.get_num_threads()} (interop {torch.get_num_interop_threads()})"
        + f", os.cpu_count {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}"
    )
    trainable = sum(p.numel() for p in template.parameters() if p.requires_grad)
    print(
        f"model: {args.backbone} body around task {task.name!r} input {tuple(task.input_shape)}, "
        f"{trainable / 1e6:.1f}M parameters with requires_grad; loss {task.loss}, "
        f"metric {task.metric}"
    )
    print(
        f"data: {args.samples} synthetic training samples, {args.val_samples} validation, "
        f"batch {config.batch_size}, {config.epochs} epoch(s), {len(schedule)} repeat(s), "
        f"seed {args.seed}; run orders: " + " | ".join(",".join(o) for o in schedule)
    )
    print(
        f"config: {config.optimizer} lr {config.lr}, {config.schedule} schedule, warm-up "
        f"{config.warmup_fraction}, clip_norm {config.clip_norm}, accumulation "
        f"{config.accumulation_steps}, eval batch {config.eval_batch_size}"
    )
    print("per epoch:")
    print(
        f"  {REFINE:<12} fine_tune: shuffle, train steps (loss summed on the device), "
        "validation pass, val loss + metric, a copy of the state_dict when validation improves"
    )
    if CHECKPOINTED in loops:
        root = args.checkpoint_root or tempfile.gettempdir()
        print(f"  {CHECKPOINTED:<12} the same, plus a checkpoint per epoch (fresh dir in {root})")
    else:
        print("  (fine_tune has no checkpoint_dir parameter: no refine+ckpt row)")
    print(f"  {BARE:<12} shuffle, train steps, validation pass, val loss + metric; nothing else")

    warm_train = (train[0][: 2 * config.batch_size], train[1][: 2 * config.batch_size])
    warm_config = RefineConfig(**{**config.to_dict(), "epochs": 1})
    for loop in loops:
        run(loop, warm_train, warm_config)

    runs: dict[str, list[Run]] = {loop: [] for loop in loops}
    for repeat, order in enumerate(schedule):
        for loop in order:
            result = run(loop, train, config)
            if repeat > 0:
                result.final_state = {}  # the first repeat's weights suffice for the check
            runs[loop].append(result)

    def per_repeat(loop: str, rate: str) -> list[float]:
        pairs = zip(runs[loop], runs[BARE], strict=True)
        return [getattr(a, rate) / getattr(b, rate) for a, b in pairs]

    def ratios(loop: str, rate: str) -> float:
        return statistics.median(per_repeat(loop, rate))

    print()
    print(
        f"{'loop':<12} {'samples/s (train)':>18} {'samples/s (epoch incl. val)':>28} "
        f"{'ratio vs bare (train)':>22} {'ratio vs bare (epoch)':>22} {'(epoch, cpu)':>13}"
    )
    for loop in loops:
        train_rate = statistics.median(r.train_rate for r in runs[loop])
        epoch_rate = statistics.median(r.epoch_rate for r in runs[loop])
        print(
            f"{loop:<12} {train_rate:>18.2f} {epoch_rate:>28.2f} "
            f"{ratios(loop, 'train_rate'):>22.3f} {ratios(loop, 'epoch_rate'):>22.3f} "
            f"{ratios(loop, 'cpu_rate'):>13.3f}"
        )
    for loop in loops[:-1]:
        for clock, rate in (("wall", "epoch_rate"), ("cpu", "cpu_rate")):
            each = ", ".join(f"{r:.3f}" for r in per_repeat(loop, rate))
            print(f"{loop}/bare per repeat (epoch, {clock}): {each}")
        fastest = [min(r.total_seconds for r in runs[name]) for name in (BARE, loop)]
        print(f"{loop}/bare of the fastest runs (epoch, wall): {fastest[0] / fastest[1]:.3f}")
    spread = ", ".join(
        f"{loop} {min(r.total_seconds for r in runs[loop]):.2f}-"
        f"{max(r.total_seconds for r in runs[loop]):.2f}"
        for loop in loops
    )
    print(f"run seconds (min-max over repeats): {spread}")
    print(f"load average now {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")

    bare_state = runs[BARE][0].final_state
    for loop in loops[:-1]:
        state = runs[loop][0].final_state
        diff = max(
            float((state[k].double() - bare_state[k].double()).abs().max()) for k in bare_state
        )
        val_gap = abs(runs[loop][0].val_loss - runs[BARE][0].val_loss)
        print(
            f"same computation: {loop} vs bare after {config.epochs} epoch(s), "
            f"max |param diff| {diff:.3e}, |val loss diff| {val_gap:.3e}"
        )
    print(
        f"refine/bare throughput ratio: {ratios(REFINE, 'epoch_rate'):.2f} (target >= 0.95; "
        f"median of {len(schedule)} per-repeat wall-clock ratios; CPU time "
        f"{ratios(REFINE, 'cpu_rate'):.2f})"
    )


if __name__ == "__main__":
    main()
