"""Extrapolate a secure U-Net step's cost to sizes that cannot run here (full SD v1).

Method. A secure layer's cost in ABY3 depends on shapes only, and grows linearly in a few sizes
per layer kind (`breakdown._features`):
- conv/matmul: output elements (every product is reshared and truncated once);
- groupnorm: elements, and the statistics it normalises by (a reciprocal square root each);
- activation: elements;
- attention: score-matrix elements (products, exp, max), rows (one reciprocal each) and
  output elements (projections).
Send actions grow with the number of calls of each kind (dependent rounds per layer), and for
attention with the depth of its row max too (`depth`: ceil(log2(keys)) per call), since a row of
SD v1's 4,096 latent positions takes twice the comparison levels of the small scales' rows.
At each measured scale we replay every kind alone under MPC (`breakdown.measure_kinds`), then fit
per kind `bytes = sum_f c_f * size_f` and `actions = sum_g d_g * size_g` (g: calls, and depth for
attention) by non-negative least squares over the fitted scales, and time per kind as `a * bytes + b * calls` (unshaped compute). "Other"
(linear glue) is predicted as its mean share of the measured totals. The target model's sizes
come from an abstract trace (no parameters allocated), so the prediction uses its real layer
list. A held-out measured scale, not used in the fit, checks the extrapolation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import nnls

from workloads.breakdown import KINDS, LayerCall

FEATURES: dict[str, tuple[str, ...]] = {
    "conv/matmul": ("elements",),
    "groupnorm": ("elements", "stats"),
    "activation": ("elements",),
    "attention": ("scores", "rows", "elements"),
}
# what send actions grow with; a kind not listed: its calls
ACTION_FEATURES: dict[str, tuple[str, ...]] = {"attention": ("calls", "depth")}
METRICS = ("send_bytes", "send_actions", "time_s")


def action_features(kind: str) -> tuple[str, ...]:
    return ACTION_FEATURES.get(kind, ("calls",))


def kind_sizes(calls: list[LayerCall]) -> dict[str, dict[str, float]]:
    """Per kind: the summed sizes of its calls, plus the call count."""
    out: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        mine = [c for c in calls if c.kind == kind]
        sizes = {f: float(sum(c.features.get(f, 0) for c in mine))
                 for f in dict.fromkeys(FEATURES[kind] + action_features(kind)) if f != "calls"}
        sizes["calls"] = float(len(mine))
        out[kind] = sizes
    return out


@dataclass
class Measurement:
    """One measured scale: sizes and measured cost per kind, and the whole step's cost."""

    name: str
    sizes: dict[str, dict[str, float]]
    kinds: dict[str, dict[str, float]]
    total: dict[str, float]
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "sizes": self.sizes, "kinds": self.kinds, "total": self.total, "info": self.info}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Measurement":
        return cls(d["name"], d["sizes"], d["kinds"], d["total"], d.get("info", {}))


def _nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # scale columns so tiny and huge sizes get equal footing in the solver
    norm = np.where(a.max(axis=0) > 0, a.max(axis=0), 1.0)
    coef, _ = nnls(a / norm, b)
    return coef / norm


def _fit_linear(measurements: list[Measurement], kind: str, features: tuple[str, ...], metric: str) -> dict[str, float]:
    """`metric = sum_f c_f * size_f` for one kind, by NNLS over the measurements (a kind with no
    calls gets zeros)."""
    a = np.array([[m.sizes[kind][f] for f in features] for m in measurements])
    b = np.array([m.kinds[kind][metric] for m in measurements], float)
    return dict(zip(features, _nnls(a, b).tolist()))


def _linear(coef: dict[str, float], sizes: dict[str, float]) -> float:
    return sum(c * sizes.get(f, 0.0) for f, c in coef.items())


@dataclass
class CostModel:
    bytes_coef: dict[str, dict[str, float]]
    actions_coef: dict[str, dict[str, float]]
    time_coef: dict[str, tuple[float, float]]  # (s per byte, s per call)
    other_share: dict[str, float]
    fitted_on: list[str]

    @classmethod
    def fit(cls, measurements: list[Measurement]) -> "CostModel":
        if len(measurements) < 2:
            raise ValueError("fitting the cost model needs at least two measured scales")
        bytes_coef, actions, time_coef = {}, {}, {}
        for kind in KINDS:
            bytes_coef[kind] = _fit_linear(measurements, kind, FEATURES[kind], "send_bytes")
            actions[kind] = _fit_linear(measurements, kind, action_features(kind), "send_actions")
            b = np.array([m.kinds[kind]["send_bytes"] for m in measurements], float)
            calls = np.array([m.sizes[kind]["calls"] for m in measurements])
            t = np.array([m.kinds[kind]["time_s"] for m in measurements], float)
            ta = np.stack([b, calls], axis=1)
            time_coef[kind] = tuple(_nnls(ta, t).tolist())
        # Replayed kinds can take longer than inside the whole step (noise, per-program costs), so a
        # measured "other" time can come out negative; it never predicts less than zero.
        other = {k: max(float(np.mean([m.kinds["other"][k] / m.total[k] for m in measurements if m.total[k]])), 0.0)
                 for k in METRICS}
        return cls(bytes_coef, actions, time_coef, other, [m.name for m in measurements])

    def predict(self, sizes: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        """Per kind and in total: predicted bytes, send actions and unshaped time."""
        out: dict[str, dict[str, float]] = {}
        for kind in KINDS:
            s = sizes[kind]
            b = _linear(self.bytes_coef[kind], s)
            per_byte, per_call = self.time_coef[kind]
            out[kind] = {"send_bytes": b, "send_actions": _linear(self.actions_coef[kind], s),
                         "time_s": per_byte * b + per_call * s["calls"]}
        layers = {k: sum(v[k] for v in out.values()) for k in METRICS}
        # other = share * total, total = layers + other  =>  total = layers / (1 - share)
        total = {k: layers[k] / (1.0 - self.other_share[k]) for k in METRICS}
        out["other"] = {k: total[k] - layers[k] for k in METRICS}
        out["total"] = total
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"bytes_coef": self.bytes_coef, "actions_coef": self.actions_coef,
                "time_coef": {k: list(v) for k, v in self.time_coef.items()}, "other_share": self.other_share,
                "fitted_on": self.fitted_on}


def relative_errors(predicted: dict[str, dict[str, float]], measured: Measurement) -> dict[str, dict[str, float]]:
    """(predicted - measured) / measured per kind and in total, for every metric."""
    rows = {**{k: measured.kinds[k] for k in (*KINDS, "other")}, "total": measured.total}
    return {k: {m: (predicted[k][m] - v[m]) / v[m] if v[m] else 0.0 for m in METRICS} for k, v in rows.items()}
