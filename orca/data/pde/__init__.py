"""Solvers that generate orca's PDE tasks (pure numpy/scipy; see orca.data.pde_tasks).

darcy    -div(a grad u) = f on the unit square, zero boundary: FNO's thresholded
         Gaussian random field coefficients, 5-point finite differences, solved for
         all samples at once by preconditioned conjugate gradients
burgers  u_t + (u^2/2)_x = nu u_xx, periodic: PDEBench's random sine initial states,
         Fourier pseudo-spectral with integrating-factor RK4
"""
