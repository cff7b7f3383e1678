"""The batched entropic OT solver behind `orca.otdd.sinkhorn`: scaling iterations with
absorption (Schmitzer 2019) and epsilon-scaling, for B independent problems at once.

Notation (see `orca.otdd.sinkhorn` for the value that is computed from the result)
    B, n, m   problems in the batch, points on side a and on side b (padded to the largest)
    C         costs (B, n, m); 0 on padded entries
    log_a     log weights (B, n), -inf on padded points; log_b (B, m) likewise
    f, g      dual potentials; f = f0 + eps log u, g = g0 + eps log v
    K         kernel exp((f0_i + g0_j - C_ij) / eps), (B, n, m)
    P         coupling diag(a u) K diag(b v), i.e. a_i b_j exp((f_i + g_j - C_ij) / eps)

Why a solver of our own rather than POT's or geomloss's: OTDD solves hundreds of small
class-pair problems (up to 500 x 500 each, of unequal sizes) plus the large outer one, many
times per embedder epoch. POT takes one Python call per problem; geomloss batches only
clouds of equal size, and microsoft/otdd's default redone on it (one call per class pair,
tensorized backend) took 21-27 s on 5k x 5k points, d = 64, where OTDD on this solver takes
1.5-2.2 s at the same epsilon (benchmarks/bench_otdd_reference.py). Its values are tested against
POT's `sinkhorn2` and `emd2` (tests/test_otdd.py, tests/test_otdd_small_epsilon.py).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from orca.otdd.scratch import scratch

_ANNEAL_START = 10.0  # epsilon-scaling starts at max|C| / this (kernel entries >= e^-10)
_ANNEAL_FACTOR = 0.25  # and goes on as eps_k = start * factor**k while above the target eps
_ANNEAL_TOL = 0.3  # row-marginal L1 error at which an intermediate epsilon is left
_ANNEAL_SWEEPS = 3  # at most this many sweeps at an intermediate epsilon
EXPONENT_FLOOR = -50.0  # e^-50 times a scaling >= e^-30 stays a normal float32
_ABSORB_AT = 30.0  # |log| of a scaling beyond which it is folded into the potentials
# Precision floor: below _FLOOR_ZONE * (machine epsilon of the dtype), an error that has not
# dropped by _STALL_GAIN (relative) in _STALL_SWEEPS sweeps is rounding noise, not progress.
_FLOOR_ZONE = 1e3
_STALL_SWEEPS = 50
_STALL_GAIN = 0.05


def log_weights(weights: Tensor | None, size: int, like: Tensor) -> Tensor:
    """Log of the given weights (size,), or of uniform ones, in `like`'s dtype and device."""
    if weights is None:
        return torch.full((size,), -math.log(size), dtype=like.dtype, device=like.device)
    return weights.detach().to(dtype=like.dtype, device=like.device).log()


def _schedule(scale: float, epsilon: float) -> list[float]:
    """Decreasing epsilons above the target, starting at the cost's largest magnitude over
    _ANNEAL_START, where a kernel from zero potentials is still well inside the floating
    range; empty when the target epsilon is already there."""
    schedule = []
    eps = scale / _ANNEAL_START
    while eps > epsilon:
        schedule.append(eps)
        eps *= _ANNEAL_FACTOR
    return schedule


class _DenseCost:
    """Costs (B, n, m) as one tensor (0 on padded entries)."""

    def __init__(self, cost: Tensor) -> None:
        self.cost = cost
        self.shape, self.dtype, self.device = cost.shape, cost.dtype, cost.device

    def largest(self) -> float:
        if not self.cost.numel():
            return 0.0
        low, high = torch.aminmax(self.cost)
        return max(abs(float(low)), abs(float(high)))

    def exponent(self, f0: Tensor | None, g0: Tensor, eps: float, out: Tensor) -> None:
        """out = (f0_i + g0_j - C_ij) / eps on every entry (f0 None: taken as 0)."""
        torch.sub(g0.unsqueeze(1) / eps, self.cost, alpha=1.0 / eps, out=out)
        if f0 is not None:
            out.add_(f0.unsqueeze(2) / eps)

    def dense(self) -> Tensor:
        return self.cost


class _BlockCost:
    """Costs given as B blocks (n_k, m_k) of any strides (e.g. views into one distance
    matrix), standing for the top-left corners of a zero-padded (B, n, m) batch that is
    never materialised: the kernel is written block by block, which saves a copy of the
    costs (a pass over memory, and a buffer the size of the kernel)."""

    def __init__(self, blocks: list[Tensor], n: int, m: int) -> None:
        self.blocks = blocks
        first = blocks[0]
        self.shape, self.dtype, self.device = (len(blocks), n, m), first.dtype, first.device

    def largest(self) -> float:
        largest = 0.0
        for block in self.blocks:
            if block.numel():
                low, high = torch.aminmax(block)
                largest = max(largest, abs(float(low)), abs(float(high)))
        return largest

    def exponent(self, f0: Tensor | None, g0: Tensor, eps: float, out: Tensor) -> None:
        """out = (f0_i + g0_j - C_ij) / eps on each block's entries (padding untouched;
        f0 None: taken as 0)."""
        for k, block in enumerate(self.blocks):
            n, m = block.shape
            part = out[k, :n, :m]
            torch.sub(g0[k, :m] / eps, block, alpha=1.0 / eps, out=part)
            if f0 is not None:
                part.add_(f0[k, :n].unsqueeze(1) / eps)

    def dense(self) -> Tensor:
        cost = self.blocks[0].new_zeros(self.shape)
        for k, block in enumerate(self.blocks):
            cost[k, : block.shape[0], : block.shape[1]] = block
        return cost


class Scaled(NamedTuple):
    """The final coupling in factored form, P = diag(rows) K diag(columns), per problem."""

    kernel: Tensor  # (B, n, m)
    rows: Tensor  # (B, n), a * u
    columns: Tensor  # (B, m), b * v


class Solution(NamedTuple):
    """Where the batched solver ended: potentials, marginals, and (on request) the coupling."""

    f: Tensor  # (B, n) in the cost's dtype
    g: Tensor  # (B, m)
    rows: Tensor  # (B, n) float64, row marginal P 1 of the final potentials
    columns: Tensor  # (B, m) float64, column marginal P^T 1
    iterations: int
    errors: Tensor  # (B,) float64, L1 row-marginal error per problem
    scaled: Scaled | None  # the coupling, when asked for (it holds the (B, n, m) kernel)


class _Kernel:
    """Batched Sinkhorn in the scaling domain, stabilised by absorption.

    The kernel K is formed once per absorption, after which a sweep is two batched
    matrix-vector products instead of two log-sum-exp passes over (n, m):

        u <- 1 / K (b v)        v <- 1 / K^T (a u)        (symmetric: u <- sqrt(u / K (a u)))

    Whenever |log u| or |log v| exceeds _ABSORB_AT, they are folded into (f0, g0) and K is
    rebuilt, which keeps K within the floating range; the log-domain c-transform is the
    fallback should a kernel row or column ever vanish. Padded points (weight 0, `valid`
    False) get kernel entries 1 so that every product stays finite; they carry no mass.
    """

    def __init__(self, cost, log_a, log_b, valid, symmetric, kernel_name=None):
        self.cost = cost  # _DenseCost or _BlockCost, (B, n, m)
        self.log_a, self.log_b = log_a, log_b  # (B, n), (B, m); -inf marks padding
        self.a, self.b = log_a.exp(), log_b.exp()
        self.valid = valid  # (B, n, m) bool or None
        self.valid_a = torch.isfinite(log_a)
        self.valid_b = torch.isfinite(log_b)
        self.symmetric = symmetric
        self.f0 = torch.zeros_like(log_a)  # (B, n)
        self.g0 = self.f0 if symmetric else torch.zeros_like(log_b)  # (B, m)
        self.u = torch.ones_like(self.f0)
        self.v = self.u if symmetric else torch.ones_like(self.g0)
        self.eps = math.inf
        self.kernel = scratch(kernel_name, cost.shape, log_a)  # rewritten by every build

    def build(self, eps: float, level_start: bool = False) -> None:
        """Fold the scalings into the potentials and form the kernel at `eps`.

        `level_start` (a new epsilon of the schedule) first folds each row's largest
        exponent into f0 (a hard c-transform of g: every row then has an entry 1). The next
        row update recomputes f from g anyway, so this moves nothing the sweep keeps; it
        keeps the first sweep's scalings inside the floating range, where potentials of a
        larger epsilon would otherwise send them out of it (and the log-domain rescue costs
        two log-sum-exp passes over the cost)."""
        self.absorb()
        self.eps = eps
        kernel = self.kernel  # (B, n, m)
        if level_start and not self.symmetric:  # the fold sets f0: its old value drops out
            self.cost.exponent(None, self.g0, eps, kernel)
            self._fold_largest_exponents(kernel, eps)
        else:
            self.cost.exponent(self.f0, self.g0, eps, kernel)
        # exp is ten times slower on arguments whose result underflows or is subnormal, and
        # so are products with subnormal kernel entries: entries below e^EXPONENT_FLOOR
        # (negligible next to a row's largest, about 1 after a fold or near convergence)
        # are raised to it.
        kernel.clamp_(min=EXPONENT_FLOOR).exp_()
        if self.valid is not None:
            kernel.masked_fill_(~self.valid, 1.0)

    def _fold_largest_exponents(self, exponent: Tensor, eps: float) -> None:
        """f0_i = -eps max_j E_ij for E = (g0_j - C_ij) / eps, with E updated in place:
        every row gets an entry 1."""
        if self.valid is not None:
            exponent.masked_fill_(~self.valid, -math.inf)
        largest = exponent.amax(dim=2).masked_fill_(~self.valid_a, 0.0)  # (B, n)
        exponent.sub_(largest.unsqueeze(2))
        self.f0 = -eps * largest

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

    def times(self, vector: Tensor) -> Tensor:  # K x, (B, n)
        # as x^T K^T: batched row-vector products run at memory speed, column ones do not
        return torch.bmm(vector.unsqueeze(1), self.kernel.transpose(1, 2)).squeeze(1)

    def times_transposed(self, vector: Tensor) -> Tensor:  # K^T x, (B, m)
        return torch.bmm(vector.unsqueeze(1), self.kernel).squeeze(1)

    def sweep(self) -> Tensor:
        """One sweep; returns the L1 row-marginal error (B,) of the state BEFORE it."""
        if self.symmetric:
            kv = self.times(self.a * self.u)  # (B, n)
            rows = self.a * self.u * kv
            self.u = (self.u / kv).sqrt()
            self.v = self.u
        else:
            kv = self.times(self.b * self.v)  # (B, n)
            rows = self.a * self.u * kv
            self.u = 1.0 / kv
            self.v = 1.0 / self.times_transposed(self.a * self.u)  # (B, m)
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
        eps, cost = self.eps, self.cost.dense()
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
        """Row and column sums (float64) of the plan of the current potentials (one product
        in the symmetric case, where the plan is symmetric)."""
        rows = (self.a * self.u * self.times(self.b * self.v)).double()
        if self.symmetric:
            return rows, rows
        columns = self.b * self.v * self.times_transposed(self.a * self.u)
        return rows, columns.double()


def solve_batched(
    cost: Tensor,
    log_a: Tensor,
    log_b: Tensor,
    epsilon: float,
    max_iter: int,
    tol: float,
    symmetric: bool,
    valid: Tensor | None = None,
    keep_coupling: bool = False,
    kernel_name: str | None = None,
) -> Solution:
    """Entropic OT for a batch of problems: cost (B, n, m), log weights (B, n) and (B, m)
    (-inf on padding, with `valid` (B, n, m) marking real entries). Iterates until every
    problem's L1 row-marginal error is below `tol`, or `max_iter` sweeps at `epsilon`, or
    the error has reached the precision floor of the dtype (a float32 matrix-vector product
    over thousands of points cannot resolve an L1 error of 1e-6): when the error is below
    _FLOOR_ZONE machine epsilons and has not dropped by _STALL_GAIN in _STALL_SWEEPS
    sweeps, it is rounding noise and the loop stops (`Solution.errors` reports it).
    Padded cost entries must be 0 (they set the start of the epsilon schedule).
    `keep_coupling` returns the final coupling in factored form (`Solution.scaled`);
    `kernel_name` names the scratch buffer the kernel lives in (`orca.otdd.scratch`)."""
    cost = _DenseCost(cost.detach())
    return _solve(
        cost, log_a, log_b, epsilon, max_iter, tol, symmetric, valid, keep_coupling, kernel_name
    )


def solve_blocks(
    blocks: list[Tensor],
    epsilon: float,
    max_iter: int,
    tol: float,
    symmetric: bool,
    kernel_name: str | None = None,
) -> Solution:
    """`solve_batched` for B cost blocks (n_k, m_k) of any strides with uniform weights, as
    one batch zero-padded to the largest shape, without copying the blocks."""
    n = max(block.shape[0] for block in blocks)
    m = max(block.shape[1] for block in blocks)
    first = blocks[0]
    log_a = torch.full((len(blocks), n), -math.inf, dtype=first.dtype)
    log_b = torch.full((len(blocks), m), -math.inf, dtype=first.dtype)
    for k, block in enumerate(blocks):
        log_a[k, : block.shape[0]] = -math.log(block.shape[0])
        log_b[k, : block.shape[1]] = -math.log(block.shape[1])
    log_a, log_b = log_a.to(first.device), log_b.to(first.device)
    valid = None  # (B, n, m) mask of real entries, needed only with padding
    if any(block.shape != (n, m) for block in blocks):
        valid = torch.isfinite(log_a).unsqueeze(2) & torch.isfinite(log_b).unsqueeze(1)
    cost = _BlockCost([block.detach() for block in blocks], n, m)
    return _solve(cost, log_a, log_b, epsilon, max_iter, tol, symmetric, valid, False, kernel_name)


def solve_one(
    cost: Tensor,
    a: Tensor | None,
    b: Tensor | None,
    epsilon: float,
    max_iter: int,
    tol: float,
    symmetric: bool,
    keep_coupling: bool = False,
    kernel_name: str | None = None,
) -> Solution:
    """One problem, cost (n, m) with weights a (n,) and b (m,) (None: uniform), solved as a
    batch of one by `solve_batched`; symmetric problems use a for both sides."""
    cost = cost.detach()
    n, m = cost.shape
    log_a = log_weights(a, n, cost)  # (n,)
    log_b = log_a if symmetric else log_weights(b, m, cost)  # (m,)
    return solve_batched(
        cost.unsqueeze(0),
        log_a.unsqueeze(0),
        log_b.unsqueeze(0),
        epsilon,
        max_iter,
        tol,
        symmetric,
        keep_coupling=keep_coupling,
        kernel_name=kernel_name,
    )


def _solve(cost, log_a, log_b, epsilon, max_iter, tol, symmetric, valid, keep_coupling, name):
    with torch.no_grad():
        solver = _Kernel(cost, log_a, log_b, valid, symmetric, name)
        # The averaged symmetric map converges in a few sweeps from any start: no schedule.
        for eps in [] if symmetric else _schedule(cost.largest(), epsilon):
            solver.build(eps, level_start=True)
            for _ in range(_ANNEAL_SWEEPS):
                if float(solver.sweep().max()) < _ANNEAL_TOL:
                    break
        solver.build(epsilon, level_start=True)
        iterations, stalled, level = 0, 0, math.inf  # level: error at the last real gain
        floor = _FLOOR_ZONE * torch.finfo(log_a.dtype).eps
        while iterations < max_iter:
            errors = solver.sweep()  # the error of the state before this sweep
            iterations += 1
            worst = float(errors.max())
            if worst < tol:
                break
            if worst < (1.0 - _STALL_GAIN) * level:
                level, stalled = worst, 0
            else:
                stalled += 1
            if stalled >= _STALL_SWEEPS and level < floor:
                break  # at the dtype's precision floor: more sweeps cannot lower the error
        rows, columns = solver.marginals()
        errors = (rows - solver.a.double()).abs().sum(dim=1)  # of the state returned
        f, g = solver.potentials()
        f = f.masked_fill(~solver.valid_a, 0.0)
        g = g.masked_fill(~solver.valid_b, 0.0)
        scaled = None
        if keep_coupling:
            scaled = Scaled(solver.kernel, solver.a * solver.u, solver.b * solver.v)
    return Solution(f, g, rows, columns, iterations, errors, scaled)


def entropic_values(solution: Solution, epsilon: float) -> Tensor:
    """OT_eps per problem (B,), float64, from the dual potentials and the plan's marginals:
    <P, C> + eps KL(P | a x b) = sum P (f_i + g_j) - eps (sum P - 1) for P of (f, g)."""
    f, g = solution.f.double(), solution.g.double()
    rows, columns = solution.rows, solution.columns
    return (f * rows).sum(1) + (g * columns).sum(1) - epsilon * (rows.sum(1) - 1.0)


class _GivenGradient(torch.autograd.Function):
    """A precomputed value whose gradient with respect to an input is given (same shape)."""

    @staticmethod
    def forward(ctx, points: Tensor, value: Tensor, gradient: Tensor) -> Tensor:
        ctx.save_for_backward(gradient)
        return value.clone()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        (gradient,) = ctx.saved_tensors
        return grad * gradient, None, None


def with_gradient(points: Tensor, value: Tensor, gradient: Tensor) -> Tensor:
    """`value` (scalar), differentiable with respect to `points` (any shape: target points
    (m, d), or a cost matrix (n, m) whose gradient is the plan) with the given `gradient`."""
    return _GivenGradient.apply(points, value, gradient)
