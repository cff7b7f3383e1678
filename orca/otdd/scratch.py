"""Reusable scratch buffers for the large temporaries of one OTDD computation.

A fresh multi-megabyte tensor is fresh pages, and the first write to each page costs a
kernel page fault: for a 5,000 x 5,000 float32 buffer that is about as long as a pass of
exp() over it. Inside `scratch_scope()`, `scratch(name, ...)` hands out a view of one flat
buffer per name, allocated (or grown) on first use and reused by every later request of
that name, so the distance matrices, kernels and batched inner costs of a computation touch
their pages once. Outside a scope it simply allocates.

A name must not be requested again while a tensor from its previous request is still in
use: the callers use distinct names for buffers that are alive at the same time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from torch import Tensor

_POOL: ContextVar[dict[str, Tensor] | None] = ContextVar("otdd_scratch", default=None)


@contextmanager
def scratch_scope() -> Iterator[None]:
    """Buffers requested inside share one pool, dropped (freed) when the outermost scope
    ends; a scope opened inside another one shares the outer pool."""
    if _POOL.get() is not None:
        yield
        return
    token = _POOL.set({})
    try:
        yield
    finally:
        _POOL.reset(token)


def scratch(name: str | None, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """An uninitialised tensor of `shape` with `like`'s dtype and device; from the scope's
    buffer `name` when in a scope (and `name` is given), else newly allocated."""
    pool = _POOL.get()
    if pool is None or name is None:
        return like.new_empty(shape)
    numel = math.prod(shape)
    buffer = pool.get(name)
    if (
        buffer is None
        or buffer.numel() < numel
        or buffer.dtype != like.dtype
        or buffer.device != like.device
    ):
        pool.pop(name, None)  # free the old one first
        buffer = pool[name] = like.new_empty(numel)
    return buffer[:numel].view(shape)


def reserve(name: str, numel: int, like: Tensor) -> None:
    """Size buffer `name` for `numel` elements up front (inside a scope; else nothing), so
    that requests that grow one after the other allocate once."""
    if _POOL.get() is not None:
        scratch(name, (numel,), like)
