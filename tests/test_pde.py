"""orca's PDE solvers against known solutions, and the darcy / burgers tasks built on them."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

import orca.data.pde_tasks as pde_tasks
from orca.data.pde import burgers, darcy
from orca.data.tasks import get_task
from orca.model import create_model

# --------------------------------------------------------------------------- Darcy


def _manufactured_error(resolution: int) -> float:
    """Max nodal error for a = 1 + x^2 + y, u* = sin(pi x) sin(pi y), f = -div(a grad u*)."""
    nodes = np.linspace(0.0, 1.0, resolution)
    x, y = np.meshgrid(nodes, nodes)  # (R, R): x varies along axis -1, y along axis -2
    a = 1 + x**2 + y
    sx, sy, cx, cy = np.sin(np.pi * x), np.sin(np.pi * y), np.cos(np.pi * x), np.cos(np.pi * y)
    exact = sx * sy
    # -div(a grad u) = -(a_x u_x + a_y u_y + a (u_xx + u_yy)), with a_x = 2x, a_y = 1
    f = -(2 * x * np.pi * cx * sy + np.pi * sx * cy - 2 * np.pi**2 * a * exact)
    u = darcy.solve_darcy(a[None], f[None])[0]
    return float(np.abs(u - exact).max())


def test_darcy_manufactured_solution_converges_at_second_order():
    errors = [_manufactured_error(r) for r in (17, 33, 65)]
    ratios = [errors[0] / errors[1], errors[1] / errors[2]]
    print(f"manufactured-solution max errors {errors}, ratios {ratios}")
    assert errors[-1] < 3e-4
    for ratio in ratios:
        assert 3.5 < ratio < 4.5


def _poisson_center_series(terms: int = 2001) -> float:
    """u(1/2, 1/2) for -Laplacian u = 1 on the unit square, u = 0 on the boundary:
    u = sum over odd m, n of 16 / (pi^4 m n (m^2 + n^2)) sin(m pi x) sin(n pi y)."""
    odd = np.arange(1, terms + 1, 2, dtype=np.float64)
    m, n = np.meshgrid(odd, odd)
    signs = (-1.0) ** ((m - 1) // 2) * (-1.0) ** ((n - 1) // 2)  # sin(k pi / 2) for odd k
    return float(np.sum(16 / np.pi**4 * signs / (m * n * (m**2 + n**2))))


def test_darcy_constant_coefficient_matches_poisson_series():
    center = _poisson_center_series()
    # The series alternates with terms O(1 / terms^3): summed to 2001, it is exact to ~1e-10.
    assert center == pytest.approx(0.0736713532, abs=1e-9)
    errors = []
    for resolution in (17, 33, 65):
        u = darcy.solve_darcy(np.ones((1, resolution, resolution)), 1.0)[0]
        errors.append(abs(u[resolution // 2, resolution // 2] - center))
    print(f"Poisson centre errors {errors}")
    assert errors[-1] < 2e-5
    assert 3.5 < errors[0] / errors[1] < 4.5 and 3.5 < errors[1] / errors[2] < 4.5


def _residual(a: np.ndarray, u: np.ndarray) -> np.ndarray:
    """-div(a grad u) - 1 at the interior nodes, the stencil written out node by node."""
    resolution = a.shape[-1]
    h2 = (1.0 / (resolution - 1)) ** 2
    out = np.zeros((resolution - 2, resolution - 2))
    for i in range(1, resolution - 1):
        for j in range(1, resolution - 1):
            total = 0.0
            for di, dj in ((0, 1), (0, -1), (1, 0), (-1, 0)):
                face = 2 * a[i, j] * a[i + di, j + dj] / (a[i, j] + a[i + di, j + dj])
                total += face * (u[i, j] - u[i + di, j + dj])
            out[i - 1, j - 1] = total / h2 - 1.0
    return out


def test_darcy_piecewise_samples_solve_the_discrete_equation():
    a, u = darcy.darcy_samples(6, 17, np.random.default_rng(0))
    assert a.shape == u.shape == (6, 17, 17)
    assert set(np.unique(a)) == {darcy.LOW, darcy.HIGH}
    assert np.isfinite(u).all()
    for edge in (u[:, 0], u[:, -1], u[:, :, 0], u[:, :, -1]):
        assert np.all(edge == 0)
    assert np.all(u[:, 1:-1, 1:-1] > 0)
    # The compliance sum(f u) = max_v 2 sum(f v) - (a grad v, grad v) decreases with a, so
    # it lies between those of a = 12 and a = 3 everywhere: the Poisson solution's / a.
    poisson = darcy.solve_darcy(np.ones((1, 17, 17)))[0].sum()
    assert np.all(u.sum(axis=(1, 2)) <= poisson / darcy.LOW)
    assert np.all(u.sum(axis=(1, 2)) >= poisson / darcy.HIGH)
    for sample in range(2):
        assert np.abs(_residual(a[sample], u[sample])).max() < 1e-6


def test_gaussian_random_field_is_seeded_and_balanced():
    first = darcy.gaussian_random_field(64, 33, np.random.default_rng(3))
    again = darcy.gaussian_random_field(64, 33, np.random.default_rng(3))
    assert np.array_equal(first, again)
    assert first.shape == (64, 33, 33)
    assert abs(float(first.mean())) < 0.2 * float(first.std())
    high = float((darcy.piecewise_coefficient(first) == darcy.HIGH).mean())
    assert 0.35 < high < 0.65


def test_darcy_rejects_bad_inputs():
    with pytest.raises(ValueError, match="shape"):
        darcy.solve_darcy(np.ones((5, 5)))
    with pytest.raises(ValueError, match="positive"):
        darcy.solve_darcy(np.zeros((1, 5, 5)))
    with pytest.raises(ValueError, match="broadcast"):
        darcy.solve_darcy(np.ones((1, 5, 5)), np.ones((4, 4)))
    with pytest.raises(RuntimeError, match="conjugate gradients"):
        darcy.solve_darcy(np.full((1, 17, 17), 3.0) + np.eye(17) * 9, max_iter=1)
    with pytest.raises(ValueError):
        darcy.gaussian_random_field(0, 16, np.random.default_rng(0))


# --------------------------------------------------------------------------- Burgers


def _nrmse(pred: np.ndarray, ref: np.ndarray) -> float:
    return float((np.sqrt(((pred - ref) ** 2).mean(1)) / np.sqrt((ref**2).mean(1))).max())


def test_burgers_converges_to_a_finer_grid():
    u0 = burgers.sine_initial_conditions(4, 1024, np.random.default_rng(3))  # (4, 1024)
    reference = burgers.solve_burgers(u0, 1.0)[:, ::8]  # on 128 points
    errors = [
        _nrmse(burgers.solve_burgers(u0[:, :: 1024 // n], 1.0)[:, :: n // 128], reference)
        for n in (128, 256, 512)
    ]
    print(f"Burgers nRMSE vs 1024 points: {errors}")
    assert errors[0] < 5e-3 and errors[1] < 1e-4
    assert errors[0] / errors[1] > 4 and errors[1] / errors[2] > 4


def test_burgers_converges_in_time_at_high_order():
    u0 = burgers.sine_initial_conditions(4, 128, np.random.default_rng(4))
    reference = burgers.solve_burgers(u0, 1.0, cfl=0.1)
    errors = [_nrmse(burgers.solve_burgers(u0, 1.0, cfl=c), reference) for c in (1.0, 0.5, 0.25)]
    print(f"Burgers nRMSE vs cfl 0.1: {errors}")
    assert errors[0] < 1e-3
    # Fourth order: halving the step divides the error by ~16.
    assert errors[0] / errors[1] > 8 and errors[1] / errors[2] > 8


def test_burgers_small_amplitude_decays_like_the_heat_equation():
    x = np.arange(64) / 64
    k = 2 * np.pi * 3
    amplitude, t_final = 1e-8, 1.0
    u0 = amplitude * np.sin(k * x)[None]  # (1, 64)
    u = burgers.solve_burgers(u0, t_final)
    exact = amplitude * np.exp(-burgers.NU * k**2 * t_final) * np.sin(k * x)
    assert np.exp(-burgers.NU * k**2 * t_final) < 0.5  # the decay is visible
    assert np.abs(u[0] - exact).max() < 1e-6 * amplitude


def test_burgers_conserves_the_mean():
    u0 = burgers.sine_initial_conditions(
        6, 128, np.random.default_rng(5), abs_probability=1.0
    )  # +-|sum of sines|: non-zero mean
    u = burgers.solve_burgers(u0, 0.5)
    assert np.all(np.abs(u0.mean(1)) > 0.1)
    np.testing.assert_allclose(u.mean(1), u0.mean(1), rtol=0, atol=1e-12)
    assert np.abs(u).max() <= np.abs(u0).max() + 1e-9  # maximum principle


def test_burgers_initial_conditions_use_wavenumbers_one_to_four():
    u0 = burgers.sine_initial_conditions(50, 64, np.random.default_rng(6), abs_probability=0)
    power = np.abs(np.fft.rfft(u0, axis=1))  # (50, 33)
    assert power[:, 5:].max() < 1e-10 * power.max() and power[:, 0].max() < 1e-10
    assert np.all((power[:, 1:5] > 1e-10).sum(1) == 2)  # two distinct waves each
    with pytest.raises(ValueError):
        burgers.sine_initial_conditions(5, 64, np.random.default_rng(0), n_waves=5)
    with pytest.raises(ValueError, match="shape"):
        burgers.solve_burgers(np.zeros(8))


# --------------------------------------------------------------------------- tasks

TASK_SHAPES = {
    "darcy": (1, pde_tasks.DARCY_RESOLUTION, pde_tasks.DARCY_RESOLUTION),
    "burgers": (1, pde_tasks.BURGERS_LENGTH),
}


@pytest.fixture(scope="module")
def loaded() -> dict:
    raws = {}
    for name in TASK_SHAPES:
        start = time.perf_counter()
        raws[name] = get_task(name).loader()
        print(f"{name}: generated in {time.perf_counter() - start:.2f} s")
    return raws


@pytest.mark.parametrize("name", sorted(TASK_SHAPES))
def test_pde_task_loaders(name, loaded):
    spec, raw = get_task(name), loaded[name]
    assert spec.input_shape == TASK_SHAPES[name]
    assert raw.version == "orca-solver-1" and "orca.data.pde" in raw.source
    for split, size in pde_tasks.SPLIT_SIZES.items():
        x, y = getattr(raw, f"x_{split}"), getattr(raw, f"y_{split}")
        assert x.shape == (size, *spec.input_shape) and y.shape == x.shape
        assert x.dtype == y.dtype == np.float32
        assert np.isfinite(x).all() and np.isfinite(y).all()
    assert not np.array_equal(raw.x_train[: len(raw.x_test)], raw.x_test)
    start = time.perf_counter()
    again = spec.loader()
    print(f"{name}: regenerated in {time.perf_counter() - start:.2f} s")
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert np.array_equal(getattr(raw, field), getattr(again, field))
    assert raw.source == again.source


def test_darcy_task_scaling(loaded):
    raw = loaded["darcy"]
    assert set(np.unique(raw.x_train)) == {-1.0, 1.0}
    assert float(np.sqrt(np.mean(raw.y_train.astype(np.float64) ** 2))) == pytest.approx(1.0)
    assert raw.y_test.min() >= 0


@pytest.mark.parametrize("name", sorted(TASK_SHAPES))
def test_pde_task_model_forward(name, loaded, tiny_bert_dir):
    spec = get_task(name)
    model = create_model(spec, str(tiny_bert_dir), seed=0)
    x = torch.from_numpy(loaded[name].x_train[:3])
    with torch.no_grad():
        out = model(x)
    assert out.shape == (3, *spec.input_shape)
    assert torch.isfinite(out).all()
