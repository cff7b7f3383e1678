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

import math
from typing import NamedTuple

import torch
from torch import Tensor

_CHECK_EVERY = 10  # iterations between convergence checks (each check syncs a GPU)
_ANNEAL_FACTOR = 0.5  # epsilon-scaling: eps_k = max|C| * factor**k, down to the target eps


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
    Tiny negative values from rounding are clamped to zero.
    """
    shift = xa.detach().mean(dim=0, keepdim=True)  # (1, d)
    xa = xa - shift
    xb = xb - shift
    sq_a = (xa * xa).sum(dim=1, keepdim=True)  # (n, 1)
    sq_b = (xb * xb).sum(dim=1).unsqueeze(0)  # (1, m)
    return (sq_a + sq_b - 2.0 * xa @ xb.T).clamp_min(0.0)


def _log_weights(weights: Tensor | None, size: int, like: Tensor) -> Tensor:
    if weights is None:
        return torch.full((size,), -math.log(size), dtype=like.dtype, device=like.device)
    return weights.detach().to(dtype=like.dtype, device=like.device).log()


def _anneal_schedule(cost: Tensor, epsilon: float) -> list[float]:
    """Decreasing epsilons above the target, starting at the cost's largest magnitude."""
    scale = float(cost.abs().max()) if cost.numel() else 0.0
    schedule = []
    eps = scale
    while eps > epsilon:
        schedule.append(eps)
        eps *= _ANNEAL_FACTOR
    return schedule


def sinkhorn_potentials(
    cost: Tensor,
    a: Tensor | None = None,
    b: Tensor | None = None,
    epsilon: float = 0.1,
    max_iter: int = 1000,
    tol: float = 1e-6,
    symmetric: bool = False,
) -> SinkhornPotentials:
    """Solve the entropic OT problem in the log domain, without autograd.

    The solver first runs one sweep at each epsilon of a geometric schedule from max|C| down
    to `epsilon` (epsilon-scaling, a warm start), then iterates at `epsilon` until the L1 error
    of the row marginal is below `tol` (columns are exact after each sweep) or `max_iter`
    sweeps have run. Not reaching `tol` is not an error; see `marginal_error` in the result.

    `symmetric=True` is for self-transport (C symmetric, b = a): it iterates the averaged map
    f <- (f + T(f)) / 2 on a single potential, which converges in a handful of sweeps where
    alternating updates need thousands, and returns g = f. The caller vouches for symmetry.

    cost: (n, m); a: (n,) or None (uniform); b: (m,) or None (uniform, ignored if symmetric).
    """
    with torch.no_grad():
        cost = cost.detach()
        n, m = cost.shape
        log_a = _log_weights(a, n, cost)  # (n,)
        log_b = log_a if symmetric else _log_weights(b, m, cost)  # (m,)
        f = torch.zeros(n, dtype=cost.dtype, device=cost.device)
        g = torch.zeros(m, dtype=cost.dtype, device=cost.device)

        def update_f(g: Tensor, eps: float) -> Tensor:
            return -eps * torch.logsumexp((g.unsqueeze(0) - cost) / eps + log_b.unsqueeze(0), 1)

        def update_g(f: Tensor, eps: float) -> Tensor:
            return -eps * torch.logsumexp((f.unsqueeze(1) - cost) / eps + log_a.unsqueeze(1), 0)

        def sweep(f: Tensor, g: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
            """One sweep; also returns T(g), whose gap to f measures the row marginal."""
            f_next = update_f(g, eps)
            if symmetric:
                f_avg = 0.5 * (f + f_next)
                return f_avg, f_avg, f_next
            return f_next, update_g(f_next, eps), f_next

        for eps in _anneal_schedule(cost, epsilon):
            f, g, _ = sweep(f, g, eps)

        error = math.inf
        iterations = 0
        while iterations < max_iter and error >= tol:
            f_old = f
            f, g, f_next = sweep(f, g, epsilon)
            iterations += 1
            if iterations % _CHECK_EVERY == 0 or iterations == max_iter:
                # For the plan of (f_old, g_old): (P 1)_i = a_i exp((f_old_i - T(g_old)_i) / eps).
                row_mass = torch.exp(log_a + (f_old - f_next) / epsilon)  # (n,)
                error = float((row_mass - log_a.exp()).abs().sum())
    return SinkhornPotentials(f, g, iterations, error)


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
        log_a = _log_weights(a, n, cost)
        log_b = _log_weights(b, m, cost)
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

    Differentiable with respect to `cost` only: the plan is computed without autograd and the
    returned tensor is <P.detach(), cost> plus a constant, whose gradient P is the exact
    gradient of OT_eps at convergence (envelope theorem). Weights get no gradient.
    Units: those of `cost` (squared distance for a squared cost). `symmetric=True` selects the
    fast self-transport solver (see `sinkhorn_potentials`); pass it only for C = C^T, b = a.
    """
    potentials = sinkhorn_potentials(cost, a, b, epsilon, max_iter, tol, symmetric)
    plan = sinkhorn_plan(cost, potentials, a, a if symmetric else b, epsilon)  # (n, m)
    with torch.no_grad():
        f, g = potentials.f, potentials.g
        # eps * KL(P | a x b) = sum P (f_i + g_j - C_ij) - eps * (sum P - 1)
        log_ratio_eps = f.unsqueeze(1) + g.unsqueeze(0) - cost.detach()  # (n, m)
        entropy_term = (plan * log_ratio_eps).sum() - epsilon * (plan.sum() - 1.0)
    return (plan * cost).sum() + entropy_term


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
