"""Steady Darcy flow on the unit square, as in the FNO and PDEBench Darcy data.

    -div(a(x, y) grad u(x, y)) = f(x, y)   on (0, 1)^2,   u = 0 on the boundary.

Grid: R x R nodes x_j = j / (R - 1), j = 0..R-1 (spacing h = 1 / (R - 1)), boundary nodes
included. Arrays are indexed [..., i, j] with axis -2 the y index and axis -1 the x index,
so field[..., i, j] is the value at (x, y) = (j h, i h), as np.meshgrid(x, x) lays it out.

The coefficient follows the FNO paper: a Gaussian random field with covariance
(-Laplacian + tau^2)^(-alpha) (alpha = 2, tau = 3), thresholded at 0 to 12 (positive) and
3 (negative). All quantities are dimensionless.
"""

from __future__ import annotations

import numpy as np
from scipy.fft import dstn

HIGH, LOW = 12.0, 3.0  # FNO's coefficient values on the positive / negative part of the field


def gaussian_random_field(
    n_samples: int,
    resolution: int,
    rng: np.random.Generator,
    alpha: float = 2.0,
    tau: float = 3.0,
) -> np.ndarray:
    """Samples of a zero-mean Gaussian field on the R x R node grid, (N, R, R) float64.

    Covariance (-Laplacian + tau^2)^(-alpha) with Neumann boundary conditions on the unit
    square (FNO's choice): a Karhunen-Loeve expansion in the Laplacian's eigenfunctions
    cos(pi k1 x) cos(pi k2 y), eigenvalues pi^2 (k1^2 + k2^2), for 0 <= k1, k2 < R, each
    mode with an independent N(0, 1) weight times (pi^2 (k1^2 + k2^2) + tau^2)^(-alpha/2).
    The constant mode is dropped (as FNO does), so every sample has zero mean over the square. The
    expansion is evaluated exactly at the nodes (no interpolation). Raises ValueError
    for n_samples < 1, resolution < 3 or non-positive alpha or tau.
    """
    if n_samples < 1 or resolution < 3:
        raise ValueError(f"need n_samples >= 1 and resolution >= 3, got {n_samples}, {resolution}")
    if alpha <= 0 or tau <= 0:
        raise ValueError(f"alpha={alpha} and tau={tau} must be positive")
    k = np.arange(resolution)
    eigen = np.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2) + tau**2  # (K, K)
    scale = eigen ** (-alpha / 2)
    scale[0, 0] = 0.0
    nodes = np.linspace(0.0, 1.0, resolution)
    basis = np.cos(np.pi * nodes[:, None] * k[None, :])  # (R, K): cos(pi k x_j)
    basis[:, 1:] *= np.sqrt(2.0)  # orthonormal in L2(0, 1)
    weights = rng.standard_normal((n_samples, resolution, resolution)) * scale  # (N, K_y, K_x)
    # field[n, i, j] = sum_{p, q} basis[i, p] weights[n, p, q] basis[j, q]: (N, R, R)
    return np.einsum("ip,npq,jq->nij", basis, weights, basis, optimize=True)


def piecewise_coefficient(field: np.ndarray) -> np.ndarray:
    """FNO's thresholded coefficient: 12 where field >= 0, 3 where field < 0 (same shape,
    float64). The FNO paper's psi maps the positive part of the line to 12 and the
    negative part to 3; a field value of exactly 0 maps to 12."""
    return np.where(np.asarray(field) >= 0, HIGH, LOW)


def _harmonic(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return 2.0 * left * right / (left + right)


def solve_darcy(
    a: np.ndarray, f: float | np.ndarray = 1.0, tol: float = 1e-10, max_iter: int | None = None
) -> np.ndarray:
    """Solve -div(a grad u) = f on the unit square with u = 0 on the boundary.

    a: (N, R, R) positive coefficient at the grid nodes (R >= 3). f: a scalar, or an array
    broadcastable to (N, R, R) giving f at the nodes (boundary values are ignored).
    Returns u, (N, R, R) float64, with the boundary rows and columns exactly zero.

    Discretisation: the standard 5-point finite-volume/finite-difference stencil, second
    order in h for smooth a,

        [sum over the 4 neighbours v of a_face (u_node - u_v)] / h^2 = f_node,

    where a_face is the harmonic mean of a at the two nodes the face joins. The harmonic
    mean is the exact effective conductivity of two half-cells in series, the usual
    choice for discontinuous coefficients such as the thresholded field; for smooth a it
    differs from a at the face midpoint by O(h^2). The symmetric positive-definite systems
    of all samples are solved together by conjugate gradients preconditioned with the
    a = 1 stencil (inverted by fast sine transforms), to a relative residual of `tol`:
    about 25 iterations for FNO's contrast 12 / 3, whatever R.

    Raises ValueError for a of the wrong shape, a non-positive or non-finite a, or an f
    that does not broadcast to a's shape; RuntimeError when the iteration has not
    converged after max_iter (default 1000) iterations.
    """
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 3 or a.shape[1] != a.shape[2] or a.shape[1] < 3:
        raise ValueError(f"a must have shape (N, R, R) with R >= 3, got {a.shape}")
    if not np.isfinite(a).all() or a.min() <= 0:
        raise ValueError("a must be finite and strictly positive")
    try:
        rhs = np.broadcast_to(np.asarray(f, dtype=np.float64), a.shape)
    except ValueError as err:
        raise ValueError(f"f of shape {np.shape(f)} does not broadcast to {a.shape}") from err
    r = a.shape[1]
    h2 = (1.0 / (r - 1)) ** 2
    ax = _harmonic(a[:, :, :-1], a[:, :, 1:])  # (N, R, R-1): face between (i, j) and (i, j+1)
    ay = _harmonic(a[:, :-1, :], a[:, 1:, :])  # (N, R-1, R): face between (i, j) and (i+1, j)
    # Interior node (i, j), 1 <= i, j <= R-2 (m = R-2 per side): west ax[i, j-1], east
    # ax[i, j], south ay[i-1, j], north ay[i, j]; each slice below is (N, m, m).
    diag = ax[:, 1:-1, :-1] + ax[:, 1:-1, 1:] + ay[:, :-1, 1:-1] + ay[:, 1:, 1:-1]
    east = ax[:, 1:-1, 1:-1]  # (N, m, m-1): between interior (i, j) and (i, j+1)
    north = ay[:, 1:-1, 1:-1]  # (N, m-1, m): between interior (i, j) and (i+1, j)
    interior = _conjugate_gradient(diag, east, north, h2 * rhs[:, 1:-1, 1:-1], tol, max_iter)
    u = np.zeros_like(a)
    u[:, 1:-1, 1:-1] = interior
    return u


def _conjugate_gradient(
    diag: np.ndarray,
    east: np.ndarray,
    north: np.ndarray,
    rhs: np.ndarray,
    tol: float,
    max_iter: int | None,
) -> np.ndarray:
    """Preconditioned conjugate gradients for all samples at once, matrix-free.

    Solves A v = rhs per sample, A v = diag v - east (v shifted east and west) - north (v
    shifted north and south), all (N, m, m); stops when every sample's residual norm is at
    most tol times its right-hand side's. The preconditioner is the inverse of the same
    stencil with a = 1 (the discrete Dirichlet Laplacian), applied exactly by a fast sine
    transform; since min(a) L <= A <= max(a) L, the iteration count depends on the
    coefficient's contrast, not on the grid size. Raises RuntimeError after max_iter
    iterations.
    """
    m = diag.shape[1]
    one_dim = 2.0 - 2.0 * np.cos(np.pi * np.arange(1, m + 1) / (m + 1))  # (m,)
    eigen = one_dim[:, None] + one_dim[None, :]  # (m, m): Laplacian eigenvalues (times h^2)

    def precondition(r: np.ndarray) -> np.ndarray:
        # The orthonormal DST-I is its own inverse and diagonalises the Laplacian.
        return dstn(
            dstn(r, type=1, axes=(1, 2), norm="ortho") / eigen, type=1, axes=(1, 2), norm="ortho"
        )

    def apply(v: np.ndarray) -> np.ndarray:
        out = diag * v
        out[:, :, :-1] -= east * v[:, :, 1:]
        out[:, :, 1:] -= east * v[:, :, :-1]
        out[:, :-1, :] -= north * v[:, 1:, :]
        out[:, 1:, :] -= north * v[:, :-1, :]
        return out

    def dot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.einsum("nij,nij->n", x, y)[:, None, None]  # (N, 1, 1)

    max_iter = max_iter or 1000
    v = np.zeros_like(rhs)
    residual = rhs.copy()
    goal = tol**2 * dot(rhs, rhs)  # squared residual norm to reach, per sample
    z = precondition(residual)
    direction = z.copy()
    rz = dot(residual, z)
    for _ in range(max_iter):
        active = dot(residual, residual) > goal  # (N, 1, 1)
        if not active.any():
            return v
        product = apply(direction)
        step = np.where(active, rz / np.maximum(dot(direction, product), 1e-300), 0.0)
        v += step * direction
        residual -= step * product
        z = precondition(residual)
        rz_new = dot(residual, z)
        direction = z + np.where(active, rz_new / np.maximum(rz, 1e-300), 0.0) * direction
        rz = rz_new
    raise RuntimeError(f"conjugate gradients did not reach tol={tol} in {max_iter} iterations")


def darcy_samples(
    n_samples: int, resolution: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(a, u): FNO-style piecewise coefficients and their solutions for f = 1, each
    (N, R, R) float64 on the node grid. Raises ValueError as gaussian_random_field."""
    a = piecewise_coefficient(gaussian_random_field(n_samples, resolution, rng))
    return a, solve_darcy(a, 1.0)
