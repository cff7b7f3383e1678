"""OTDD wall time and peak memory, against a straightforward POT reference in the same run.

For n points per side (n in {1k, 5k, 20k}), d in {64, 768}, 10 classes, and each inner kind
(exact, sinkhorn, gaussian), it computes one OTDD with `orca.otdd.otdd` (float32 features,
every point: max_samples=None, 500 points per class in the sample-based inner problems) and
the same quantity with a reference written the way microsoft/otdd goes about it: a Python
loop over every pair of labels of the union of both label sets with one POT call per pair
(three for the debiased Sinkhorn inner, whose self terms are recomputed per pair), the
augmented cost M[a, b] = ||x_a - x_b||^2 + W(label_a, label_b) built explicitly in float64,
then the outer problem with POT. Both use the same squared W_2 label costs, the same epsilon,
the same entropic value (<P, M> + eps KL(P | a x b)) and the same debiasing, so their values
should agree; the table prints both and their relative difference. Each computation runs in
a fresh subprocess, which reports its wall time and peak RSS (ru_maxrss) and the RSS it had
before the computation (after imports and data), so "+MiB" is what the computation added.

The reference runs only where both compute on identical points (no class above the
per-class cap) and where its estimated memory fits under --ref-cap-gib; elsewhere the table
says why it was skipped. Ours holds at most two float32 (n, n) arrays at a time (cost and
Sinkhorn kernel, about 3 GiB at n = 20k) and is skipped, with the reason, only above
--ours-cap-gib. Last, one embedder-learning epoch (train_embedder's loop: per target
class, embed, OTDD to the proxy, backward; one optimizer step) is timed with the OTDD object
built once (cached source x source label distances and source self term, as in stage 2) and
with one built per call (everything on the source recomputed), and the ratio printed.

The comparison at microsoft/otdd's own setting (5k x 5k, d = 64, its default mode redone on
geomloss, POT's exact value as the reference, error and memory in one run) is
benchmarks/bench_otdd_reference.py; 100k x 100k points is benchmarks/bench_otdd_scale.py.

Targets on 2 CPU cores: 5,000 x 5,000, 10 classes, d=768, Sinkhorn inner and outer under
10 s; at least 10x faster than the reference at equal value (within 0.1 %).

    .venv/bin/python benchmarks/bench_otdd.py --quick       # about a minute
    .venv/bin/python benchmarks/bench_otdd.py                # the full grid (long)
    .venv/bin/python benchmarks/bench_otdd.py --sizes 5000 --dims 768 --inner sinkhorn
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import numpy as np

CLASSES = 10
EPSILON = 0.1  # OTDDConfig's default, used by both sides
PER_CLASS_CAP = 500  # OTDDConfig.max_samples_per_class: the reference needs classes <= this
RIDGE = 1e-6  # the gaussian kind's covariance ridge
EMD_INNER_ITER = 10_000_000
EMD_OUTER_ITER = 100_000_000
INNER_KINDS = ("exact", "sinkhorn", "gaussian")


# ----------------------------------------------------------------------------------------
# data and measurement helpers (used in the worker subprocesses)


def make_data(n: int, d: int, seed: int, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A 10-class Gaussian mixture, float32: class means ~ N(0, I/d), spread 0.5/sqrt(d), all
    times `scale`, so squared distances are O(scale^2) whatever d (at scale 1: within a class
    ~0.5, across classes ~2.5; epsilon = 0.1 is then ~4 % of a typical cost)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(CLASSES, d)) / math.sqrt(d)
    labels = rng.permutation(np.arange(n) % CLASSES)
    points = scale * (means[labels] + 0.5 * rng.normal(size=(n, d)) / math.sqrt(d))
    return points.astype(np.float32), labels.astype(np.int64)


def current_rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ----------------------------------------------------------------------------------------
# the straightforward reference: POT, float64, one call per pair of labels


def uniform(k: int) -> np.ndarray:
    return np.full(k, 1.0 / k)


def ref_entropic_value(cost: np.ndarray, max_iter: int, tol: float) -> float:
    """OT_eps = <P, M> + eps KL(P | a x b) (generalised KL), P from POT's Sinkhorn."""
    import ot

    n, m = cost.shape
    method = "sinkhorn" if cost.max() / EPSILON < 500 else "sinkhorn_log"  # exp() range
    plan = ot.sinkhorn(
        uniform(n), uniform(m), cost, EPSILON, method=method, numItermax=max_iter, stopThr=tol
    )
    mass = plan[plan > 0]
    kl = float(np.sum(mass * (np.log(mass) + math.log(n * m)))) - float(plan.sum()) + 1.0
    return float(np.sum(plan * cost)) + EPSILON * kl


def ref_inner(kind: str, xa: np.ndarray, xb: np.ndarray, max_iter: int, tol: float) -> float:
    """Squared W_2 between two class samples, one POT computation from scratch."""
    import ot
    import ot.gaussian

    if kind == "exact":
        cost = ot.dist(xa, xb)  # squared Euclidean
        return float(ot.emd2(uniform(len(xa)), uniform(len(xb)), cost, numItermax=EMD_INNER_ITER))
    if kind == "sinkhorn":  # debiased: three Sinkhorn problems per pair
        return (
            ref_entropic_value(ot.dist(xa, xb), max_iter, tol)
            - 0.5 * ref_entropic_value(ot.dist(xa, xa), max_iter, tol)
            - 0.5 * ref_entropic_value(ot.dist(xb, xb), max_iter, tol)
        )
    distance = ot.gaussian.empirical_bures_wasserstein_distance(xa, xb, reg=RIDGE)
    return float(np.squeeze(distance)) ** 2


def reference_otdd(xs, ys, xt, yt, inner: str, outer: str, max_iter: int, tol: float) -> float:
    import ot

    classes_s, classes_t = np.unique(ys), np.unique(yt)
    groups = [xs[ys == c] for c in classes_s] + [xt[yt == c] for c in classes_t]
    count_s, count = len(classes_s), len(groups)
    distances = np.zeros((count, count))  # W over the union of labels, source labels first
    for i in range(count):
        for j in range(i + 1, count):
            if outer == "exact" and (j < count_s or i >= count_s):
                continue  # the exact outer problem needs the source x target block only
            distances[i, j] = distances[j, i] = ref_inner(
                inner, groups[i], groups[j], max_iter, tol
            )
    index_s = np.searchsorted(classes_s, ys)
    index_t = count_s + np.searchsorted(classes_t, yt)

    def augmented(xa, index_a, xb, index_b):  # (n, m), explicit
        return ot.dist(xa, xb) + distances[index_a][:, index_b]

    cost_st = augmented(xs, index_s, xt, index_t)
    if outer == "exact":
        return float(
            ot.emd2(uniform(len(xs)), uniform(len(xt)), cost_st, numItermax=EMD_OUTER_ITER)
        )
    cross = ref_entropic_value(cost_st, max_iter, tol)
    del cost_st
    self_s = ref_entropic_value(augmented(xs, index_s, xs, index_s), max_iter, tol)
    self_t = ref_entropic_value(augmented(xt, index_t, xt, index_t), max_iter, tol)
    return cross - 0.5 * self_s - 0.5 * self_t


def ours_memory_gib(n: int) -> float:
    """Rough peak of ours: two float32 (n, n) arrays (cost and kernel), plus a margin for
    the inner problems' batches (two float32 blocks of 2**25 entries)."""
    return (2 * n * n * 4 + 2 * 2**25 * 4) / 2**30


def reference_memory_gib(n: int) -> float:
    """Rough peak of the reference: a few float64 (n, n) arrays alive in POT's Sinkhorn
    (cost, kernel, plan, temporaries), with the 64-bit feature copies."""
    return 5 * n * n * 8 / 2**30


# ----------------------------------------------------------------------------------------
# workers: one computation per fresh process, reporting JSON on the last line


def worker(spec: dict) -> dict:
    import torch

    from orca.otdd import OTDDConfig, otdd

    n, d, inner, outer = spec["n"], spec["d"], spec["inner"], spec["outer"]
    xs, ys = make_data(n, d, seed=1, scale=spec["scale"])
    xt, yt = make_data(n, d, seed=2, scale=spec["scale"])
    config = OTDDConfig(inner=inner, outer=outer, epsilon=EPSILON, max_samples=spec["cap"])
    small = slice(0, 200)  # warm-up: first-call costs (POT import, MKL) are not the point
    if spec["side"] == "ours":
        tensors = [torch.from_numpy(a) for a in (xs, ys, xt, yt)]
        with torch.no_grad():
            otdd(*(t[small] for t in tensors), config)
            before = current_rss_mib()
            started = time.perf_counter()
            value = otdd(*tensors, config).item()
    else:
        xs64, xt64 = xs.astype(np.float64), xt.astype(np.float64)
        tol, max_iter = config.sinkhorn_tol, config.sinkhorn_max_iter
        reference_otdd(xs64[small], ys[small], xt64[small], yt[small], inner, outer, 50, tol)
        before = current_rss_mib()
        started = time.perf_counter()
        value = reference_otdd(xs64, ys, xt64, yt, inner, outer, max_iter, tol)
    seconds = time.perf_counter() - started
    return {"value": value, "seconds": seconds, "peak_mib": peak_rss_mib(), "before_mib": before}


def epoch_worker(spec: dict) -> dict:
    """One stage-2 epoch (train_embedder's loop) with the metric built once or per call."""
    import torch

    from orca.alignment.metrics import create_alignment_metric

    torch.manual_seed(0)
    n, d, inner = spec["n"], spec["d"], spec["inner"]
    xs, ys = make_data(n, d, seed=1, scale=spec["scale"])
    source, source_labels = torch.from_numpy(xs), torch.from_numpy(ys)
    per_class, tokens, width = 128, 4, 32  # AlignConfig.samples_per_class; a toy embedder input
    target_labels = torch.arange(CLASSES * per_class) % CLASSES
    inputs = torch.randn(len(target_labels), tokens, width)
    embedder = torch.nn.Linear(width, d)
    optimizer = torch.optim.Adam(embedder.parameters(), lr=1e-4)
    options = {"inner": inner, "epsilon": EPSILON, "max_samples": 5000, "seed": 0}

    def build():
        return create_alignment_metric("otdd", source, source_labels, **options)

    def epoch(metric) -> float:
        optimizer.zero_grad(set_to_none=True)
        started = time.perf_counter()
        for c in torch.randperm(CLASSES).tolist():
            index = torch.nonzero(target_labels == c).flatten()
            features = embedder(inputs[index]).mean(dim=1)  # (n_c, d)
            loss = metric(features, target_labels[index]) / CLASSES
            loss.backward()
        optimizer.step()
        return time.perf_counter() - started

    create_alignment_metric("otdd", source[:200], source_labels[:200], **options)  # warm-up
    started = time.perf_counter()
    cached = build()
    build_seconds = time.perf_counter() - started
    epoch(cached)  # warm-up
    cached_seconds = epoch(cached)
    recomputed_seconds = epoch(lambda features, labels: build()(features, labels))
    return {"build": build_seconds, "cached": cached_seconds, "recomputed": recomputed_seconds}


def run_worker(spec: dict, flag: str = "--worker", script: str = __file__) -> dict:
    """Run `script flag spec` in a fresh process; its last stdout line is the JSON result."""
    command = [sys.executable, script, flag, json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------
# the driver


def csv_ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def csv_kinds(text: str) -> list[str]:
    kinds = [v for v in text.split(",") if v]
    unknown = sorted(set(kinds) - set(INNER_KINDS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown inner kind(s) {unknown}; valid: {INNER_KINDS}")
    return kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    parser.add_argument("--sizes", type=csv_ints, help="points per side, e.g. 1000,5000")
    parser.add_argument("--dims", type=csv_ints, help="feature dimensions, e.g. 64,768")
    parser.add_argument("--inner", type=csv_kinds, help="inner kinds, e.g. sinkhorn,gaussian")
    parser.add_argument("--outer", default="sinkhorn", choices=("sinkhorn", "exact"))
    parser.add_argument(
        "--scale", type=float, default=1.0, help="feature scale; costs grow as its square"
    )
    parser.add_argument("--ref-cap-gib", type=float, default=6.0, help="skip larger references")
    parser.add_argument("--ours-cap-gib", type=float, default=16.0, help="skip larger of ours")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--no-epoch", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--epoch-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.epoch_worker:
        print(json.dumps(epoch_worker(json.loads(args.epoch_worker))))
        return

    sizes = args.sizes or ([1000] if args.quick else [1000, 5000, 20000])
    dims = args.dims or ([64] if args.quick else [64, 768])
    inners = args.inner or list(INNER_KINDS)
    import torch

    cores = len(os.sched_getaffinity(0))
    print(
        f"threads: torch {torch.get_num_threads()} intra-op, {cores} cores available; "
        f"ours float32 (torch), reference float64 (POT {__import__('ot').__version__}, numpy)"
    )
    print(
        f"{CLASSES} classes, feature scale {args.scale:g}, epsilon {EPSILON}, "
        f"outer {args.outer}, all points per side, "
        f"at most {PER_CLASS_CAP} per class in sample-based inner problems"
    )
    header = (
        f"{'n':>6} {'d':>4} {'inner':>8} | {'ours s':>8} {'peak MiB':>9} {'+MiB':>7} | "
        f"{'ref s':>8} {'peak MiB':>9} {'+MiB':>7} | {'ref/ours':>8} | "
        f"{'value ours':>11} {'value ref':>11} {'rel diff':>9}"
    )
    print(header)
    print("-" * len(header))
    notes = []
    for n in sizes:
        for d in dims:
            for inner in inners:
                spec = {"n": n, "d": d, "inner": inner, "outer": args.outer, "cap": None}
                spec["scale"] = args.scale
                if ours_memory_gib(n) > args.ours_cap_gib:
                    gib = ours_memory_gib(n)
                    notes.append(f"n={n} d={d} {inner}: skipped (est. {gib:.0f} GiB > cap)")
                    continue
                ours = run_worker({**spec, "side": "ours"})
                why_not = None
                if args.no_reference:
                    why_not = "--no-reference"
                elif math.ceil(n / CLASSES) > PER_CLASS_CAP and inner != "gaussian":
                    why_not = f"classes of {n // CLASSES} > {PER_CLASS_CAP}: ours subsamples"
                elif reference_memory_gib(n) > args.ref_cap_gib:
                    gib = reference_memory_gib(n)
                    why_not = f"est. {gib:.0f} GiB > --ref-cap-gib {args.ref_cap_gib:g}"
                ref = {} if why_not else run_worker({**spec, "side": "reference"})
                print(format_row(n, d, inner, ours, ref), flush=True)
                for side, result in (("ours", ours), ("reference", ref)):
                    if "error" in result:
                        notes.append(f"n={n} d={d} {inner}: {side} failed: {result['error']}")
                if why_not:
                    notes.append(f"n={n} d={d} {inner}: reference skipped ({why_not})")
    for note in notes:
        print("note: " + note)

    if not args.no_epoch:
        n_epoch, d_epoch = min(max(sizes), 5000), max(dims)
        print(
            f"\nembedder epoch (stage 2 loop: {CLASSES} target classes x 128 points, "
            f"backward per class, one step), source n={n_epoch}, d={d_epoch}:"
        )
        print(f"{'inner':>8} | {'build s':>8} {'cached s':>9} {'recomputed s':>13} | {'ratio':>6}")
        for inner in inners:
            result = run_worker(
                {"n": n_epoch, "d": d_epoch, "inner": inner, "scale": args.scale}, "--epoch-worker"
            )
            if "error" in result:
                print(f"{inner:>8} | failed: {result['error']}")
                continue
            ratio = result["recomputed"] / result["cached"]
            print(
                f"{inner:>8} | {result['build']:8.2f} {result['cached']:9.2f} "
                f"{result['recomputed']:13.2f} | {ratio:6.1f}",
                flush=True,
            )


def format_row(n: int, d: int, inner: str, ours: dict, ref: dict) -> str:
    def side(result: dict) -> str:
        if "seconds" not in result:
            return f"{'-':>8} {'-':>9} {'-':>7}"
        added = result["peak_mib"] - result["before_mib"]
        return f"{result['seconds']:8.2f} {result['peak_mib']:9.0f} {added:7.0f}"

    ratio = value_ref = rel = "-"
    if "seconds" in ours and "seconds" in ref:
        ratio = f"{ref['seconds'] / ours['seconds']:.1f}"
        value_ref = f"{ref['value']:.6g}"
        rel = f"{abs(ours['value'] - ref['value']) / abs(ref['value']):.1e}"
    value_ours = f"{ours['value']:.6g}" if "value" in ours else "-"
    return (
        f"{n:>6} {d:>4} {inner:>8} | {side(ours)} | {side(ref)} | {ratio:>8} | "
        f"{value_ours:>11} {value_ref:>11} {rel:>9}"
    )


if __name__ == "__main__":
    main()
