"""Methods compared by the pipeline, by name: which stages run and how."""

from __future__ import annotations

from dataclasses import dataclass

from orca.registry import Registry


@dataclass(frozen=True)
class MethodSpec:
    name: str
    description: str
    align: bool  # run stage 2 (embedder learning); otherwise the embedder keeps its init


METHODS: Registry[MethodSpec] = Registry("method")
METHODS.register("orca", MethodSpec("orca", "OTDD embedder alignment, then full fine-tuning", True))
METHODS.register("no-align", MethodSpec("no-align", "full fine-tuning with stage 2 skipped", False))
