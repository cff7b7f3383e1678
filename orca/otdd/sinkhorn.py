"""Entropic optimal transport: a log-domain Sinkhorn solver and the debiased divergence.

Notation
    n, m      number of points on side a and side b
    C         ground cost, (n, m); here a squared distance, so the values are squared units
    a, b      weights, (n,) and (m,), each summing to 1 (uniform when not given)
    eps       entropic regularisation, in the units of C (epsilon = blur ** 2 for p = 2)
    f, g      dual potentials, (n,) and (m,)
    P         entropic coupling, P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps), (n, m)

The value used everywhere in this package is the full entropic OT value

    OT_eps(a, b; C) = <P, C> + eps * KL(P | a x b),

the minimum of the regularised problem, and not the bare transport cost <P, C>. Two reasons:
its gradient with respect to C is exactly P (envelope theorem), so the plan can be computed
without autograd and the gradient is still exact at convergence; and its debiased form

    S_eps(a, b) = OT_eps(a, b; C_ab) - 1/2 OT_eps(a, a; C_aa) - 1/2 OT_eps(b, b; C_bb)

is the Sinkhorn divergence of Feydy et al. (AISTATS 2019), which is non-negative, zero for
identical inputs, and is what GeomLoss (used by microsoft/otdd and the ORCA authors) computes.
KL is the generalised one, sum P log(P / ab) - sum P + sum ab, which equals the ordinary KL at
convergence. POT's `sinkhorn2` and `empirical_sinkhorn_divergence` return <P, C> instead; the
coupling P is the same, so the two differ by eps * KL.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from orca.otdd.solver import (
    entropic_values,
    log_weights,
    solve_one,
    with_gradient,
)


class SinkhornPotentials(NamedTuple):
    """Dual potentials of the entropic problem and how the solver ended."""

    f: Tensor  # (n,)
    g: Tensor  # (m,)
    iterations: int
    marginal_error: float  # L1 error of the row marginal, sum_i |(P 1)_i - a_i|


def squared_distances(xa: Tensor, xb: Tensor) -> Tensor:
    """Squared Euclidean distances ||xa_i - xb_j||^2, (n, m), differentiable in both inputs.

    Uses the expansion |x|^2 + |y|^2 - 2 x.y after shifting both sets by the (detached) mean of
    `xa`, which leaves distances unchanged but reduces cancellation for far-from-origin data.
    Tiny negative values from rounding are clamped to zero. Without autograd, the (n, m)
    result is the only (n, m) allocation (large buffers are fresh pages, which cost time).
    """
    shift = xa.detach().mean(dim=0, keepdim=True)  # (1, d)
    xa = xa - shift
    xb = xb - shift
    sq_a = (xa * xa).sum(dim=1, keepdim=True)  # (n, 1)
    sq_b = (xb * xb).sum(dim=1).unsqueeze(0)  # (1, m)
    distances = torch.addmm(sq_b, xa, xb.T, alpha=-2.0)  # |y|^2 - 2 x.y, (n, m)
    if torch.is_grad_enabled() and (xa.requires_grad or xb.requires_grad):
        return (distances + sq_a).clamp_min(0.0)
    return distances.add_(sq_a).clamp_min_(0.0)


def sinkhorn_potentials(
    cost: Tensor,
    a: Tensor | None = None,
    b: Tensor | None = None,
    epsilon: float = 0.1,
    max_iter: int = 1000,
    tol: float = 1e-6,
    symmetric: bool = False,
) -> SinkhornPotentials:
    """Solve the entropic OT problem (stabilised scaling iterations), without autograd.

    The solver first passes through a geometric schedule of epsilons from max|C| / 10 down
    to `epsilon` by factors of 4, up to 3 sweeps each (epsilon-scaling, a warm start; none
    when epsilon >= max|C| / 10, nor for symmetric problems), then
    sweeps at `epsilon` until the L1 error of the row marginal is below `tol` (columns are
    exact after each sweep), or `max_iter` sweeps have run, or the error has stalled at the
    rounding floor of the dtype (see `orca.otdd.solver.solve_batched`). Not reaching `tol`
    is not an error; see `marginal_error` in the result.
    The potentials are held in the log domain; each sweep is two matrix-vector products with
    a kernel that is rebuilt whenever the scalings leave a safe range (see `orca.otdd.solver`).

    `symmetric=True` is for self-transport (C symmetric, b = a): it iterates the averaged map
    f <- (f + T(f)) / 2 on a single potential, which converges in a handful of sweeps where
    alternating updates need thousands, and returns g = f. The caller vouches for symmetry.

    cost: (n, m); a: (n,) or None (uniform); b: (m,) or None (uniform, ignored if symmetric).
    """
    solution = solve_one(cost, a, b, epsilon, max_iter, tol, symmetric)
    return SinkhornPotentials(
        solution.f[0], solution.g[0], solution.iterations, float(solution.errors[0])
    )


def sinkhorn_plan(
    cost: Tensor,
    potentials: SinkhornPotentials,
    a: Tensor | None = None,
    b: Tensor | None = None,
    epsilon: float = 0.1,
) -> Tensor:
    """The coupling P (n, m) of given potentials, detached. Weights as in `sinkhorn_potentials`."""
    with torch.no_grad():
        cost = cost.detach()
        n, m = cost.shape
        log_a = log_weights(a, n, cost)
        log_b = log_weights(b, m, cost)
        f, g = potentials.f, potentials.g
        log_p = (f.unsqueeze(1) + g.unsqueeze(0) - cost) / epsilon  # (n, m)
        return torch.exp(log_p + log_a.unsqueeze(1) + log_b.unsqueeze(0))


def sinkhorn_cost(
    cost: Tensor,
    a: Tensor | None = None,
    b: Tensor | None = None,
    epsilon: float = 0.1,
    max_iter: int = 1000,
    tol: float = 1e-6,
    symmetric: bool = False,
) -> Tensor:
    """Entropic OT value OT_eps = <P, C> + eps * KL(P | a x b), a scalar tensor.

    Differentiable with respect to `cost` only: the plan is computed without autograd and
    the gradient of the returned value is P, the exact gradient of OT_eps at convergence
    (envelope theorem); the (n, m) plan is only formed when a gradient is wanted. Weights get
    no gradient. Units: those of `cost` (squared distance for a squared cost).
    `symmetric=True` selects the fast self-transport solver (see `sinkhorn_potentials`);
    pass it only for C = C^T, b = a.
    """
    solution = solve_one(cost, a, b, epsilon, max_iter, tol, symmetric)
    value = entropic_values(solution, epsilon)[0].to(cost.dtype)
    if not (cost.requires_grad and torch.is_grad_enabled()):
        return value
    potentials = SinkhornPotentials(solution.f[0], solution.g[0], solution.iterations, 0.0)
    plan = sinkhorn_plan(cost, potentials, a, a if symmetric else b, epsilon)  # (n, m)
    return with_gradient(cost, value, plan)  # d value / d cost = plan


def sinkhorn_divergence(
    cost_ab: Tensor,
    cost_aa: Tensor,
    cost_bb: Tensor,
    a: Tensor | None = None,
    b: Tensor | None = None,
    epsilon: float = 0.1,
    max_iter: int = 1000,
    tol: float = 1e-6,
) -> Tensor:
    """Debiased Sinkhorn divergence S_eps = OT_eps(a,b) - 1/2 OT_eps(a,a) - 1/2 OT_eps(b,b).

    cost_ab: (n, m), cost_aa: (n, n), cost_bb: (m, m), all in the same units; OT_eps is the
    full entropic value (see the module docstring). Zero when the two sides are identical.
    The self terms use the symmetric solver, so cost_aa and cost_bb must be symmetric.
    Differentiable with respect to the three costs.
    """
    cross = sinkhorn_cost(cost_ab, a, b, epsilon, max_iter, tol)
    self_a = sinkhorn_cost(cost_aa, a, a, epsilon, max_iter, tol, symmetric=True)
    self_b = sinkhorn_cost(cost_bb, b, b, epsilon, max_iter, tol, symmetric=True)
    return cross - 0.5 * self_a - 0.5 * self_b
