"""Cheap signals of how well a (body, proxy) candidate will fine-tune, each lower = better.

    otdd_after   the alignment distance after stage 2 (the stage's own last measurement):
                 ORCA's premise, and `orca recommend`'s default ranking signal
    otdd_before  the same distance at stage 2's start (the embedder's initialisation)
    otdd_ratio   otdd_after / otdd_before: how much of the distance alignment removed
    otdd_scaled  otdd_after divided by the proxy's own spread (the mean squared distance
                 between two proxy features): a distance in the proxy's units. The raw OTDD
                 scales with the square of the body's embedding scale (multiply the proxy
                 features and the embedded data by c, and it grows by c^2), so raw distances
                 of two bodies compare their embedding norms as much as their fit; this one
                 does not change with that scale (up to the entropic regularisation, an
                 absolute epsilon, small next to the costs of real bodies)
    probe        a linear probe: the validation loss of the task's predictor head fitted
                 alone on the frozen model's outputs (the aligned embedder and the body), in
                 the task's own loss; PROBE_STEPS full-batch Adam steps, the best head on
                 validation kept (orca.training.probe_warm_start)
    otdd_kmeans  the alignment distance after stage 2 with the task's labels replaced by
                 k-means clusters of the embedded target points: how close the embedded
                 data's own cluster structure is to the proxy's classes, labels unused

The first three come with the align stage's record; `measure_signals` computes the others
from the stage outputs (the split files, the proxy features and the embedder file), so
they are as deterministic as the stages: the same seed gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from orca.registry import Registry

PROBE_STEPS = 200
KMEANS_CLUSTERS = 10
EMBED_BATCH = 256
SPREAD_SAMPLES = 2000  # proxy features drawn (seeded) for their mean squared distance


@dataclass(frozen=True)
class SignalSpec:
    description: str
    from_align_record: bool  # read off the align stage's distances; no model needed


SIGNALS: Registry[SignalSpec] = Registry("recommend signal")
SIGNALS.register("otdd_after", SignalSpec("alignment distance after stage 2", True))
SIGNALS.register("otdd_before", SignalSpec("alignment distance at stage 2's start", True))
SIGNALS.register("otdd_ratio", SignalSpec("otdd_after / otdd_before", True))
SIGNALS.register(
    "otdd_scaled", SignalSpec("otdd_after over the proxy features' mean squared distance", False)
)
SIGNALS.register("probe", SignalSpec("validation loss of a linear probe on frozen outputs", False))
SIGNALS.register(
    "otdd_kmeans", SignalSpec("alignment distance with k-means labels of the embedded data", False)
)

# The signals every recommendation has: read off the align stage's record.
RECORD_SIGNALS = tuple(name for name in SIGNALS.names() if SIGNALS.get(name).from_align_record)

# name -> computation(context) -> value; for the signals not in the align record
COMPUTED: Registry[Callable[[SignalContext], float]] = Registry("computed recommend signal")


@dataclass
class SignalContext:
    """What a computed signal works with: the model with its aligned embedder (built on
    first use), the task's splits as tensors, the proxy's features and the stage settings."""

    build_model: Callable[[], Any]  # -> OrcaModel on `device`, the aligned embedder loaded
    spec: Any  # TaskSpec
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    proxy: tuple[torch.Tensor, torch.Tensor]  # features, labels
    align: Any  # AlignConfig
    seed: int
    device: torch.device
    distances: list[float]  # the align stage's record: distances[-1] is otdd_after
    _model: Any = None

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = self.build_model()
        return self._model


def from_align_record(distances: Sequence[float]) -> dict[str, float]:
    before, after = float(distances[0]), float(distances[-1])
    ratio = after / before if before > 0 else float("nan")
    return {"otdd_before": before, "otdd_after": after, "otdd_ratio": ratio}


def measure_signals(
    names: Sequence[str],
    *,
    task_name: str,
    backbone: str,
    dataset: dict[str, Any],
    proxy: dict[str, Any],
    embedder: dict[str, Any],
    align_config: Any,
    seed: int,
    pretrained: bool,
    device: str = "cpu",
) -> dict[str, float]:
    """The named signals (unknown names raise, naming the valid ones) for one candidate,
    from its stage references (ingest's `dataset`, proxy's `proxy`, align's `embedder`)."""
    for name in names:
        SIGNALS.check(name, field="signals")
    values = {n: v for n, v in from_align_record(embedder["distances"]).items() if n in names}
    computed = [name for name in names if name in COMPUTED]
    if not computed:
        return values
    context = _context(
        task_name, backbone, dataset, proxy, embedder, align_config, seed, pretrained, device
    )
    for name in computed:
        torch.manual_seed(seed)
        values[name] = float(COMPUTED.get(name)(context))
    return {name: values[name] for name in names}


def _context(task_name, backbone, dataset, proxy, embedder, align_config, seed, pretrained, device):
    from orca.data.arrow_io import read_split
    from orca.data.tasks import get_task
    from orca.devices import torch_device

    place = torch_device(device)
    spec = get_task(task_name)
    splits = {name: read_split(dataset["splits"][name]["path"]) for name in ("train", "validation")}
    tensors = {n: (torch.from_numpy(s.x), torch.from_numpy(s.y)) for n, s in splits.items()}
    source = read_split(proxy["path"])

    def build_model() -> Any:
        from orca.checkpoint import load_into
        from orca.model import create_model

        torch.manual_seed(seed)
        model = create_model(spec, backbone, seed=seed, pretrained=pretrained)
        model.fit_scalers(*tensors["train"])  # the statistics stages 2 and 3 fit on these rows
        load_into(model.embedder, embedder["path"])
        return model.to(place).eval()

    return SignalContext(
        build_model=build_model,
        spec=spec,
        train=tensors["train"],
        val=tensors["validation"],
        proxy=(torch.from_numpy(source.x), torch.from_numpy(source.y).long()),
        align=align_config,
        seed=seed,
        device=place,
        distances=list(embedder["distances"]),
    )


def mean_squared_distance(features: torch.Tensor, samples: int, seed: int) -> float:
    """The mean squared Euclidean distance between two distinct rows of `features` (at most
    `samples` rows, drawn with `seed`): E||a - b||^2 = 2 * (mean ||x||^2 - ||mean x||^2)
    * n / (n - 1), computed without the n x n matrix."""
    x = features.double()
    if len(x) > samples:
        x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:samples]]
    n = len(x)
    if n < 2:
        raise ValueError(f"the proxy has {n} feature row(s); its spread needs at least 2")
    spread = (x.pow(2).sum(dim=1).mean() - x.mean(dim=0).pow(2).sum()) * 2 * n / (n - 1)
    return float(spread)


@COMPUTED.register("otdd_scaled")
def scaled_distance(context: SignalContext) -> float:
    spread = mean_squared_distance(context.proxy[0], SPREAD_SAMPLES, context.seed)
    return context.distances[-1] / spread


@COMPUTED.register("probe")
def linear_probe_loss(context: SignalContext) -> float:
    from orca.metrics import LOSSES
    from orca.training.probe_warm_start import warm_start_predictor

    loss_fn = LOSSES.get(context.spec.loss)
    result = warm_start_predictor(
        context.model,
        *context.train,
        loss_fn,
        steps=PROBE_STEPS,
        val=context.val,
        generator=torch.Generator().manual_seed(context.seed),
    )
    return result.val_loss_after


@COMPUTED.register("otdd_kmeans")
def kmeans_label_distance(context: SignalContext) -> float:
    from orca.alignment.pseudo_labels import kmeans_pseudo_labels
    from orca.training.align import alignment_metric
    from orca.training.align_procedures import ALIGN_PROCEDURES, EpochContext

    model, (x, _) = context.model, context.train
    with torch.no_grad():
        pooled = torch.cat(
            [
                model.embed(x[i : i + EMBED_BATCH].to(context.device)).mean(dim=1).cpu()
                for i in range(0, len(x), EMBED_BATCH)
            ]
        )
    clusters = min(KMEANS_CLUSTERS, len(x))
    labels = kmeans_pseudo_labels(pooled.double().numpy(), k=clusters, seed=context.seed)
    features, proxy_labels = context.proxy
    metric = alignment_metric(
        context.align, features.to(context.device), proxy_labels.to(context.device), context.seed
    )
    epoch = EpochContext(
        embed=model.embed,
        metric=metric,
        x=x.to(context.device),
        labels=torch.from_numpy(np.asarray(labels)).long().to(context.device),
        samples_per_class=context.align.samples_per_class,
        batch_size=context.align.batch_size,
        generator=torch.Generator().manual_seed(context.seed),
        optimizer=None,  # measure only: no step
    )
    with torch.no_grad():
        return ALIGN_PROCEDURES.get(context.align.procedure)(epoch, False)
