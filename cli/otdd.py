"""`orca otdd SOURCE.npz TARGET.npz`: the OTDD between two labelled datasets stored as files.

No state directory, no Prefect, no MLflow: only torch and numpy. `--outer` picks the outer
problem: sinkhorn or exact on every point, or `sampled`, the approximation for large sets
(Sinkhorn on a class-stratified subset of `--maxsamples` points per side). See the README's
"OTDD: speed and accuracy" and "Large datasets".
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import typer

from cli.command import Args, Command
from cli.options import Json

SAMPLED_POINTS = 5000  # points per side of --outer sampled (and of the default above it)


def define_otdd(
    source: Annotated[str, typer.Argument(metavar="SOURCE.npz", help="X and y of one dataset")],
    target: Annotated[str, typer.Argument(metavar="TARGET.npz", help="X and y of the other")],
    inner: Annotated[
        str | None,
        typer.Option(help="label distance: exact, sinkhorn or gaussian (default exact)"),
    ] = None,
    outer: Annotated[
        Literal["sinkhorn", "exact", "sampled"] | None,
        typer.Option(
            help="outer problem: sinkhorn or exact on every point; sampled: sinkhorn on a "
            "class-stratified subset of --maxsamples points per side, the approximation for "
            f"large sets (default: sinkhorn up to {SAMPLED_POINTS} points a side, sampled above)"
        ),
    ] = None,
    maxsamples: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="at most N points per side, a seeded random subset stratified by class; "
            f"0: all (default: {SAMPLED_POINTS} with --outer sampled or none given, else all)",
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="seed of the random subsets (default 0)")] = None,
    epsilon: Annotated[
        float | None,
        typer.Option(help="entropic regularisation, squared-distance units (default 0.1)"),
    ] = None,
    tol: Annotated[
        float | None,
        typer.Option(help="Sinkhorn stops at this L1 error of the row marginal (default 0.1)"),
    ] = None,
    precision: Annotated[
        Literal["float32", "float64"],
        typer.Option(
            help="floating point type of the computation (float32 as microsoft/otdd and "
            "stage 2 compute; the exact outer problem is always solved in float64)"
        ),
    ] = "float32",
    json: Json = False,
) -> Args:
    """Optimal Transport Dataset Distance (squared) between two .npz files, each holding X
    (points x dim, real) and y (points, integer labels). No state directory, no Prefect."""
    return Args(**locals())


def otdd_outer(outer: str | None, maxsamples: int | None, largest: int) -> tuple[str, int | None]:
    """`orca otdd`'s --outer and --maxsamples as (the library's outer kind, points per side
    or None for all), for data with `largest` points on its larger side. "sampled" is
    Sinkhorn on a subset; no --outer means sinkhorn up to SAMPLED_POINTS points a side and
    sampled above; an explicit --maxsamples always wins (0: every point)."""
    if outer == "sampled" and maxsamples == 0:
        raise ValueError("--outer sampled needs --maxsamples N > 0 (or none: 5000 per side)")
    if maxsamples is not None:
        return ("sinkhorn" if outer in (None, "sampled") else outer), (maxsamples or None)
    if outer == "sampled" or (outer is None and largest > SAMPLED_POINTS):
        return "sinkhorn", SAMPLED_POINTS
    return outer or "sinkhorn", None


@dataclass(frozen=True)
class Problem:
    """Two checked datasets and the OTDDConfig to compare them with."""

    source: Any  # orca.otdd.files.LabelledData
    target: Any
    config: Any  # orca.otdd.OTDDConfig
    largest: int  # points on the larger side


def prepare(args: Args) -> Problem:
    """The arguments first, then the files, then the outer problem that fits their size;
    ValueError (a DatasetFileError for a file) says what is wrong."""
    from orca.otdd import OTDDConfig
    from orca.otdd.files import load_pair

    options = {
        "inner": args.inner,
        "epsilon": args.epsilon,
        "seed": args.seed,
        "sinkhorn_tol": args.tol,
        "max_samples": args.maxsamples or None,
    }
    config = OTDDConfig(**{key: value for key, value in options.items() if value is not None})
    otdd_outer(args.outer, args.maxsamples, 0)
    source, target = load_pair(args.source, args.target)
    largest = max(len(source.labels), len(target.labels))
    outer, max_samples = otdd_outer(args.outer, args.maxsamples, largest)
    return Problem(source, target, config.replace(outer=outer, max_samples=max_samples), largest)


def run(args: Args, problem: Problem) -> dict[str, Any]:
    """Compute the distance; print it (with --json: only the JSON object on stdout, the
    sampling note on stderr)."""
    import torch

    from orca.otdd import otdd

    config, source, target = problem.config, problem.source, problem.target
    sampled = config.max_samples is not None and problem.largest > config.max_samples
    shown_outer = "sampled" if sampled and config.outer == "sinkhorn" else config.outer
    dtype = getattr(torch, args.precision)
    started = time.perf_counter()
    with torch.no_grad():
        value = otdd(
            torch.from_numpy(source.features).to(dtype),
            torch.from_numpy(source.labels),
            torch.from_numpy(target.features).to(dtype),
            torch.from_numpy(target.labels),
            config,
        ).item()
    seconds = time.perf_counter() - started
    result = {"value": value, "seconds": seconds, "inner": config.inner, "outer": shown_outer}
    if not args.json:
        print(
            f"OTDD^2({source.path}, {target.path}) = {value:.6g}  "
            f"[inner {config.inner}, outer {shown_outer}, epsilon {config.epsilon}, "
            f"at most {config.max_samples or 'all'} points per side; {seconds:.2f} s]"
        )
    if sampled:
        print(
            f"  sampled: {config.outer} on {config.max_samples} of up to {problem.largest} "
            "points per side, an approximation (README, 'Large datasets': its measured "
            "error); --outer sinkhorn or --maxsamples 0 for every point",
            file=sys.stderr if args.json else sys.stdout,
        )
    if args.json:
        print(json.dumps(result))
    return result


COMMANDS = {"otdd": Command(define_otdd, prepare, run, needs_state=False, error_prefix="orca otdd")}
