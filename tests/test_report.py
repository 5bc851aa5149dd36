"""The sweep report's repeats: points that differ only in their seed summarised as one
configuration, with the time ratio against SPU as it ships (pure pandas, no parties needed)."""

from __future__ import annotations

import pandas as pd
import pytest

from raympc.sweeps.report import repeat_rows
from raympc.sweeps.spec import PointParams


def _frame(points: list[tuple[dict, float]]) -> pd.DataFrame:
    rows = []
    for params, step_s in points:
        p = PointParams(**{"workload": "ddim-mnist", "network": "wan", "batch": 2, **params})
        rows.append({**p.model_dump(), "profile": p.profile, "step_s": step_s, "steps": 1,
                     "mb_per_step": 217.7 if p.activations == "raympc" else 524.3,
                     "send_actions": 3374 if p.activations == "raympc" else 9637})
    return pd.DataFrame(rows)


def test_repeats_give_spread_and_ratio_against_spu_as_shipped():
    ok = _frame([({"activations": "spu-direct", "seed": s}, t) for s, t in ((0, 75.85), (1, 75.47), (2, 75.90))]
                + [({"activations": "raympc", "seed": s}, t) for s, t in ((0, 30.02), (1, 30.30), (2, 29.98))]
                + [({"activations": "spu-direct", "exp_mode": "pade", "seed": s}, 96.0 + s) for s in (0, 1)]
                + [({"activations": "cipherdm"}, 63.5)])  # one run: not a repeat
    rows = {r["activations"]: r for r in repeat_rows(ok)}
    assert set(rows) == {"spu-direct", "raympc", "spu-direct (pade exp)"}
    ours = rows["raympc"]
    assert ours["runs"] == 3 and ours["s/step mean"] == "30.10" and ours["s/step range"] == "29.98 - 30.30"
    assert ours["MB/step"] == "217.7" and ours["actions/step"] == "3,374"
    assert ours["time vs SPU (Taylor): means"] == f"{(75.85 + 75.47 + 75.90) / (30.02 + 30.30 + 29.98):.3f}x"
    assert ours["per seed"] == f"{75.47 / 30.30:.3f}x - {75.90 / 29.98:.3f}x (3 pairs)"
    assert rows["spu-direct"]["time vs SPU (Taylor): means"] == ""  # the baseline itself
    assert rows["spu-direct (pade exp)"]["time vs SPU (Taylor): means"] == f"{75.74 / 96.5:.3f}x"


@pytest.mark.parametrize("other", [{"batch": 4}, {"network": "lan"}])
def test_repeats_compare_only_against_the_same_configuration(other):
    ok = _frame([({"activations": "raympc", "seed": s}, 30.0) for s in (0, 1)]
                + [({"activations": "spu-direct", "seed": s, **other}, 75.0) for s in (0, 1)])
    rows = {r["activations"]: r for r in repeat_rows(ok)}
    assert rows["raympc"]["time vs SPU (Taylor): means"] == "" and rows["raympc"]["per seed"] == ""
