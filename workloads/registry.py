"""The workloads `raympc sample` and `raympc sweep` can run: the shipped ones by name, your own by
import path (`package.module:factory`, see `workloads.protocol`). Each is a factory of a
`Workload`, and `run_workload` runs any of them the same way: securely on a session next to
plaintext from the same secret inputs, with its cost, its cost by layer kind and its quality.

- `ddim-mnist`, `ddpm-mnist`: the shipped class-conditional MNIST U-Net. DDPM with fewer steps
  than its 1000-step schedule samples ancestrally on an evenly strided subsequence (DDIM with
  eta = 1, which is DDPM's posterior on that subsequence).
- `ddim-mnist-mish`, `ddpm-mnist-mish`: the same U-Net with Mish activations (the variant CipherDM
  evaluates), trained by the same recipe and shipped as `ddpm-mnist-mish`.
- `tiny-mnist`: a tiny random U-Net without attention on the same sampler (tests and CI; no
  classifier scores).
- `sd-unet`: diffusers' Stable Diffusion U-Net at a named scale (`sd_unet.SCALES`), random
  weights, secret latent and text embedding, DDIM.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import numpy as np

from raympc.activations import stock
from raympc.activations.coverage import Coverage, coverage
from workloads import breakdown, quality, sampling, sd_unet
from workloads.diffusion import Schedule, plan
from workloads.protocol import (
    Workload,
    WorkloadError,
    WorkloadOptions,
    check,
    is_import_path,
    load_factory,
)
from workloads.sampling import totals
from workloads.unet import UNetConfig, count_params, init_params
from workloads.weights import load_model

OnStep = Callable[[int, dict], None]
Factory = Callable[[WorkloadOptions], Workload]

__all__ = ["WORKLOADS", "WorkloadOptions", "WorkloadResult", "Workload", "WorkloadError", "factory", "build",
           "run_workload"]


@dataclass
class WorkloadResult:
    """A workload's secure run next to its plaintext reference."""

    per_step: list[dict]
    compile_s: float
    breakdown: dict[str, dict] | None
    quality: dict[str, Any]
    secure: np.ndarray
    plain: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    images: bool = True  # states are images in [-1, 1] (MNIST digits); False for SD latents or your own
    coverage: Coverage | None = None  # which nonlinearity call sites the policy swapped

    @property
    def total(self) -> dict[str, float]:
        return totals(self.per_step)


def _mnist(opts: WorkloadOptions, *, sampler: str, weights: str | None) -> Workload:
    """A shipped MNIST U-Net (`weights`), or the tiny random one (None)."""
    if weights is None:
        cfg = UNetConfig(channels=8, multipliers=(1, 2), attention_at=(), time_features=8, embedding=16, groups=4)
        params = init_params(cfg, seed=1)[1]
        schedule, info = Schedule(steps=100), {"model": "tiny random U-Net"}
    else:
        params, cfg, schedule, _ = load_model(weights)
        info = {"model": f"shipped {weights} weights"}
    info["parameters"] = count_params(params)
    steps = sampling.plan_for(sampler, schedule, opts.steps, opts.eta)
    labels = np.arange(opts.batch) % cfg.classes
    inputs = sampling.SamplingInputs.draw(labels, steps, opts.seed)
    return Workload(step=sampling.step_function(cfg), params=params, state=inputs.initial,
                    condition=inputs.onehot(cfg.classes), step_secrets=inputs.per_step,
                    step_publics=[sampling.public_step_inputs(cfg, c, opts.batch) for c in steps],
                    timesteps=[c.t for c in steps], images=True, info=info,
                    quality=None if weights is None else partial(_digit_quality, labels=labels, batch=opts.batch))


def _digit_quality(secure: np.ndarray, plain: np.ndarray, *, labels: np.ndarray, batch: int) -> dict[str, Any]:
    q = {"accuracy_secure": quality.accuracy(secure, labels), "accuracy_plain": quality.accuracy(plain, labels)}
    if batch >= 10:  # the proxy is biased at small counts: compare secure and plaintext of equal count
        q.update(fid_proxy_secure=quality.fid_proxy(secure), fid_proxy_plain=quality.fid_proxy(plain))
    return q


def _sd(opts: WorkloadOptions) -> Workload:
    """diffusers' SD U-Net at `opts.scale`, random weights, one DDIM step per `opts.steps`."""
    s = sd_unet.scale(opts.scale)
    params = sd_unet.init_params(s, opts.seed)
    steps = plan("ddim", Schedule(), opts.steps, opts.eta)
    base = sd_unet.step_arguments(s, params, batch=opts.batch, seed=opts.seed)
    latent, text = base[1], base[2]
    rng = np.random.default_rng(opts.seed + 1)
    noises = [rng.standard_normal(latent.shape).astype(np.float32) if c.c else np.zeros_like(latent) for c in steps]
    publics = [(np.full((opts.batch,), c.t, np.int32), np.asarray([c.a, c.b, c.c], np.float32)) for c in steps]
    return Workload(step=sd_unet.step_function(s), params=params, state=latent, condition=text, step_secrets=noises,
                    step_publics=publics, timesteps=[c.t for c in steps], images=False,
                    info={"model": f"SD U-Net, scale {opts.scale}, random weights",
                          "parameters": sd_unet.count_params(params), "scale": s.describe()})


# The shipped workloads by name; anything else is a user's factory named by import path.
WORKLOADS: dict[str, Factory] = {
    "ddim-mnist": partial(_mnist, sampler="ddim-mnist", weights="ddpm-mnist"),
    "ddpm-mnist": partial(_mnist, sampler="ddpm-mnist", weights="ddpm-mnist"),
    "ddim-mnist-mish": partial(_mnist, sampler="ddim-mnist", weights="ddpm-mnist-mish"),
    "ddpm-mnist-mish": partial(_mnist, sampler="ddpm-mnist", weights="ddpm-mnist-mish"),
    "tiny-mnist": partial(_mnist, sampler="ddim-mnist", weights=None),
    "sd-unet": _sd,
}


def factory(name: str) -> Factory:
    """The factory of a shipped workload's name or of an import path ("package.module:factory").

    Raises:
        WorkloadError: an unknown name, or an import path that does not resolve to a callable.
    """
    if is_import_path(name):
        return load_factory(name)
    if name not in WORKLOADS:
        raise WorkloadError(f"unknown workload {name!r}; choose one of {sorted(WORKLOADS)} "
                            "or give your own as package.module:factory")
    return WORKLOADS[name]


def build(name: str, opts: WorkloadOptions) -> Workload:
    """The workload `name` for `opts`, checked (see `factory` and `protocol.check`)."""
    return check(factory(name)(opts), name)


def run_workload(name: str, session, opts: WorkloadOptions, on_step: OnStep | None = None) -> WorkloadResult:
    """Run workload `name` securely on `session` and in plaintext from the same inputs.

    The plaintext reference runs with the model's own activations, whatever
    `raympc.activations.use` swapped in, so quality counts approximation error as well as SPU's
    fixed-point error.

    Returns:
        Per-step and total cost, the cost by layer kind (with `opts.breakdown`), quality (per-sample
        PSNR and max error against plaintext, plus the workload's own figures), and the coverage
        report of the step under the current policy.

    Raises:
        WorkloadError: see `build`.
    """
    w = build(name, opts)
    # under the caller's `use` and for the session's network: what really runs
    sites = coverage(w.step, *w.step_arguments(0), network=session.compile_for)
    with stock():
        plain = np.asarray(w.reference() if w.reference is not None else
                           sampling.run_plain(w.step, w.params, w.state, w.condition, w.step_secrets, w.step_publics))
    run = sampling.run_secure(session, w.step, w.params, w.state, w.condition, w.step_secrets, w.step_publics,
                              list(w.timesteps) if w.timesteps is not None else list(range(w.steps)), on_step,
                              op_costs=True, owners=(w.params_owner, w.inputs_owner))
    kinds = None
    if opts.breakdown:
        calls = breakdown.record_layers(w.step, *w.step_arguments(0), public=w.public_positions)
        kinds = breakdown.with_other(breakdown.measure_kinds(session, calls, seed=opts.seed), run.per_step[0])
    if w.images:
        q = quality.closeness(run.images, plain)
    else:  # no fixed range: PSNR over the reference's own
        q = {"max_abs_error": float(np.abs(run.images - plain).max()),
             "psnr_db": [quality.psnr(run.images, plain, peak=float(np.ptp(plain)) or 1.0, clip=None)]}
    if w.quality is not None:
        q.update(w.quality(run.images, plain))
    return WorkloadResult(run.per_step, run.compile_s, kinds, q, run.images, plain, w.info, images=w.images,
                          coverage=sites)
