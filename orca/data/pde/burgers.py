"""Viscous Burgers' equation on the periodic unit interval, as in PDEBench's 1D Burgers data.

    u_t + (u^2 / 2)_x = nu u_xx,   x in [0, 1) periodic,   nu = epsilon / pi.

PDEBench writes the viscosity as epsilon / pi and publishes epsilon in {0.001, ..., 4};
the default here is epsilon = 0.01 (nu = 0.01 / pi ~ 0.0032, also the classic Burgers
test value): shocks form from the initial sine waves (from t ~ 0.05) and stay about 0.01
wide, while every wave keeps a sizeable part of its energy up to t = 1 (for epsilon = 0.1
waves 2-4 decay to almost nothing, which would make per-sample nRMSE meaningless).
Grids are x_j = j / L, j = 0..L-1; arrays are (N, L), one row per sample. All quantities
are dimensionless.

Initial conditions follow PDEBench's init_multi: a sum of two sine waves
A_i sin(2 pi n_i x + phi_i), with distinct integer wave numbers n_i from 1..4, amplitudes
A_i ~ U[0, 1) and phases phi_i ~ U[0, 2 pi); with probability 0.1 the absolute value is
taken, and the sign is flipped with probability 0.5. PDEBench's optional window (a tanh
step of width 0.01, about one grid spacing at 128 points) is not applied.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

NU = 0.01 / np.pi  # PDEBench's epsilon = 0.01
T_FINAL = 1.0


def sine_initial_conditions(
    n_samples: int,
    length: int,
    rng: np.random.Generator,
    n_waves: int = 2,
    max_wavenumber: int = 4,
    abs_probability: float = 0.1,
) -> np.ndarray:
    """PDEBench-style random initial states at x_j = j / length, (N, L) float64.

    Raises ValueError when n_waves is not in 1..max_wavenumber or a size is below 1.
    """
    if n_samples < 1 or length < 1 or not 1 <= n_waves <= max_wavenumber:
        raise ValueError(
            f"need n_samples, length >= 1 and 1 <= n_waves <= max_wavenumber, got "
            f"{n_samples}, {length}, {n_waves}, {max_wavenumber}"
        )
    # Distinct wave numbers: the first n_waves entries of a random permutation of 1..max.
    waves = np.argsort(rng.random((n_samples, max_wavenumber)), axis=1)[:, :n_waves] + 1
    amplitude = rng.random((n_samples, n_waves))
    phase = 2 * np.pi * rng.random((n_samples, n_waves))
    x = np.arange(length) / length
    # (N, W, 1) * (L,) -> (N, W, L), summed over the waves -> (N, L)
    u = (amplitude[..., None] * np.sin(2 * np.pi * waves[..., None] * x + phase[..., None])).sum(1)
    u = np.where(rng.random((n_samples, 1)) < abs_probability, np.abs(u), u)
    return u * np.where(rng.random((n_samples, 1)) < 0.5, -1.0, 1.0)


def solve_burgers(
    u0: np.ndarray, t_final: float = T_FINAL, nu: float = NU, cfl: float = 0.8
) -> np.ndarray:
    """u(t_final) from u(0) = u0, (N, L) float64, for every sample at once.

    Method: Fourier pseudo-spectral in space (the product u^2 formed on the grid, 2/3-rule
    dealiasing, Nyquist mode dropped from the derivative) and the integrating-factor
    fourth-order Runge-Kutta scheme in time: diffusion is integrated exactly as
    exp(-nu k^2 t), so only advection limits the step. Each step is
    dt = min(cfl dx / max|u|, time left), the maximum over all samples' current states:
    the default cfl = 0.8 is inside RK4's stability bound for the dealiased advection
    (dt <= 2.8 / (k_max max|u|) with k_max = 2 pi L / 3, about 1.35 dx / max|u|), and as
    the waves decay the steps grow. The spatial mean (the k = 0 mode) is conserved exactly.

    Raises ValueError for u0 not (N, L) with L >= 2, a non-finite u0, or a negative
    t_final, nu or non-positive cfl.
    """
    u0 = np.asarray(u0, dtype=np.float64)
    if u0.ndim != 2 or u0.shape[1] < 2:
        raise ValueError(f"u0 must have shape (N, L) with L >= 2, got {u0.shape}")
    if not np.isfinite(u0).all():
        raise ValueError("u0 contains NaN or inf")
    if t_final < 0 or nu < 0 or cfl <= 0:
        raise ValueError(f"need t_final >= 0, nu >= 0, cfl > 0; got {t_final}, {nu}, {cfl}")
    length = u0.shape[1]
    wavenumber = np.arange(length // 2 + 1)  # rfft modes 0..L/2
    k = 2 * np.pi * wavenumber  # (K,) angular wavenumbers on the unit interval
    keep = wavenumber < length / 3  # 2/3 rule; also drops the Nyquist mode
    derivative = np.where(keep, -0.5j * k, 0.0)  # spectrum of (u^2 / 2)_x, sign included

    def advection(u: np.ndarray) -> np.ndarray:
        return derivative * sfft.rfft(u * u, axis=1)  # (N, L) -> (N, K)

    def grid(spectrum: np.ndarray) -> np.ndarray:
        return sfft.irfft(spectrum, n=length, axis=1)  # (N, K) -> (N, L)

    v = sfft.rfft(u0, axis=1)  # (N, L) -> (N, K)
    t = 0.0
    while t_final - t > 1e-12 * t_final:
        u = grid(v)
        speed = float(np.abs(u).max())
        dt = t_final - t if speed == 0 else min(cfl / (length * speed), t_final - t)
        half = np.exp(-nu * k**2 * dt / 2)  # (K,) integrating factor over dt/2
        full = half * half
        a = advection(u)
        b = advection(grid(half * (v + 0.5 * dt * a)))
        c = advection(grid(half * v + 0.5 * dt * b))
        d = advection(grid(full * v + dt * half * c))
        v = full * v + dt / 6 * (full * a + 2 * half * (b + c) + d)
        t += dt
    return sfft.irfft(v, n=length, axis=1)  # (N, K) -> (N, L)


def burgers_samples(
    n_samples: int,
    length: int,
    rng: np.random.Generator,
    t_final: float = T_FINAL,
    nu: float = NU,
    upsample: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """(u(0), u(t_final)), each (N, length) float64 at x_j = j / length.

    The solve runs on a grid `upsample` times finer (the initial sines evaluated there
    exactly) and both states are subsampled to `length` points, so the stored states are
    free of the coarse grid's truncation error. Raises ValueError as the functions above,
    or for upsample < 1.
    """
    if upsample < 1:
        raise ValueError(f"upsample must be at least 1, got {upsample}")
    u0 = sine_initial_conditions(n_samples, length * upsample, rng)  # (N, s L)
    u_final = solve_burgers(u0, t_final, nu)  # (N, s L)
    return u0[:, ::upsample], u_final[:, ::upsample]  # (N, s L) -> (N, L)
