"""The workloads `raympc sample` and `raympc sweep` can run, by name.

Each runs secure sampling on a session next to plaintext sampling from the same secret inputs
(always with the model's own activations, whatever `raympc.activations.use` swapped in, so quality
counts approximation error as well as fixed-point error) and returns a `WorkloadResult`: per-step and total cost, the cost by layer kind (optional, about one more
step), and quality against plaintext.

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
from workloads import breakdown, quality, sampling, sd_unet
from workloads.diffusion import Schedule, plan
from workloads.sampling import totals
from workloads.unet import UNetConfig, count_params, init_params
from workloads.weights import load_model

OnStep = Callable[[int, dict], None]


@dataclass(frozen=True)
class WorkloadOptions:
    steps: int = 2
    batch: int = 1
    seed: int = 0
    eta: float = 0.0
    scale: str = "tiny"  # sd-unet only
    breakdown: bool = True


@dataclass
class WorkloadResult:
    per_step: list[dict]
    compile_s: float
    breakdown: dict[str, dict] | None
    quality: dict[str, Any]
    secure: np.ndarray
    plain: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    images: bool = True  # MNIST digits in [-1, 1]; False for SD latents

    @property
    def total(self) -> dict[str, float]:
        return totals(self.per_step)


def _kinds(session, step_fn, args: tuple, public: tuple[int, ...], first_step: dict, seed: int) -> dict:
    calls = breakdown.record_layers(step_fn, *args, public=public)
    return breakdown.with_other(breakdown.measure_kinds(session, calls, seed=seed), first_step)


def _run_mnist(session, opts: WorkloadOptions, on_step: OnStep | None = None, *, sampler: str,
               weights: str | None) -> WorkloadResult:
    """`weights`: a shipped model's name, or None for the tiny random U-Net."""


    tiny = weights is None
    if tiny:
        cfg = UNetConfig(channels=8, multipliers=(1, 2), attention_at=(), time_features=8, embedding=16, groups=4)
        params = init_params(cfg, seed=1)[1]
        schedule, info = Schedule(steps=100), {"model": "tiny random U-Net"}
    else:
        params, cfg, schedule, meta = load_model(weights)
        info = {"model": f"shipped {weights} weights"}
    info["parameters"] = count_params(params)
    plan = sampling.plan_for(sampler, schedule, opts.steps, opts.eta)
    labels = np.arange(opts.batch) % cfg.classes
    inputs = sampling.SamplingInputs.draw(labels, plan, opts.seed)
    with stock():
        plain = sampling.sample_plain(params, cfg, plan, inputs)
    run = sampling.sample_secure(session, params, cfg, plan, inputs, on_step=on_step)
    kinds = None
    if opts.breakdown:
        kinds = _kinds(session, sampling.step_function(cfg), sampling.step_arguments(params, cfg, plan[0], inputs),
                       sampling.PUBLIC_STEP_ARGS, run.per_step[0], opts.seed)
    q = quality.closeness(run.images, plain)
    if not tiny:
        q.update(accuracy_secure=quality.accuracy(run.images, labels), accuracy_plain=quality.accuracy(plain, labels))
        if opts.batch >= 10:  # the proxy is biased at small counts: compare secure and plaintext of equal count
            q.update(fid_proxy_secure=quality.fid_proxy(run.images), fid_proxy_plain=quality.fid_proxy(plain))
    return WorkloadResult(run.per_step, run.compile_s, kinds, q, run.images, plain, info)


def _run_sd(session, opts: WorkloadOptions, on_step: OnStep | None) -> WorkloadResult:

    s = sd_unet.scale(opts.scale)
    params = sd_unet.init_params(s, opts.seed)
    steps = plan("ddim", Schedule(), opts.steps, opts.eta)
    base = sd_unet.step_arguments(s, params, batch=opts.batch, seed=opts.seed)
    latent, text = base[1], base[2]
    rng = np.random.default_rng(opts.seed + 1)
    noises = [rng.standard_normal(latent.shape).astype(np.float32) if c.c else np.zeros_like(latent) for c in steps]
    publics = [(np.full((opts.batch,), c.t, np.int32), np.asarray([c.a, c.b, c.c], np.float32)) for c in steps]
    step = sd_unet.step_function(s)
    with stock():
        plain = sampling.run_plain(step, params, latent, text, noises, publics)
    run = sampling.run_secure(session, step, params, latent, text, noises, publics, [c.t for c in steps], on_step)
    per_step, compile_s, secure = run.per_step, run.compile_s, run.images
    kinds = None
    if opts.breakdown:
        args = (params, latent, text, noises[0], *publics[0])
        kinds = _kinds(session, step, args, sd_unet.PUBLIC_STEP_ARGS, per_step[0], opts.seed)
    # latents are not images in [-1, 1]: PSNR over their own range
    closeness = {"max_abs_error": float(np.abs(secure - plain).max()),
                 "psnr_db": [quality.psnr(secure, plain, peak=float(np.ptp(plain)) or 1.0, clip=None)]}
    info = {"model": f"SD U-Net, scale {opts.scale}, random weights", "parameters": sd_unet.count_params(params),
            "scale": s.describe()}
    return WorkloadResult(per_step, compile_s, kinds, closeness, secure, plain, info, images=False)


WORKLOADS: dict[str, Callable[..., WorkloadResult]] = {
    "ddim-mnist": partial(_run_mnist, sampler="ddim-mnist", weights="ddpm-mnist"),
    "ddpm-mnist": partial(_run_mnist, sampler="ddpm-mnist", weights="ddpm-mnist"),
    "ddim-mnist-mish": partial(_run_mnist, sampler="ddim-mnist", weights="ddpm-mnist-mish"),
    "ddpm-mnist-mish": partial(_run_mnist, sampler="ddpm-mnist", weights="ddpm-mnist-mish"),
    "tiny-mnist": partial(_run_mnist, sampler="ddim-mnist", weights=None),
    "sd-unet": _run_sd,
}


def run_workload(name: str, session, opts: WorkloadOptions, on_step: OnStep | None = None) -> WorkloadResult:
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; choose one of {sorted(WORKLOADS)}")
    return WORKLOADS[name](session, opts, on_step)
