"""`orca otdd SOURCE.npz TARGET.npz`: the OTDD between two labelled datasets stored as files.

No state directory, no Prefect, no MLflow: only torch and numpy. `--outer` picks the outer
problem: sinkhorn or exact on every point, or `sampled`, the approximation for large sets
(Sinkhorn on a class-stratified subset of `--maxsamples` points per side). See the README's
"OTDD: speed and accuracy" and "Large datasets".
"""

from __future__ import annotations

import argparse
import json
import sys
import time

OUTER_CHOICES = ("sinkhorn", "exact", "sampled")
SAMPLED_POINTS = 5000  # points per side of --outer sampled (and of the default above it)


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


def run(args: argparse.Namespace) -> int:
    """`orca otdd`: no state directory, no Prefect, no MLflow; only torch and numpy."""
    import torch

    from orca.otdd import OTDDConfig, otdd
    from orca.otdd.files import load_pair

    options = {
        "inner": args.inner,
        "epsilon": args.epsilon,
        "seed": args.seed,
        "sinkhorn_tol": args.tol,
        "max_samples": args.maxsamples or None,
    }
    try:  # the arguments first, then the files, then the outer problem that fits their size
        config = OTDDConfig(**{key: value for key, value in options.items() if value is not None})
        otdd_outer(args.outer, args.maxsamples, 0)
        source, target = load_pair(args.source, args.target)
        largest = max(len(source.labels), len(target.labels))
        outer, max_samples = otdd_outer(args.outer, args.maxsamples, largest)
        config = config.replace(outer=outer, max_samples=max_samples)
    except ValueError as error:
        print(f"orca otdd: error: {error}", file=sys.stderr)
        return 2
    sampled = max_samples is not None and largest > max_samples
    shown_outer = "sampled" if sampled and outer == "sinkhorn" else outer
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
    print(
        f"OTDD^2({source.path}, {target.path}) = {value:.6g}  "
        f"[inner {config.inner}, outer {shown_outer}, epsilon {config.epsilon}, "
        f"at most {config.max_samples or 'all'} points per side; {seconds:.2f} s]"
    )
    if sampled:
        print(
            f"  sampled: {config.outer} on {max_samples} of up to {largest} points per side, "
            "an approximation (README, 'Large datasets': its measured error); "
            "--outer sinkhorn or --maxsamples 0 for every point"
        )
    if args.json:
        result = {"value": value, "seconds": seconds, "inner": config.inner, "outer": shown_outer}
        print(json.dumps(result))
    return 0


def add_parser(commands) -> None:
    # No orca.otdd import here: it loads torch, which the other commands' parsing must not
    # wait for. Choices and ranges are checked by OTDDConfig, whose errors list the valid ones.
    otdd = commands.add_parser(
        "otdd",
        help="OTDD (squared) between two labelled datasets stored as .npz files",
        description=(
            "Optimal Transport Dataset Distance between two .npz files, each holding X "
            "(points x dim, real) and y (points, integer labels); prints a squared distance."
        ),
    )
    otdd.add_argument("source", metavar="SOURCE.npz")
    otdd.add_argument("target", metavar="TARGET.npz")
    otdd.add_argument("--inner", help="label distance: exact, sinkhorn or gaussian (default exact)")
    otdd.add_argument(
        "--outer",
        choices=OUTER_CHOICES,
        help="outer problem: sinkhorn or exact on every point; sampled: sinkhorn on a "
        "class-stratified subset of --maxsamples points per side, the approximation for "
        "large sets (default: sinkhorn up to 5000 points a side, sampled above)",
    )
    otdd.add_argument(
        "--maxsamples",
        type=int,
        metavar="N",
        help="at most N points per side, a seeded random subset stratified by class; 0: all "
        f"(default: {SAMPLED_POINTS} with --outer sampled or none given, else all)",
    )
    otdd.add_argument("--seed", type=int, help="seed of the random subsets (default 0)")
    otdd.add_argument(
        "--epsilon", type=float, help="entropic regularisation, squared-distance units (0.1)"
    )
    otdd.add_argument(
        "--tol",
        type=float,
        help="Sinkhorn stops at this L1 error of the row marginal (default 0.1)",
    )
    otdd.add_argument(
        "--precision",
        choices=("float32", "float64"),
        default="float32",
        help="floating point type of the computation (default float32, as microsoft/otdd "
        "and stage 2 compute; the exact outer problem is always solved in float64)",
    )
    otdd.add_argument("--json", action="store_true", help="print the result as JSON (last line)")
