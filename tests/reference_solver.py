"""A slow, independent reference for the simulator: per-case ``solve_ivp`` on the extent.

Written from physics.md directly, sharing no code with ``ei_keras.simulation``: the rate
law is integrated in real time with a tight explicit Runge–Kutta, and the pH comes from a
bracketed root of the full charge balance at every right-hand-side call.
"""

import math

import numpy as np
from scipy.integrate import solve_ivp
from scipy.optimize import brentq

KP_PH = [6.25, 6.50, 7.00, 7.50, 8.00, 8.50, 8.75, 9.00]
KP_M = [0.1785, 0.1194, 0.0693, 0.0386, 0.0311, 0.0327, 0.0298, 0.0310]
KW, KAN, KA1, KA2 = 1.0e-14, 5.62e-10, 4.45e-7, 4.69e-11


def _charge(pH, ammonia, carbon, strong, equilibria):
    kw, kan, ka1, ka2 = equilibria
    h = 10.0 ** -pH
    d = h * h + ka1 * h + ka1 * ka2
    return (h + ammonia * h / (h + kan) + strong - kw / h
            - carbon * ka1 * h / d - 2.0 * carbon * ka1 * ka2 / d)


def reference_pH(substrate_mM, grams_urease_powder, volume_L, temperature_C, initial_pH,
                 activity, k_d, t, rtol=1e-11, equilibria=(KW, KAN, KA1, KA2), carbon0_M=0.0):
    """True pH at times ``t`` for one case (default: the physics.md §9 set-up).

    ``equilibria`` = (K_w, K_a(NH4+), K_a1, K_a2); ``carbon0_M`` the initial inorganic carbon.
    """
    s0 = substrate_mM / 1000.0
    e0 = activity * grams_urease_powder / volume_L
    # Strong ions: whatever makes the balance hold at pH0 with no ammonia.
    strong = -_charge(initial_pH, 0.0, carbon0_M, 0.0, equilibria)
    k_T = 0.267 * math.exp(-29100.0 / (8.314 * (temperature_C + 273.15)))
    pk1 = 8.217142857142855 + 0.03428571428571438 * temperature_C
    pk2 = 6.407142857142855 - 0.031714285714285605 * temperature_C
    alpha = 0.09085714285714282 + 0.01131428571428572 * temperature_C
    beta = 0.2199999999999993 + 0.013900000000000027 * temperature_C

    def pH_of(extent):
        return brentq(_charge, 0.0, 14.0, args=(2 * extent, carbon0_M + extent, strong, equilibria),
                      xtol=1e-14, rtol=1e-15, maxiter=200)

    def rhs(time, y):
        extent = min(max(y[0], 0.0), s0)
        pH = pH_of(extent)
        h = 10.0 ** -pH
        phi = 1.0 / (1.0 + (10.0 ** -pk1 / h) ** alpha + (h / 10.0 ** -pk2) ** beta)
        substrate = s0 - extent
        r = (e0 * math.exp(-k_d * time) * k_T * phi * substrate
             / (2.56e-3 + substrate + substrate**2 / 6.18)
             / (1.0 + 2 * extent / np.interp(pH, KP_PH, KP_M)))
        return [r / 2.0]

    t = np.asarray(t, dtype=float)
    solution = solve_ivp(rhs, (0.0, float(t[-1]) if t[-1] > 0 else 1.0), [0.0],
                         method="DOP853", t_eval=t, rtol=rtol, atol=1e-16 + 1e-12 * s0)
    return np.array([pH_of(min(max(x, 0.0), s0)) for x in solution.y[0]])
