"""`orca recommend`: which (body, proxy) to fine-tune, ranked by the alignment distance.

ORCA's premise is that the distance (OTDD by default) between the embedded task and a proxy
dataset of the body's modality tells how well the body will transfer. A candidate is a body,
a proxy dataset and the method whose stages measure it: "orca" for a pretrained body, and
"scratch" for the random-weights control (the same architecture, randomly initialised, as
`orca run --method scratch` builds it; that method skips stage 2, so its distance is the one
at initialisation).

Body tokens (`--bodies`): a backbone string (orca.model.bodies: a registered name, a local
model directory, NAME@WEIGHTS), or `random:BACKBONE` for the control with that
architecture.

The ranking rule (RANK_RULE): measured candidates first, by the ranking signal (lower is
better; by default `probe`, a linear probe's validation loss, which the validation found
the best predictor; orca.recommend_signals lists the others); ties by the distance before
alignment, then by the candidate's label. Candidates that failed or were skipped for the
time budget come after, unranked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from orca.registry import Registry

RANDOM_PREFIX = "random:"
# The offline text bodies and the control; a default body whose weights are not here is left
# out with a note (a body named with --bodies must have them).
DEFAULT_BODIES = ("minilm-l6", "mpnet-base", f"{RANDOM_PREFIX}minilm-l6")
# The linear probe's validation loss (orca.recommend_signals). On the demo suite's
# validation (reports/RECOMMEND-VALIDATION.md) every OTDD signal pointed the wrong way (a
# lower distance went with a higher fine-tuned error) and the probe was the best signal,
# though not significantly; the distances are still measured and shown.
DEFAULT_RANK_SIGNAL = "probe"
RANK_RULE = (
    "lower ranking signal is better (default probe: a linear probe's validation loss on the "
    "aligned, frozen model); ties: lower distance before alignment; failed or skipped "
    "candidates are not ranked"
)
MEASURED_STAGES = ("ingest", "proxy", "align")


@dataclass(frozen=True)
class BodyChoice:
    """One `--bodies` token: the backbone, and the method whose body it is."""

    token: str
    backbone: str
    method: str  # "orca": pretrained; "scratch": random weights (the control)

    @property
    def is_control(self) -> bool:
        return self.method == "scratch"


def parse_body(token: str) -> BodyChoice:
    """`minilm-l6` -> the pretrained body; `random:minilm-l6` -> the random control."""
    token = token.strip()
    backbone = token.removeprefix(RANDOM_PREFIX)
    if not backbone:
        raise ValueError(
            f"--bodies {token!r}: expected a backbone, or {RANDOM_PREFIX}BACKBONE for the "
            "random-weights control"
        )
    method = "scratch" if token.startswith(RANDOM_PREFIX) else "orca"
    return BodyChoice(token, backbone, method)


def split_values(values: Iterable[str] | None) -> list[str]:
    """Repeated flags and comma-separated values, flattened: ["a,b", "c"] -> [a, b, c];
    duplicates dropped, order kept."""
    seen: dict[str, None] = {}
    for value in values or ():
        for part in value.split(","):
            if part.strip():
                seen.setdefault(part.strip(), None)
    return list(seen)


@dataclass(frozen=True)
class CandidateResult:
    """What measuring one candidate gave: its distances, per-stage seconds and states."""

    body: str  # the --bodies token
    backbone: str
    method: str
    proxy: str
    align_epochs: int
    metric: str  # the alignment metric the distances are in (align.metric)
    status: str = "measured"  # a key of STATUSES
    distance_before: float | None = None  # at the start of alignment (epoch 0)
    distance_after: float | None = None  # after the last alignment epoch
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> wall seconds
    states: dict[str, str] = field(default_factory=dict)  # stage -> Completed / Cached
    error: str | None = None
    # orca.recommend_signals name -> value (lower = better); otdd_before/after always
    signals: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        STATUSES.check(self.status, field="status")
        if self.status == "measured" and (
            self.distance_before is None or self.distance_after is None
        ):
            raise ValueError(f"candidate {self.label}: a measured candidate needs both distances")

    @property
    def label(self) -> str:
        return f"{self.body} / {self.proxy}"

    @property
    def improvement(self) -> float | None:
        """How much alignment lowered the distance (before - after)."""
        if self.distance_before is None or self.distance_after is None:
            return None
        return self.distance_before - self.distance_after

    def sort_key(self, by: str = DEFAULT_RANK_SIGNAL) -> tuple[Any, ...]:
        if self.status != "measured":
            return (1, STATUSES.names().index(self.status), 0.0, 0.0, self.label)
        value = self.signals.get(by, self.distance_after)
        return (0, 0, value, self.distance_before, self.label)


STATUSES: Registry[str] = Registry("candidate status")
for _status, _meaning in (
    ("measured", "its stages ran (or came from the cache)"),
    ("failed", "a stage failed: see error"),
    ("skipped", "not started: the time budget was spent"),
):
    STATUSES.register(_status, _meaning)


def rank(results: Sequence[CandidateResult], by: str = DEFAULT_RANK_SIGNAL) -> list[dict[str, Any]]:
    """The candidates in RANK_RULE order by signal `by`, as rows: each result's fields, its
    improvement, and `rank` (1 = best; None for a candidate that was not measured)."""
    rows = []
    position = 0
    for result in sorted(results, key=lambda result: result.sort_key(by)):
        measured = result.status == "measured"
        position += measured
        rows.append(
            {
                "rank": position if measured else None,
                **asdict(result),
                "improvement": _rounded(result.improvement),
            }
        )
    return rows


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def extra_signals(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The signals besides the two distances that any row has, in orca.recommend_signals'
    order."""
    from orca.recommend_signals import SIGNALS

    present = {name for row in rows for name in row.get("signals", {})}
    return [n for n in SIGNALS.names() if n in present and not SIGNALS.get(n).from_align_record]


def markdown(
    task: str,
    rows: Sequence[dict[str, Any]],
    notes: Sequence[str] = (),
    by: str = DEFAULT_RANK_SIGNAL,
) -> str:
    """The ranking as a Markdown document (the MLflow artifact)."""
    extra = extra_signals(rows)
    lines = [
        f"# orca recommend: {task}",
        "",
        f"Rule: {RANK_RULE}. Ranked by: {by}.",
        "",
        "| rank | body | method | proxy | align epochs | before | after | "
        + "".join(f"{name} | " for name in extra)
        + "seconds | status |",
        "|---:|---|---|---|---:|---:|---:|" + "---:|" * len(extra) + "---:|---|",
    ]
    for row in rows:
        seconds = sum(row["seconds"].values())
        values = "".join(f"{_cell(row['signals'].get(name))} | " for name in extra)
        lines.append(
            f"| {row['rank'] or '—'} | {row['body']} | {row['method']} | {row['proxy']} | "
            f"{row['align_epochs']} | {_cell(row['distance_before'])} | "
            f"{_cell(row['distance_after'])} | {values}{seconds:.1f} | {row['status']} |"
        )
    lines += ["", *(f"- {note}" for note in notes)]
    return "\n".join(lines).rstrip() + "\n"


@dataclass(frozen=True)
class Candidate:
    """A body and a proxy dataset to measure."""

    body: BodyChoice
    proxy: str


def plan_candidates(
    bodies: Sequence[str] | None = None, proxies: Sequence[str] | None = None
) -> tuple[list[Candidate], list[str]]:
    """Every body x proxy pair to measure, checked before any work, and notes on default
    bodies left out. Bodies default to DEFAULT_BODIES (those whose pretrained weights are
    here); proxies to every proxy dataset present locally that fits each body's kind. An
    unknown body, a named pretrained body without weights here, an unknown proxy, a proxy of
    another modality than the body's, or a named proxy with no local copy raises ValueError
    naming it and the valid choices."""
    from orca.model.weights_check import missing_weights

    notes = []
    choices = []
    for token in bodies or DEFAULT_BODIES:
        choice = parse_body(token)
        # UnknownNameError (a ValueError) lists the valid backbones
        problem = None if choice.is_control else missing_weights(choice.backbone)
        if problem is not None and bodies:
            raise ValueError(
                f"--bodies {token!r}: no pretrained weights here: {problem}. Use "
                f"{RANDOM_PREFIX}{choice.backbone} for its random-weights control"
            )
        if problem is not None:
            notes.append(f"default body {token} left out: {problem}")
            continue
        choices.append(choice)
    candidates = []
    for choice in choices:
        candidates += _candidates_of(choice, proxies)
    return list(dict.fromkeys(candidates)), notes


def _candidates_of(choice: BodyChoice, proxies: Sequence[str] | None) -> list[Candidate]:
    from orca.model.bodies import backbone_kind
    from orca.proxy.datasets import PROXY_DATASETS, resolve_proxy_name

    kind = backbone_kind(choice.backbone)
    fitting = [n for n in PROXY_DATASETS.names() if PROXY_DATASETS.get(n).kind == kind]
    present = [n for n in fitting if PROXY_DATASETS.get(n).available()]
    candidates = []
    for name in proxies or present:
        if name != "auto" and name not in PROXY_DATASETS:
            raise ValueError(
                f"--proxies {name!r}: unknown proxy dataset; valid for the {kind} body "
                f"{choice.backbone!r}: auto, {', '.join(fitting)}"
            )
        try:
            resolved = resolve_proxy_name(name, kind)
        except ValueError as error:  # a proxy of another modality: names the valid ones
            raise ValueError(f"--proxies {name!r} for body {choice.token!r}: {error}") from None
        if resolved not in present:
            raise ValueError(
                f"--proxies {name!r}: no local copy of {resolved} "
                f"({_missing_reason(resolved)}); {kind} proxies present here: "
                f"{', '.join(present) or 'none'}"
            )
        candidates.append(Candidate(choice, resolved))
    if not candidates:
        raise ValueError(
            f"body {choice.backbone!r} is a {kind} body and no {kind} proxy dataset is "
            f"present here (known: {', '.join(fitting)}); see orca.proxy.datasets"
        )
    return candidates


def _missing_reason(name: str) -> str:
    from orca.proxy.datasets import PROXY_DATASETS

    try:
        PROXY_DATASETS.get(name).locate()
    except FileNotFoundError as error:
        return str(error)
    return "present"
