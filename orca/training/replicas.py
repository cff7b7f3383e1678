"""Data parallelism for the fine-tuning loop: each process's share of an epoch, and the
collectives that keep the processes in step.

`Replicas` is one process's place among `world_size` data-parallel copies of the model
(torch.distributed, one process per rank, as torchrun starts them). fine_tune takes one;
with the default SINGLE (one process) every method is the identity, so the single-process
loop runs exactly as it would without it.

With N ranks, every rank draws the same shuffled order (same seed) and keeps every N-th
index from its rank on, the order wrapped around so that all ranks get ceil(n / N) samples
and take the same number of optimizer steps (torch's DistributedSampler does the same). A
rank's batch is ceil(batch_size / N), so one step still sees about `batch_size` samples
across the ranks, and DistributedDataParallel averages the gradients over them.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from orca.devices import resolve_device


@dataclass(frozen=True)
class Replicas:
    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank={self.rank} must be in [0, world_size={self.world_size})")

    @property
    def is_main(self) -> bool:
        """The rank that reports records and writes files."""
        return self.rank == 0

    def batch_size(self, batch_size: int) -> int:
        """This rank's batch for a global batch of `batch_size` samples."""
        return -(-batch_size // self.world_size)

    def shard_size(self, samples: int) -> int:
        """How many of `samples` each rank trains on per epoch."""
        return -(-samples // self.world_size)

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        """This rank's share of an epoch's sample order (module doc)."""
        if self.world_size == 1:
            return order
        total = self.shard_size(len(order)) * self.world_size
        repeats = -(-total // len(order))
        padded = order.repeat(repeats)[:total]
        return padded[self.rank : total : self.world_size]

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module to run forward and backward through: `model` itself for one process,
        else DistributedDataParallel over it (gradients averaged across the ranks)."""
        if self.world_size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        return DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            # Parameters that take no part in a forward pass (e.g. the frozen body's own
            # input embedding, bypassed by the embedder) must not stall the reduction.
            find_unused_parameters=True,
        )

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """`values` summed over the ranks (in place; `values` itself for one process)."""
        if self.world_size > 1:
            torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.SUM)
        return values

    def from_main(self, value: Any) -> Any:
        """The main rank's `value`, on every rank (any picklable object)."""
        if self.world_size == 1:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order (any picklable object)."""
        if self.world_size == 1:
            return [value]
        values: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(values, value)
        return values


SINGLE = Replicas()


@contextmanager
def process_group(device: str = "auto") -> Iterator[tuple[Replicas, torch.device]]:
    """In a process that torchrun started: join its process group (on `device`, a name in
    orca.devices.DEVICES: NCCL with one GPU per rank, or gloo on the CPU) and yield this
    rank's Replicas and device; leave on exit."""
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if resolve_device(device) == "cuda":
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    torch.distributed.init_process_group(backend=backend, rank=rank, world_size=world_size)
    try:
        yield Replicas(rank=rank, world_size=world_size), device
        # Leave together, and only once nothing holds the group: a rank that tears gloo's
        # connections down while its peer is still in a collective, or a DDP reducer that
        # is collected after the group is gone, aborts the process (SIGABRT at exit).
        gc.collect()
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()
