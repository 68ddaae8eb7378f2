"""Urease kinetics and aqueous speciation of physics.md §3–4 and §8, vectorised over cases.

Every function broadcasts: per-case constants have shape (n, 1) and pH grids (n, K).
The carbonate/ammonia charge balance is linear in the extent of reaction xi, so the
extent that produces a given pH has a closed form (``extent_at_pH``); that is what lets
the simulator parametrise the whole trajectory by pH instead of root-finding per step.

The formulas themselves are plain arithmetic functions marked ``register_jitable``: numpy
runs them on arrays here, and the compiled kernel of a fit's few simulations
(:mod:`ei_keras.simulation.readings_kernel`) compiles the same functions for scalars.
"""

from dataclasses import dataclass, fields

import numpy as np
from numba.extending import register_jitable

from ei_keras.errors import EiKerasError

LN10 = np.log(10.0)

# Arrhenius rate of urea hydrolysis per gram of active urease (Qin & Cabral).
K0_MOL_PER_G_S = 0.267
EA_J_PER_MOL = 29_100.0
R_J_PER_MOL_K = 8.314
# Substrate saturation and inhibition [M].
K_M = 2.56e-3
K_S = 6.18
# Product inhibition K_p(pH) [M] by total ammonia: linear between knots, clamped outside.
KP_KNOTS_PH = np.array([6.25, 6.50, 7.00, 7.50, 8.00, 8.50, 8.75, 9.00])
KP_KNOTS_M = np.array([0.1785, 0.1194, 0.0693, 0.0386, 0.0311, 0.0327, 0.0298, 0.0310])
# Equilibrium constants at 25 °C, used at every temperature unless the option says otherwise.
KW_25 = 1.0e-14
KA_NH4_25 = 5.62e-10
KA1_25 = 4.45e-7
KA2_25 = 4.69e-11


@dataclass(frozen=True)
class SimulationOptions:
    """Optional physics of physics.md §8; the defaults reproduce the check values of §9.

    Attributes
    ----------
    temperature_dependent_equilibria : use the T-dependent K_w, K_a(NH4+), K_a1, K_a2.
    initial_co2_uM : total inorganic carbon dissolved from air at t = 0 [µM].
    constant_ph_activity : the constant pH-activity variant (pK_es1 9.07, pK_es2 5.62,
        alpha 0.373, beta 0.564) instead of the temperature-dependent one.
    """

    temperature_dependent_equilibria: bool = False
    initial_co2_uM: float = 0.0
    constant_ph_activity: bool = False

    @classmethod
    def coerce(cls, options) -> "SimulationOptions":
        """Accept None, an instance or a mapping; reject unknown keys and bad values."""
        if options is None:
            return cls()
        if isinstance(options, cls):
            return options
        allowed = [f.name for f in fields(cls)]
        if not hasattr(options, "keys"):
            raise EiKerasError(f"options must be a mapping with keys from {allowed} (or None); "
                               f"got {type(options).__name__} {options!r}")
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise EiKerasError(f"unknown simulation option(s) {unknown}; allowed: {allowed}")
        resolved = cls(**options)
        for name in ("temperature_dependent_equilibria", "constant_ph_activity"):
            if not isinstance(getattr(resolved, name), (bool, np.bool_)):
                raise EiKerasError(f"option {name} must be true or false; "
                                   f"got {getattr(resolved, name)!r}")
        try:
            co2 = float(resolved.initial_co2_uM)
        except (TypeError, ValueError):
            co2 = float("nan")
        if not (np.isfinite(co2) and 0 <= co2 <= 1e4):
            raise EiKerasError(
                f"initial_co2_uM must be within 0–10000 µM; got {resolved.initial_co2_uM!r}")
        return resolved


def equilibrium_constants(temperature_C, options: SimulationOptions):
    """K_w, K_a(NH4+), K_a1, K_a2 [M] per case, each shaped like ``temperature_C``."""
    if not options.temperature_dependent_equilibria:
        ones = np.ones_like(temperature_C)
        return KW_25 * ones, KA_NH4_25 * ones, KA1_25 * ones, KA2_25 * ones
    T = temperature_C + 273.15
    kw = 10.0 ** (-4470.99 / T + 6.0875 - 0.01706 * T)
    ka_nh4 = 10.0 ** -(0.09018 + 2729.92 / T)
    ka1 = 10.0 ** (-356.3094 - 0.06091964 * T + 21834.37 / T
                   + 126.8339 * np.log10(T) - 1684915.0 / T**2)
    ka2 = 10.0 ** (-107.8871 - 0.03252849 * T + 5151.79 / T
                   + 38.92561 * np.log10(T) - 563713.9 / T**2)
    return kw, ka_nh4, ka1, ka2


@dataclass(frozen=True)
class Speciation:
    """Per-case constants of the charge balance, each of shape (n, 1)."""

    kw: np.ndarray
    ka_nh4: np.ndarray
    ka1: np.ndarray
    ka2: np.ndarray
    strong_ions: np.ndarray  # B, fixed so that the balance holds at the true pH0
    carbon0: np.ndarray  # initial total inorganic carbon [M]

    @classmethod
    def at_start(cls, pH0, temperature_C, options: SimulationOptions) -> "Speciation":
        kw, ka_nh4, ka1, ka2 = equilibrium_constants(temperature_C, options)
        carbon0 = np.full_like(pH0, options.initial_co2_uM * 1e-6)
        strong = strong_ions_at(10.0 ** -pH0, kw, ka1, ka2, carbon0)
        return cls(kw, ka_nh4, ka1, ka2, strong, carbon0)

    def extent_at_pH(self, pH):
        """Extent xi [M] at which the charge balance gives ``pH`` (N = 2 xi, C = C0 + xi)."""
        return extent_at(10.0 ** -pH, self.kw, self.ka_nh4, self.ka1, self.ka2,
                         self.strong_ions, self.carbon0)

    def extent_and_slope(self, pH):
        """Extent xi [M] at ``pH`` and its analytic derivative d xi / d pH."""
        return extent_and_slope_at(10.0 ** -pH, self.kw, self.ka_nh4, self.ka1, self.ka2,
                                   self.strong_ions, self.carbon0)

    def charge_balance(self, pH, total_ammonia, total_carbon):
        """Electroneutrality residual F; strictly decreasing in pH."""
        return charge_balance_at(10.0 ** -pH, total_ammonia, total_carbon, self.kw,
                                 self.ka_nh4, self.ka1, self.ka2, self.strong_ions)


@register_jitable
def _carbonate_terms(h, ka1, ka2):
    """Numerator and denominator of :func:`_carbonate_charge`."""
    return ka1 * h + 2.0 * ka1 * ka2, h * h + ka1 * h + ka1 * ka2


@register_jitable
def _carbonate_charge(h, ka1, ka2):
    """Negative charge per mole of inorganic carbon: ([HCO3-] + 2[CO3 2-]) / C."""
    charge, denominator = _carbonate_terms(h, ka1, ka2)
    return charge / denominator


@register_jitable
def strong_ions_at(h0, kw, ka1, ka2, carbon0):
    """B, the strong-ion charge that makes the balance hold at h0 = 10^-pH0 [M]."""
    return kw / h0 - h0 + carbon0 * _carbonate_charge(h0, ka1, ka2)


@register_jitable
def _extent_terms(h, carbonate, kw, ka_nh4, strong_ions, carbon0):
    """Numerator and denominator of the extent at h = 10^-pH."""
    return (kw / h - h - strong_ions + carbon0 * carbonate,
            2.0 * (h / (h + ka_nh4)) - carbonate)


@register_jitable
def extent_at(h, kw, ka_nh4, ka1, ka2, strong_ions, carbon0):
    """Extent xi [M] at which the charge balance gives h = 10^-pH."""
    numerator, denominator = _extent_terms(h, _carbonate_charge(h, ka1, ka2), kw, ka_nh4,
                                           strong_ions, carbon0)
    return numerator / denominator


@register_jitable
def extent_and_slope_at(h, kw, ka_nh4, ka1, ka2, strong_ions, carbon0):
    """Extent xi [M] at h = 10^-pH and its analytic derivative d xi / d pH."""
    top, bottom = _carbonate_terms(h, ka1, ka2)
    carbonate = top / bottom
    d_carbonate = (ka1 * bottom - top * (2.0 * h + ka1)) / bottom**2
    numerator, denominator = _extent_terms(h, carbonate, kw, ka_nh4, strong_ions, carbon0)
    extent = numerator / denominator
    d_numerator = -kw / (h * h) - 1.0 + carbon0 * d_carbonate
    d_denominator = 2.0 * ka_nh4 / (h + ka_nh4) ** 2 - d_carbonate
    d_extent_dh = (d_numerator - extent * d_denominator) / denominator
    return extent, d_extent_dh * (-LN10 * h)


@register_jitable
def charge_balance_at(h, total_ammonia, total_carbon, kw, ka_nh4, ka1, ka2, strong_ions):
    """Electroneutrality residual F at h = 10^-pH; strictly decreasing in pH."""
    return (h + total_ammonia * h / (h + ka_nh4) + strong_ions - kw / h
            - total_carbon * _carbonate_charge(h, ka1, ka2))


def arrhenius_rate(temperature_C):
    """k(T) [mol NH3 / (g·s)]."""
    return K0_MOL_PER_G_S * np.exp(-EA_J_PER_MOL / (R_J_PER_MOL_K * (temperature_C + 273.15)))


def ph_activity_parameters(temperature_C, options: SimulationOptions):
    """pK_es1, pK_es2, alpha, beta of the bell-shaped pH activity at ``temperature_C``."""
    if options.constant_ph_activity:
        return 9.07, 5.62, 0.373, 0.564
    return (8.217142857142855 + 0.03428571428571438 * temperature_C,
            6.407142857142855 - 0.031714285714285605 * temperature_C,
            0.09085714285714282 + 0.01131428571428572 * temperature_C,
            0.2199999999999993 + 0.013900000000000027 * temperature_C)


@register_jitable
def _bell(pH, pk1, pk2, alpha, beta):
    return 1.0 / (1.0 + 10.0 ** (alpha * (pH - pk1)) + 10.0 ** (beta * (pk2 - pH)))


def ph_activity(pH, temperature_C, options: SimulationOptions):
    """Bell-shaped pH activity factor phi(pH, T) in (0, 1]."""
    return _bell(pH, *ph_activity_parameters(temperature_C, options))


@register_jitable
def product_inhibition_constant(pH):
    """K_p(pH) [M], piecewise linear between the tabulated knots."""
    return np.interp(pH, KP_KNOTS_PH, KP_KNOTS_M)


@register_jitable
def rate_at(extent, pH, substrate0, rate_constant, pk1, pk2, alpha, beta):
    """d xi / d tau [mol/(g·s)] with k(T) = ``rate_constant`` and the pH activity's
    parameters (:func:`ph_activity_parameters`)."""
    substrate = np.maximum(substrate0 - extent, 0.0)
    saturation = substrate / (K_M + substrate + substrate**2 / K_S)
    inhibition = 1.0 + 2.0 * extent / product_inhibition_constant(pH)
    return (0.5 * rate_constant * _bell(pH, pk1, pk2, alpha, beta)
            * saturation / inhibition)


def extent_rate_per_enzyme(extent, pH, substrate0, temperature_C, options: SimulationOptions):
    """d xi / d tau: extent rate per gram/L of active enzyme (r / (2 E)) [mol/(g·s)]."""
    return rate_at(extent, pH, substrate0, arrhenius_rate(temperature_C),
                   *ph_activity_parameters(temperature_C, options))
