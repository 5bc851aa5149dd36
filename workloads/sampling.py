"""Secure DDPM/DDIM sampling of the MNIST U-Net, and the same sampling in plaintext.

Who owns what (see SECURITY.md): the model provider owns the weights; the user owns the label,
the initial noise and every per-step noise, all secret inputs made in the clear by the user's own
generator (never `jax.random` inside an SPU program). Timesteps, their sinusoidal features and the
schedule's coefficients are public. One SPU program serves every step: the step's public values
are inputs, not constants. The latent stays secret-shared on the parties between steps; only the
final image is revealed, to the user.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import jax
import numpy as np

from raympc.runtime.values import Public, Secret
from workloads import diffusion
from workloads.diffusion import Schedule, StepCoefficients
from workloads.unet import UNet, UNetConfig, time_features


@dataclass
class SamplingInputs:
    """Everything the user draws in the clear for one sampling run (so secure and plaintext match)."""

    labels: np.ndarray  # (B,) int
    initial: np.ndarray  # (B, 28, 28, 1)
    per_step: list[np.ndarray]  # one (B, 28, 28, 1) per step (zeros where the step adds no noise)

    @classmethod
    def draw(cls, labels: np.ndarray, steps: list[StepCoefficients], seed: int) -> "SamplingInputs":
        rng = np.random.default_rng(seed)
        shape = (len(labels), 28, 28, 1)
        initial = rng.standard_normal(shape).astype(np.float32)
        per_step = [rng.standard_normal(shape).astype(np.float32) if c.c else np.zeros(shape, np.float32)
                    for c in steps]
        return cls(np.asarray(labels), initial, per_step)

    def onehot(self, classes: int = 10) -> np.ndarray:
        return np.eye(classes, dtype=np.float32)[self.labels]


def step_function(cfg: UNetConfig) -> Callable:
    model = UNet(cfg)

    def step(params, x, label_onehot, noise, t_features, abc):
        eps = model.apply(params, x, t_features, label_onehot)
        return abc[0] * x + abc[1] * eps + abc[2] * noise

    return step


def public_step_inputs(cfg: UNetConfig, coeff: StepCoefficients, batch: int) -> tuple[np.ndarray, np.ndarray]:
    tf = np.repeat(time_features(coeff.t, cfg.time_features), batch, axis=0)
    return tf, np.asarray([coeff.a, coeff.b, coeff.c], np.float32)


PUBLIC_STEP_ARGS = (4, 5)  # t_features, abc in `step_function`'s signature


def step_arguments(params, cfg: UNetConfig, coeff: StepCoefficients, inputs: SamplingInputs) -> tuple:
    """Plain example arguments of one step, in `step_function`'s order."""
    tf, abc = public_step_inputs(cfg, coeff, len(inputs.labels))
    return params, inputs.initial, inputs.onehot(cfg.classes), inputs.per_step[0], tf, abc


def run_plain(step: Callable, params, initial: np.ndarray, condition: np.ndarray, noises: list[np.ndarray],
              publics: list[tuple]) -> np.ndarray:
    """Any model's denoising loop in plaintext: `step(params, x, condition, noise, *public)`."""

    jitted = jax.jit(step)
    x = initial
    for noise, public in zip(noises, publics):
        x = np.asarray(jitted(params, x, condition, noise, *public))
    return x


def sample_plain(params, cfg: UNetConfig, steps: list[StepCoefficients], inputs: SamplingInputs) -> np.ndarray:
    publics = [public_step_inputs(cfg, c, len(inputs.labels)) for c in steps]
    return run_plain(step_function(cfg), params, inputs.initial, inputs.onehot(cfg.classes), inputs.per_step, publics)


@dataclass
class SecureRun:
    images: np.ndarray
    per_step: list[dict] = field(default_factory=list)  # time_s, bytes, send_actions per step
    compile_s: float = 0.0

    @property
    def total(self) -> dict:
        return totals(self.per_step)


def totals(per_step: list[dict]) -> dict[str, float]:
    """A run's time, bytes and send actions: the sum of its steps'."""
    return {k: sum(s[k] for s in per_step) for k in ("time_s", "send_bytes", "send_actions")}


def run_secure(session, step: Callable, params, initial: np.ndarray, condition: np.ndarray,
               noises: list[np.ndarray], publics: list[tuple], timesteps: list[int],
               on_step: Callable[[int, dict], None] | None = None, op_costs: bool = False,
               owners: tuple[str, str] = ("model", "user")) -> SecureRun:
    """Any model's denoising loop on the session's parties: `step(params, x, condition, noise,
    *public)` with the weights secret to `owners[0]` ("model"), latent, condition and noise
    secret to `owners[1]` ("user"). The latent never leaves the parties until the last step
    reveals it to that owner."""

    model, user = owners
    w, y = Secret(params, owner=model), Secret(condition, owner=user)
    start = time.perf_counter()
    fn = session.compile(step, w, Secret(initial, owner=user), y, Secret(noises[0], owner=user),
                         *(Public(v) for v in publics[0]))
    run = SecureRun(images=np.empty(0), compile_s=time.perf_counter() - start)
    x = Secret(initial, owner=user)
    for i, (t, noise, public) in enumerate(zip(timesteps, noises, publics)):
        last = i == len(noises) - 1
        result = fn(w, x, y, Secret(noise, owner=user), *(Public(v) for v in public),
                    reveal_to=user if last else None)
        m = result.metrics
        stats = {"step": i, "t": t, **m.cost()}
        if op_costs:
            stats["hlo_ops"] = m.op_costs("hlo")
            stats["mpc_ops"] = m.op_costs("mpc")
        run.per_step.append(stats)
        if on_step is not None:
            on_step(i, stats)
        x = result.outputs
    run.images = np.asarray(x)
    return run


def sample_secure(session, params, cfg: UNetConfig, steps: list[StepCoefficients], inputs: SamplingInputs,
                  on_step: Callable[[int, dict], None] | None = None) -> SecureRun:
    """Run every denoising step of the MNIST U-Net on the session's parties (see `run_secure`)."""
    publics = [public_step_inputs(cfg, c, len(inputs.labels)) for c in steps]
    return run_secure(session, step_function(cfg), params, inputs.initial, inputs.onehot(cfg.classes),
                      inputs.per_step, publics, [c.t for c in steps], on_step, op_costs=True)


def plan_for(workload: str, schedule: Schedule, steps: int, eta: float = 0.0) -> list[StepCoefficients]:
    """The public plan of an MNIST workload. DDPM with fewer steps than its schedule samples
    ancestrally on an evenly strided subsequence (DDIM with eta = 1 is DDPM's posterior there)."""
    if workload == "ddpm-mnist":
        if steps == schedule.steps:
            return diffusion.plan("ddpm", schedule, steps)
        return diffusion.plan("ddim", schedule, steps, eta=1.0)
    if workload == "ddim-mnist":
        return diffusion.plan("ddim", schedule, steps, eta)
    raise ValueError(f"unknown MNIST workload {workload!r}; choose ddpm-mnist or ddim-mnist")
