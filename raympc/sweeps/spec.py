"""Sweep specs: a YAML grid (and explicit points) over workload, activations, network, protocol,
field, batch, steps and placement, validated completely before anything runs.

    name: network-grid
    base: {workload: tiny-mnist, steps: 1}           # every point starts from these
    grid:                                            # cartesian product of the lists
      rate: [100mbit, 1gbit]
      rtt: [10ms, 40ms]
    variants:                                        # crossed with the grid: settings that go together
      - {activations: spu-direct, exp_mode: pade}
      - {activations: raympc}
    points:                                          # extra points, each over `base`
      - {workload: sd-unet, scale: tiny}

`network` takes a preset or 'RATE,DELAY' (one-way delay); `rate` and `rtt` build one
(delay = rtt / 2) and cannot be combined with `network`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

import netsim
from raympc.activations.policy import PolicyError, resolve
from raympc.errors import ConfigError
from raympc.runtime.protocols import EXP_MODES, FIELDS, PROTOCOLS
from workloads.protocol import WorkloadError
from workloads.registry import factory
from workloads.sd_unet import SCALES


class SpecError(ConfigError):
    """A sweep spec that cannot run; the message names every bad field and its allowed values."""


def _choices() -> dict[str, list[str]]:
    """Allowed values of the enumerated fields, from the registries they come from."""

    return {
        "protocol": sorted(p for p, s in PROTOCOLS.items() if 3 in s.party_counts),
        "field": sorted(FIELDS),
        "exp_mode": sorted(EXP_MODES),
        "placement": ["pack", "spread"],  # a sweep reserves each point as a placement group
        "scale": sorted(n for n in SCALES if n != "sd-v1"),
        "shaping": ["auto", *sorted(netsim.BACKENDS)],
    }


# Fields whose values a registry resolves, and the error it raises for one it does not know: a
# shipped workload's name or package.module:factory; a policy, with per-activation overrides; a
# network preset or RATE,DELAY.
_RESOLVERS = {
    "workload": (factory, WorkloadError),
    "activations": (resolve, PolicyError),
    "network": (netsim.resolve, netsim.ProfileError),
}


class PointParams(BaseModel):
    """Everything one sweep point runs with. Unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workload: str = "tiny-mnist"
    activations: str = "raympc"
    network: str = "unshaped"
    rate: str | None = None
    rtt: str | None = None
    protocol: str = "aby3"
    field: str = "fm64"
    exp_mode: str = "taylor"
    batch: int = Field(1, ge=1, le=1024)
    steps: int = Field(1, ge=1, le=1000)
    eta: float = Field(0.0, ge=0.0, le=1.0)
    scale: str = "tiny"
    placement: str = "pack"
    shaping: str = "auto"
    seed: int = Field(0, ge=0)
    breakdown: bool = True
    party_cpus: float = Field(1.0, gt=0)

    @field_validator("workload", "activations", "network")
    @classmethod
    def _resolvable(cls, v: str, info) -> str:
        """A value its own registry resolves (see `_RESOLVERS`); its error is the field's."""
        resolve_it, error = _RESOLVERS[info.field_name]
        try:
            resolve_it(v)
        except error as exc:
            raise ValueError(str(exc)) from None
        return v

    @field_validator("protocol", "field", "exp_mode", "placement", "scale", "shaping")
    @classmethod
    def _known(cls, v: str, info) -> str:
        allowed = _choices()[info.field_name]
        if v not in allowed:
            raise ValueError(f"{v!r} is not one of {allowed}")
        return v

    @field_validator("rate", "rtt", mode="before")
    @classmethod
    def _quantity(cls, v: Any, info) -> str | None:
        if v is None:
            return None
        try:
            (netsim.parse_rate if info.field_name == "rate" else netsim.parse_duration)(v)
        except netsim.ProfileError as exc:
            raise ValueError(str(exc)) from None
        return str(v)

    @model_validator(mode="after")
    def _combined(self) -> "PointParams":
        if (self.rate is not None or self.rtt is not None) and self.network != "unshaped":
            raise ValueError(f"give either network ({self.network!r}) or rate/rtt, not both")
        if self.workload.startswith("ddpm-") and self.eta:
            raise ValueError(f"eta applies to DDIM; {self.workload} samples with eta = 1 on its strided steps")
        return self

    @property
    def profile(self) -> str:
        """The network profile string a Session takes."""

        if self.rate is None and self.rtt is None:
            return self.network
        delay_ms = netsim.parse_duration(self.rtt or 0) / 2 * 1e3
        return f"{self.rate or 'unlimited'},{delay_ms:g}ms"

    @property
    def point_id(self) -> str:
        """Stable across runs and machines: a hash of every parameter."""
        canon = json.dumps(self.model_dump(), sort_keys=True)
        return hashlib.sha256(canon.encode()).hexdigest()[:12]


class SweepSpec(BaseModel):
    """A sweep as written in YAML: `base` settings, a `grid` (cartesian product), `variants`
    crossed with the grid, and explicit `points`; `expand` turns it into validated points."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    base: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    variants: list[dict[str, Any]] = Field(default_factory=list)
    points: list[dict[str, Any]] = Field(default_factory=list)


def _format(errors: list[str]) -> str:
    return "invalid sweep spec:\n  - " + "\n  - ".join(errors)


def _explain(where: str, exc: ValidationError) -> list[str]:
    out = []
    fields = sorted(PointParams.model_fields)
    for e in exc.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(point)"
        if e["type"] == "extra_forbidden":
            out.append(f"{where}: unknown field {loc!r}; allowed fields: {fields}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            out.append(f"{where}: {loc}: {msg} (got {e.get('input')!r})")
    return out


def load_spec(path: Path) -> SweepSpec:
    """Read and check a sweep spec.

    Args:
        path: a YAML file (examples in workloads/specs/).

    Returns:
        The spec; its points are validated by `expand`.

    Raises:
        SpecError: no such file, invalid YAML, or fields the spec format does not have.
    """
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise SpecError(f"no sweep spec at {path}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a sweep spec is a mapping with name, base, grid and points")
    try:
        return SweepSpec(**raw)
    except ValidationError as exc:
        allowed = sorted(SweepSpec.model_fields)
        errors = [f"top level: unknown field {'.'.join(map(str, e['loc']))!r}; allowed: {allowed}"
                  if e["type"] == "extra_forbidden" else
                  f"top level: {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise SpecError(_format(errors)) from None


def expand(spec: SweepSpec) -> list[PointParams]:
    """Every point of the spec, validated; all problems reported at once, before anything runs.

    Raises:
        SpecError: every unknown field and bad value, each with the allowed ones.
    """
    errors: list[str] = []
    fields = set(PointParams.model_fields)
    for where, keys in (("base", spec.base), ("grid", spec.grid),
                        *((f"variants[{i}]", v) for i, v in enumerate(spec.variants))):
        for key in keys:
            if key not in fields:
                errors.append(f"{where}: unknown field {key!r}; allowed fields: {sorted(fields)}")
    for key, values in spec.grid.items():
        if not values:
            errors.append(f"grid.{key}: empty list")
    if errors:
        raise SpecError(_format(errors))
    raw_points: list[tuple[str, dict[str, Any]]] = []
    keys = list(spec.grid)
    for combo in itertools.product(*(spec.grid[k] for k in keys)):
        for variant in spec.variants or [{}]:
            chosen = {**dict(zip(keys, combo)), **variant}
            raw_points.append((f"grid point {chosen}", {**spec.base, **chosen}))
    if not spec.grid and not spec.variants and not spec.points:
        raw_points.append(("base", dict(spec.base)))
    for i, p in enumerate(spec.points):
        raw_points.append((f"points[{i}]", {**spec.base, **p}))
    points: list[PointParams] = []
    for where, raw in raw_points:
        try:
            points.append(PointParams(**raw))
        except ValidationError as exc:
            errors.extend(_explain(where, exc))
    if errors:
        # one message per distinct problem (a bad grid value shows up in many points)
        raise SpecError(_format(list(dict.fromkeys(e.split(": ", 1)[1] if e.startswith("grid point") else e
                                                   for e in errors))))
    seen: dict[str, PointParams] = {}
    for p in points:
        seen.setdefault(p.point_id, p)
    return list(seen.values())


def select(points: list[PointParams], only: dict[str, str]) -> list[PointParams]:
    """The points whose fields all equal `only`'s values (compared as text, as typed on a command
    line), e.g. {"activations": "raympc"} to rerun one variant of a spec after changing its code."""
    unknown = sorted(set(only) - set(PointParams.model_fields))
    if unknown:
        raise SpecError(f"--only: unknown field(s) {unknown}; allowed fields: {sorted(PointParams.model_fields)}")
    chosen = [p for p in points if all(str(getattr(p, k)) == v for k, v in only.items())]
    if not chosen:
        have = {k: sorted({str(getattr(p, k)) for p in points}) for k in only}
        raise SpecError(f"--only {only} matches none of the spec's {len(points)} points; its values: {have}")
    return chosen
