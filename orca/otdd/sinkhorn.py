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

_ANNEAL_FACTOR = 0.25  # epsilon-scaling: eps_k = max|C| * factor**k, down to the target eps
_ANNEAL_TOL = 1e-2  # row-marginal L1 error at which an intermediate epsilon is left
_ANNEAL_SWEEPS = 50  # at most this many sweeps at an intermediate epsilon
_ABSORB_AT = 10.0  # |log| of a scaling beyond which it is folded into the potentials


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


def _log_weights(weights: Tensor | None, size: int, like: Tensor) -> Tensor:
    if weights is None:
        return torch.full((size,), -math.log(size), dtype=like.dtype, device=like.device)
    return weights.detach().to(dtype=like.dtype, device=like.device).log()


def _anneal_schedule(cost: Tensor, epsilon: float) -> list[float]:
    """Decreasing epsilons above the target, starting at the cost's largest magnitude."""
    if not cost.numel():
        return []
    low, high = torch.aminmax(cost)
    scale = max(abs(float(low)), abs(float(high)))
    schedule = []
    eps = scale
    while eps > epsilon:
        schedule.append(eps)
        eps *= _ANNEAL_FACTOR
    return schedule


class _Solution(NamedTuple):
    """Where the batched solver ended: potentials, marginals, and the kernel it last used."""

    f: Tensor  # (B, n) in the cost's dtype
    g: Tensor  # (B, m)
    rows: Tensor  # (B, n) float64, row marginal P 1 of the final potentials
    columns: Tensor  # (B, m) float64, column marginal P^T 1
    iterations: int
    errors: Tensor  # (B,) float64, L1 row-marginal error per problem


class _Kernel:
    """Batched Sinkhorn in the scaling domain, stabilised by absorption (Schmitzer 2019).

    The potentials are split as f = f0 + eps log u and g = g0 + eps log v. The kernel
    K_ij = exp((f0_i + g0_j - C_ij) / eps) is formed once per absorption, after which a sweep
    is two batched matrix-vector products instead of two log-sum-exp passes over (n, m):

        u <- 1 / K (b v)        v <- 1 / K^T (a u)        (symmetric: u <- sqrt(u / K (a u)))

    Whenever |log u| or |log v| exceeds _ABSORB_AT, they are folded into (f0, g0) and K is
    rebuilt, which keeps K within the floating range; the log-domain c-transform is the
    fallback should a kernel row or column ever vanish. Padded points (weight 0, `valid`
    False) get kernel entries 1 so that every product stays finite; they carry no mass.
    """

    def __init__(self, cost, log_a, log_b, valid, symmetric):
        self.cost = cost  # (B, n, m)
        self.log_a, self.log_b = log_a, log_b  # (B, n), (B, m); -inf marks padding
        self.a, self.b = log_a.exp(), log_b.exp()
        self.valid = valid  # (B, n, m) bool or None
        self.valid_a = torch.isfinite(log_a)
        self.valid_b = torch.isfinite(log_b)
        self.symmetric = symmetric
        batch, n, m = cost.shape
        self.f0 = torch.zeros(batch, n, dtype=cost.dtype, device=cost.device)
        self.g0 = self.f0 if symmetric else cost.new_zeros(batch, m)
        self.u = torch.ones_like(self.f0)
        self.v = self.u if symmetric else torch.ones_like(self.g0)
        self.eps = math.inf
        self.kernel = torch.empty_like(cost)  # one buffer, rewritten by every build

    def build(self, eps: float) -> None:
        """Fold the scalings into the potentials and form the kernel at `eps`."""
        self.absorb()
        self.eps = eps
        # (g0_j - C_ij) / eps, then + f0_i / eps, then exp, in one buffer
        kernel = self.kernel  # (B, n, m)
        torch.sub(self.g0.unsqueeze(1) / eps, self.cost, alpha=1.0 / eps, out=kernel)
        kernel.add_(self.f0.unsqueeze(2) / eps).exp_()
        if self.valid is not None:
            kernel.masked_fill_(~self.valid, 1.0)

    def absorb(self) -> None:
        if math.isinf(self.eps):
            return
        self.f0 = self.f0 + self.eps * self.u.log()
        self.u = torch.ones_like(self.f0)
        if self.symmetric:
            self.g0, self.v = self.f0, self.u
        else:
            self.g0 = self.g0 + self.eps * self.v.log()
            self.v = torch.ones_like(self.g0)

    def potentials(self) -> tuple[Tensor, Tensor]:
        f = self.f0 + self.eps * self.u.log()
        g = f if self.symmetric else self.g0 + self.eps * self.v.log()
        return f, g

    def _times(self, vector: Tensor) -> Tensor:  # K x, (B, n)
        return torch.bmm(self.kernel, vector.unsqueeze(2)).squeeze(2)

    def _times_transposed(self, vector: Tensor) -> Tensor:  # K^T x, (B, m)
        return torch.bmm(vector.unsqueeze(1), self.kernel).squeeze(1)

    def sweep(self) -> Tensor:
        """One sweep; returns the L1 row-marginal error (B,) of the state BEFORE it."""
        if self.symmetric:
            kv = self._times(self.a * self.u)  # (B, n)
            rows = self.a * self.u * kv
            self.u = (self.u / kv).sqrt()
            self.v = self.u
        else:
            kv = self._times(self.b * self.v)  # (B, n)
            rows = self.a * self.u * kv
            self.u = 1.0 / kv
            self.v = 1.0 / self._times_transposed(self.a * self.u)  # (B, m)
        largest = self._largest_log_scaling()  # inf or nan if a scaling over- or underflowed
        if not math.isfinite(largest):
            self.rescue()
        elif largest > _ABSORB_AT:
            self.build(self.eps)
        return (rows.double() - self.a.double()).abs().sum(dim=1)

    def _largest_log_scaling(self) -> float:
        """max |log u|, |log v| over real points (nan propagates through max)."""
        logs = (
            [(self.u, self.valid_a)]
            if self.symmetric
            else [(self.u, self.valid_a), (self.v, self.valid_b)]
        )
        largest = 0.0
        for scaling, valid in logs:
            log_abs = scaling.log().abs_()
            if self.valid is not None:
                log_abs.masked_fill_(~valid, 0.0)
            value = float(log_abs.max())
            if not value <= largest:  # larger, or nan
                largest = value
        return largest

    def rescue(self) -> None:
        """Log-domain c-transforms from the last finite potentials, then a fresh kernel."""
        eps, cost = self.eps, self.cost
        self.u = torch.ones_like(self.f0)
        self.v = self.u if self.symmetric else torch.ones_like(self.g0)
        g = self.g0
        f = -eps * torch.logsumexp((g.unsqueeze(1) - cost) / eps + self.log_b.unsqueeze(1), 2)
        f = f.masked_fill(~self.valid_a, 0.0)
        if self.symmetric:
            self.f0 = self.g0 = 0.5 * (self.f0 + f)
        else:
            g = -eps * torch.logsumexp((f.unsqueeze(2) - cost) / eps + self.log_a.unsqueeze(2), 1)
            self.f0, self.g0 = f, g.masked_fill(~self.valid_b, 0.0)
        self.eps = math.inf  # nothing to absorb
        self.build(eps)

    def marginals(self) -> tuple[Tensor, Tensor]:
        """Row and column sums (float64) of the plan of the current potentials."""
        rows = self.a * self.u * self._times(self.b * self.v)
        columns = self.b * self.v * self._times_transposed(self.a * self.u)
        return rows.double(), columns.double()


def _solve_batched(
    cost: Tensor,
    log_a: Tensor,
    log_b: Tensor,
    epsilon: float,
    max_iter: int,
    tol: float,
    symmetric: bool,
    valid: Tensor | None = None,
) -> _Solution:
    """Entropic OT for a batch of problems: cost (B, n, m), log weights (B, n) and (B, m)
    (-inf on padding, with `valid` (B, n, m) marking real entries). Iterates until every
    problem's L1 row-marginal error is below `tol`, or `max_iter` sweeps at `epsilon`.
    Padded cost entries must be 0 (they set the start of the epsilon schedule)."""
    with torch.no_grad():
        cost = cost.detach()
        solver = _Kernel(cost, log_a, log_b, valid, symmetric)
        for eps in _anneal_schedule(cost, epsilon):
            solver.build(eps)
            for _ in range(_ANNEAL_SWEEPS):
                if float(solver.sweep().max()) < _ANNEAL_TOL:
                    break
        solver.build(epsilon)
        iterations = 0
        while iterations < max_iter:
            errors = solver.sweep()  # the error of the state before this sweep
            iterations += 1
            if float(errors.max()) < tol:
                break
        rows, columns = solver.marginals()
        errors = (rows - solver.a.double()).abs().sum(dim=1)  # of the state returned
        f, g = solver.potentials()
        f = f.masked_fill(~solver.valid_a, 0.0)
        g = g.masked_fill(~solver.valid_b, 0.0)
    return _Solution(f, g, rows, columns, iterations, errors)


def _solve(cost, a, b, epsilon, max_iter, tol, symmetric) -> _Solution:
    cost = cost.detach()
    n, m = cost.shape
    log_a = _log_weights(a, n, cost)  # (n,)
    log_b = log_a if symmetric else _log_weights(b, m, cost)  # (m,)
    return _solve_batched(
        cost.unsqueeze(0),
        log_a.unsqueeze(0),
        log_b.unsqueeze(0),
        epsilon,
        max_iter,
        tol,
        symmetric,
    )


def batched_sinkhorn_costs(
    cost: Tensor,
    log_a: Tensor,
    log_b: Tensor,
    epsilon: float = 0.1,
    max_iter: int = 1000,
    tol: float = 1e-6,
    symmetric: bool = False,
) -> Tensor:
    """OT_eps for a batch of independent problems of different sizes, padded to one shape.

    cost (B, n, m) with 0 on padding; log_a (B, n) and log_b (B, m) are log weights, -inf on
    padded points (each real row of weights sums to 1). Returns (B,) float64 values, detached.
    All problems share one solver loop, which runs until the slowest meets `tol`.
    """
    valid = torch.isfinite(log_a).unsqueeze(2) & torch.isfinite(log_b).unsqueeze(1)
    valid = None if bool(valid.all()) else valid
    solution = _solve_batched(cost, log_a, log_b, epsilon, max_iter, tol, symmetric, valid)
    return _entropic_values(solution, epsilon)


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

    The solver first passes through a geometric schedule of epsilons from max|C| down to
    `epsilon` (epsilon-scaling, a warm start), then sweeps at `epsilon` until the L1 error
    of the row marginal is below `tol` (columns are exact after each sweep) or `max_iter`
    sweeps have run. Not reaching `tol` is not an error; see `marginal_error` in the result.
    The potentials are held in the log domain; each sweep is two matrix-vector products with
    a kernel that is rebuilt whenever the scalings leave a safe range (see `_Kernel`).

    `symmetric=True` is for self-transport (C symmetric, b = a): it iterates the averaged map
    f <- (f + T(f)) / 2 on a single potential, which converges in a handful of sweeps where
    alternating updates need thousands, and returns g = f. The caller vouches for symmetry.

    cost: (n, m); a: (n,) or None (uniform); b: (m,) or None (uniform, ignored if symmetric).
    """
    solution = _solve(cost, a, b, epsilon, max_iter, tol, symmetric)
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
        log_a = _log_weights(a, n, cost)
        log_b = _log_weights(b, m, cost)
        f, g = potentials.f, potentials.g
        log_p = (f.unsqueeze(1) + g.unsqueeze(0) - cost) / epsilon  # (n, m)
        return torch.exp(log_p + log_a.unsqueeze(1) + log_b.unsqueeze(0))


def _entropic_values(solution: _Solution, epsilon: float) -> Tensor:
    """OT_eps per problem (B,), float64, from the dual potentials and the plan's marginals:
    <P, C> + eps KL(P | a x b) = sum P (f_i + g_j) - eps (sum P - 1) for P of (f, g)."""
    f, g = solution.f.double(), solution.g.double()
    rows, columns = solution.rows, solution.columns
    return (f * rows).sum(1) + (g * columns).sum(1) - epsilon * (rows.sum(1) - 1.0)


class _LinearInCost(torch.autograd.Function):
    """A precomputed value whose gradient with respect to the cost is the given plan."""

    @staticmethod
    def forward(ctx, cost: Tensor, plan: Tensor, value: Tensor) -> Tensor:
        ctx.save_for_backward(plan)
        return value.clone()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        (plan,) = ctx.saved_tensors
        return grad * plan, None, None


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
    solution = _solve(cost, a, b, epsilon, max_iter, tol, symmetric)
    value = _entropic_values(solution, epsilon)[0].to(cost.dtype)
    if not (cost.requires_grad and torch.is_grad_enabled()):
        return value
    potentials = SinkhornPotentials(solution.f[0], solution.g[0], solution.iterations, 0.0)
    plan = sinkhorn_plan(cost, potentials, a, a if symmetric else b, epsilon)  # (n, m)
    return _LinearInCost.apply(cost, plan, value)


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
