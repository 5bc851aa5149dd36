"""Noise schedules and the DDPM / DDIM update rules, in NumPy (coefficients) and JAX (updates).

Schedules are public, so every coefficient is computed in the clear and enters a secure step as
a public constant; the updates themselves are plain arithmetic that SPU runs on secret latents.
The maths follows Ho et al. (DDPM, "fixed small" variance) and Song et al. (DDIM, eta); the
tests check both against diffusers' Flax schedulers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Schedule:
    steps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    kind: str = "linear"  # or "cosine"

    @property
    def betas(self) -> np.ndarray:
        if self.kind == "linear":
            return np.linspace(self.beta_start, self.beta_end, self.steps, dtype=np.float64)
        if self.kind == "cosine":
            s = 0.008
            f = np.cos(((np.arange(self.steps + 1) / self.steps) + s) / (1 + s) * np.pi / 2) ** 2
            return np.clip(1 - f[1:] / f[:-1], 0, 0.999)
        raise ValueError(f"unknown schedule kind {self.kind!r}; choose linear or cosine")

    @property
    def alphas_cumprod(self) -> np.ndarray:
        return np.cumprod(1.0 - self.betas)


def ddim_timesteps(schedule: Schedule, steps: int) -> np.ndarray:
    """Evenly spaced timesteps, descending, as diffusers' "leading" spacing: 0, k, 2k, ..."""
    if not 1 <= steps <= schedule.steps:
        raise ValueError(f"steps must be in [1, {schedule.steps}], got {steps}")
    ratio = schedule.steps // steps
    return (np.arange(steps) * ratio)[::-1].astype(np.int64)


@dataclass(frozen=True)
class StepCoefficients:
    """x_prev = a * x + b * eps + c * noise (all public; `noise` is the user's secret input)."""

    t: int
    a: float
    b: float
    c: float


def ddpm_coefficients(schedule: Schedule, t: int) -> StepCoefficients:
    ac = schedule.alphas_cumprod
    beta, alpha = schedule.betas[t], 1.0 - schedule.betas[t]
    ac_prev = ac[t - 1] if t > 0 else 1.0
    # mean = (x - beta / sqrt(1 - ac_t) * eps) / sqrt(alpha); variance: beta * (1 - ac_prev) / (1 - ac_t)
    a = 1.0 / np.sqrt(alpha)
    b = -beta / (np.sqrt(1.0 - ac[t]) * np.sqrt(alpha))
    var = beta * (1.0 - ac_prev) / (1.0 - ac[t]) if t > 0 else 0.0
    return StepCoefficients(int(t), float(a), float(b), float(np.sqrt(max(var, 0.0))))


def ddim_coefficients(schedule: Schedule, t: int, t_prev: int, eta: float = 0.0) -> StepCoefficients:
    ac = schedule.alphas_cumprod
    ac_t = ac[t]
    ac_prev = ac[t_prev] if t_prev >= 0 else 1.0
    sigma = eta * np.sqrt((1 - ac_prev) / (1 - ac_t)) * np.sqrt(1 - ac_t / ac_prev)
    # x0 = (x - sqrt(1 - ac_t) eps) / sqrt(ac_t); x_prev = sqrt(ac_prev) x0 + sqrt(1 - ac_prev - sigma^2) eps + sigma z
    a = np.sqrt(ac_prev) / np.sqrt(ac_t)
    b = -np.sqrt(ac_prev) * np.sqrt(1 - ac_t) / np.sqrt(ac_t) + np.sqrt(max(1 - ac_prev - sigma ** 2, 0.0))
    return StepCoefficients(int(t), float(a), float(b), float(sigma))


def plan(sampler: str, schedule: Schedule, steps: int, eta: float = 0.0) -> list[StepCoefficients]:
    """The whole public sampling plan: one StepCoefficients per denoising step."""
    if sampler == "ddpm":
        if steps != schedule.steps:
            raise ValueError(f"DDPM walks every step of its schedule ({schedule.steps}); use DDIM for fewer")
        return [ddpm_coefficients(schedule, t) for t in range(schedule.steps - 1, -1, -1)]
    if sampler == "ddim":
        ts = ddim_timesteps(schedule, steps)
        prev = list(ts[1:]) + [-1]
        return [ddim_coefficients(schedule, int(t), int(p), eta) for t, p in zip(ts, prev)]
    raise ValueError(f"unknown sampler {sampler!r}; choose ddpm or ddim")


def update(x, eps, noise, coeff: StepCoefficients):
    """One denoising update; works on NumPy, JAX and (traced) SPU values alike."""
    out = coeff.a * x + coeff.b * eps
    return out + coeff.c * noise if coeff.c else out
