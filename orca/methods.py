"""Methods compared by the pipeline, by name: which stages run and how.

A method's `family` says which pipeline it runs:
- "orca": a pretrained (or random) body with an embedder and predictor, through
  ingest -> proxy -> align -> refine -> evaluate; the other fields say how.
- "classical": a scikit-learn model of orca.classical on the flattened inputs, through
  ingest -> classical (fit on train, select on validation, score test once). The method's
  name is the model's name in CLASSICAL_MODELS; there is no body, proxy or embedder:
  every registered classical model is a method.
The families are the keys of orca.stages.order.FAMILY_STAGES (the stages each one runs).
"""

from __future__ import annotations

from dataclasses import dataclass

from orca.classical import CLASSICAL_MODELS
from orca.config.base import check_choice
from orca.registry import Registry
from orca.stages.order import FAMILY_STAGES


@dataclass(frozen=True)
class MethodSpec:
    name: str
    description: str
    # Run stage 2 (embedder learning); otherwise the embedder keeps its initialisation, as
    # AlignConfig.embedder_init gives it with 0 epochs (orca's, or the authors' no-align one).
    align: bool
    refine_mode: str = "full"  # a name in orca.training.refine_modes.REFINE_MODES
    pretrained_body: bool = True  # False: the same architecture, randomly initialised
    align_metric: str | None = None  # overrides align.metric (None: the config's)
    family: str = "orca"  # a key of orca.stages.order.FAMILY_STAGES

    def __post_init__(self) -> None:
        check_choice(f"method {self.name}: family", self.family, FAMILY_STAGES)
        if self.family == "classical":
            CLASSICAL_MODELS.check(self.name, field=f"method {self.name}")


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
    *(
        MethodSpec(name, model.description, False, family="classical")
        for name, model in CLASSICAL_MODELS.items()
    ),
):
    METHODS.register(_method.name, _method)
