"""What a workload is: the one way a model enters `raympc sample` and `raympc sweep`.

A workload is an iterated secure computation (a diffusion sampler's denoising loop, or any model
applied step by step) described by data, so raympc can run it securely next to plaintext from the
same inputs and measure it:

- `step(params, state, condition, step_secret, *step_public) -> next state`, a JAX function;
- `params`, the model's parameters, secret to `params_owner` (the model provider);
- `state`, the initial state, and `condition`, an array every step sees (a label, a text
  embedding; any small array if the step ignores it), both secret to `inputs_owner` (the user);
  the state stays secret-shared on the parties between steps and only the last is revealed, to
  the user;
- `step_secrets`, one secret input of the user's per step (the noise a sampler adds);
- `step_publics`, the public inputs of each step (timestep features, schedule coefficients): one
  compiled program serves every step because they are inputs, not constants;
- optionally `reference`, the plaintext result to compare with (by default the same loop in the
  clear, with the model's own activations), and `quality(secure, plain)`, extra figures.

A factory takes `WorkloadOptions` and returns a `Workload`. The shipped workloads are factories in
`workloads.registry`; your own is named by import path, `package.module:factory`, wherever a
workload name is taken (`raympc sample --workload`, `workload:` in a sweep spec).
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from raympc.errors import ConfigError

Quality = Callable[[np.ndarray, np.ndarray], dict[str, Any]]


class WorkloadError(ConfigError):
    """A workload that cannot run: an unknown name, an import path that does not resolve, or a
    factory that returned something malformed (the message names the field)."""


@dataclass(frozen=True)
class WorkloadOptions:
    """What a run asks of a workload; a factory may ignore what does not apply to it."""

    steps: int = 2
    batch: int = 1
    seed: int = 0
    eta: float = 0.0
    scale: str = "tiny"  # the SD U-Net's scale
    breakdown: bool = True  # also replay the first step's layers by kind (about one more step)


@dataclass
class Workload:
    """One workload, ready to run (see the module docstring for each field's role)."""

    step: Callable[..., Any]
    params: Any
    state: np.ndarray
    condition: Any
    step_secrets: Sequence[np.ndarray]
    step_publics: Sequence[tuple]
    timesteps: Sequence[int] | None = None  # labels for the per-step figures (default 0, 1, ...)
    reference: Callable[[], np.ndarray] | None = None
    quality: Quality | None = None
    images: bool = False  # states are images in [-1, 1]: PSNR and grids on that range
    info: dict[str, Any] = field(default_factory=dict)
    params_owner: str = "model"
    inputs_owner: str = "user"

    @property
    def steps(self) -> int:
        return len(self.step_secrets)

    def step_arguments(self, i: int = 0) -> tuple:
        """Step `i`'s plain arguments, in `step`'s order."""
        return (self.params, self.state, self.condition, self.step_secrets[i], *self.step_publics[i])

    @property
    def public_positions(self) -> tuple[int, ...]:
        """Where the public arguments sit in `step`'s signature."""
        return tuple(range(4, 4 + len(self.step_publics[0])))


def check(workload: Any, origin: str) -> Workload:
    """`workload` if it is a well-formed `Workload`, else a `WorkloadError` naming what is wrong.

    Args:
        workload: what a factory returned.
        origin: the factory's name, for the message.
    """
    if not isinstance(workload, Workload):
        raise WorkloadError(f"{origin} returned {type(workload).__name__}, not a workloads.protocol.Workload")
    problems = []
    if not callable(workload.step):
        problems.append(f"step is {type(workload.step).__name__}, not a function")
    for name in ("state", "condition"):
        value = np.asarray(getattr(workload, name)) if _arrayish(getattr(workload, name)) else None
        if value is None or value.dtype.kind not in "biuf":
            problems.append(f"{name} must be a numeric array, got {type(getattr(workload, name)).__name__}")
    if len(workload.step_secrets) == 0:
        problems.append("step_secrets is empty: a workload runs at least one step")
    elif len(workload.step_publics) != len(workload.step_secrets):
        problems.append(f"{len(workload.step_secrets)} step_secrets but {len(workload.step_publics)} step_publics: "
                        "give one of each per step")
    elif any(not isinstance(p, tuple) for p in workload.step_publics):
        problems.append("each entry of step_publics must be a tuple of that step's public inputs")
    elif len({len(p) for p in workload.step_publics}) > 1:
        problems.append("every step must take the same number of public inputs (one compiled program serves all)")
    if workload.timesteps is not None and len(workload.timesteps) != len(workload.step_secrets):
        problems.append(f"{len(workload.timesteps)} timesteps for {len(workload.step_secrets)} steps")
    for name in ("reference", "quality"):
        if getattr(workload, name) is not None and not callable(getattr(workload, name)):
            problems.append(f"{name} must be callable or None")
    if problems:
        raise WorkloadError(f"{origin} returned a malformed workload: " + "; ".join(problems))
    return workload


def _arrayish(value: Any) -> bool:
    try:
        np.asarray(value)
    except Exception:  # noqa: BLE001 - anything numpy cannot turn into an array is not one
        return False
    return True


def is_import_path(name: str) -> bool:
    """"package.module:factory" (a user's workload) rather than a registered name."""
    return ":" in name


def load_factory(path: str) -> Callable[[WorkloadOptions], Workload]:
    """The factory an import path names. As with `python -m`, modules under the working directory
    import too (`examples.gpt2_tiny:make` from a checkout), after everything on the path.

    Raises:
        WorkloadError: the module does not import, or has no callable of that name.
    """
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise WorkloadError(f"workload {path!r}: an import path is package.module:factory")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise WorkloadError(f"workload {path!r}: cannot import {module_name!r} ({exc}); is it on PYTHONPATH?") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise WorkloadError(f"workload {path!r}: {module_name} has no callable {attr!r}")
    return factory


def file_stem(name: str) -> str:
    """A workload name as part of a file name ("pkg.mod:make" -> "pkg.mod-make")."""
    return name.replace(":", "-").replace("/", "-")
