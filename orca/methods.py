"""Methods compared by the pipeline, by name: which stages run and how."""

from __future__ import annotations

from dataclasses import dataclass

from orca.registry import Registry


@dataclass(frozen=True)
class MethodSpec:
    name: str
    description: str
    align: bool  # run stage 2 (embedder learning); otherwise the embedder keeps its init
    refine_mode: str = "full"  # a name in orca.training.refine_modes.REFINE_MODES
    pretrained_body: bool = True  # False: the same architecture, randomly initialised
    align_metric: str | None = None  # overrides align.metric (None: the config's)


METHODS: Registry[MethodSpec] = Registry("method")
for _method in (
    MethodSpec("orca", "embedder alignment to the proxy, then full fine-tuning", True),
    MethodSpec("orca-mmd", "ORCA with MMD as the alignment metric", True, align_metric="mmd"),
    MethodSpec("orca-l2", "ORCA with pairwise L2 as the alignment metric", True, align_metric="l2"),
    MethodSpec(
        "orca-cosine",
        "ORCA with cosine distance as the alignment metric",
        True,
        "full",
        True,
        "cosine",
    ),
    MethodSpec("no-align", "full fine-tuning with stage 2 skipped", False),
    MethodSpec(
        "fpt",
        "partial fine-tuning (FPT): attention and feed-forward frozen",
        False,
        refine_mode="fpt",
    ),
    MethodSpec(
        "scratch", "the same architecture trained from a random body", False, pretrained_body=False
    ),
):
    METHODS.register(_method.name, _method)
