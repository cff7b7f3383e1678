"""The outer problem of OTDD: OT of the augmented cost M = D + label term, its value and the
gradient of that value with respect to the target points.

Notation
    x (n, d), y (m, d)   source and target points (shifted by a common vector: distances and
                         the gradient below do not depend on the shift)
    D (n, m)             ||x_i - y_j||^2;  M = D + W[class_i, class_j], W held fixed
    P (n, m)             the optimal (entropic or exact) coupling; r = P 1, c = P^T 1

By the envelope theorem the gradient of the optimal value with respect to M is P, so with
respect to the target points (through D only; the label term carries no gradient)

    cross term   d/dy_j sum_ij P_ij ||x_i - y_j||^2 = 2 (c_j y_j - (P^T x)_j)
    self term    y = x, P symmetric:  d/dx_k sum_ij P_ij ||x_i - x_j||^2 = 4 (r_k x_k - (P x)_k)

These are formed while the coupling is at hand (one (m, n) x (n, d) product, the same one
autograd would do), so no (n, m) array is kept for the backward pass and D is built without
autograd.

The solvers are registered by name in OUTER_KINDS (OTDDConfig.outer is checked against it):
    "sinkhorn"  entropic OT_eps, debiased: OTDD = OT_eps(s,t) - 1/2 OT_eps(s,s) - 1/2 OT_eps(t,t)
    "exact"     the exact OT cost min_P <P, M> (network simplex), not debiased
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from orca.otdd.exact import emd_plan, warm_potentials
from orca.otdd.solver import Solution, entropic_values, solve_one
from orca.registry import Registry

_EMD_MAX_ITER = 100_000_000  # network-simplex pivots for the outer exact problem


def entropic(
    cost: Tensor,
    epsilon: float,
    max_iter: int,
    tol: float,
    symmetric: bool = False,
    points: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor | None]:
    """OT_eps with uniform weights of cost (n, m) (float64 scalar), and with `points` = (x, y)
    the gradient (m, d) with respect to y (symmetric: y is x, the points of both sides)."""
    solution = solve_one(
        cost,
        None,
        None,
        epsilon,
        max_iter,
        tol,
        symmetric,
        keep_coupling=points is not None,
        kernel_name="outer kernel",
    )
    value = entropic_values(solution, epsilon)[0]
    if points is None:
        return value, None
    return value, _sinkhorn_gradient(solution, *points, symmetric)


def _sinkhorn_gradient(solution: Solution, x: Tensor, y: Tensor, symmetric: bool) -> Tensor:
    """The gradient for the coupling P = diag(rows) K diag(columns) of the solution."""
    with torch.no_grad():
        kernel, rows, columns = (part[0] for part in solution.scaled)  # (n, m), (n,), (m,)
        if symmetric:  # columns == rows
            product = rows.unsqueeze(1) * (kernel @ (rows.unsqueeze(1) * y))  # P y, (m, d)
            marginal = solution.rows[0].to(y.dtype).unsqueeze(1)  # (m, 1)
            return 4.0 * (marginal * y - product)
        product = columns.unsqueeze(1) * (kernel.T @ (rows.unsqueeze(1) * x))  # P^T x, (m, d)
        marginal = solution.columns[0].to(y.dtype).unsqueeze(1)  # (m, 1)
        return 2.0 * (marginal * y - product)


def exact(cost: Tensor, points: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """min_P <P, M> with uniform weights (float64 scalar), by POT's network simplex in float64
    on the CPU (warm-started: `orca.otdd.exact`), and with `points` = (x, y) the gradient
    (m, d) with respect to y for the optimal plan held fixed (exact where it is unique)."""
    (start,) = warm_potentials([cost])
    cost64 = cost.detach().to("cpu", torch.float64).contiguous()
    plan = torch.from_numpy(emd_plan(cost64.numpy(), start, _EMD_MAX_ITER))  # (n, m) float64
    value = (plan * cost64).sum().to(cost.device)
    if points is None:
        return value, None
    x, y = points
    with torch.no_grad():
        product = plan.T @ x.detach().to("cpu", torch.float64)  # P^T x, (m, d)
        marginal = plan.sum(0).unsqueeze(1)  # (m, 1)
        gradient = 2.0 * (marginal * y.detach().to("cpu", torch.float64) - product)
    return value, gradient.to(device=y.device, dtype=y.dtype)


@dataclass(frozen=True)
class OuterKind:
    """An outer solver: `solve(cost, epsilon, max_iter, tol, symmetric, points)` gives the
    value (float64 scalar) and, with `points` = (x, y), its gradient (m, d) with respect to
    y. `debiased`: OTDD subtracts half of each side's self term OT(s, s) and OT(t, t), which
    the same `solve` computes with symmetric=True (x is y, the points of both sides)."""

    solve: Callable[..., tuple[Tensor, Tensor | None]]
    debiased: bool


def _exact_solve(cost, epsilon, max_iter, tol, symmetric=False, points=None):
    """`exact` in the OuterKind signature: no regularisation, iteration cap or tolerance."""
    return exact(cost, points)


OUTER_KINDS: Registry[OuterKind] = Registry("outer kind")
OUTER_KINDS.register("sinkhorn", OuterKind(solve=entropic, debiased=True))
OUTER_KINDS.register("exact", OuterKind(solve=_exact_solve, debiased=False))
