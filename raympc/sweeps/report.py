"""`raympc report DIR`: a Markdown report of a sweep's results, with matplotlib figures.

Sections appear when the sweep holds the data for them: a summary table; latency against
bandwidth and against RTT per activation implementation; bytes per implementation; cost by layer
kind (the paper's latency breakdown, from the per-kind replays); measured against predicted time;
cost against quality.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd
from rich.console import Console

import netsim
from raympc.errors import ConfigError
from raympc.sweeps.spec import PointParams
from raympc.sweeps.store import ResultStore
from raympc.util.figures import pyplot, timeline_figure
from raympc.util.files import write_text_atomically
from raympc.util.tables import markdown_table


def _profile_columns(df):
    def split(profile: str) -> tuple[float | None, float]:
        p = netsim.resolve(profile)
        return (p.default.rate_bps / 1e6 if p.default.rate_bps else math.inf), 2e3 * p.default.delay_s

    parts = df["profile"].map(split)
    df["rate_mbit"] = parts.map(lambda v: v[0])
    df["rtt_ms"] = parts.map(lambda v: v[1])
    return df


def _fmt(v: Any, spec: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return format(v, spec)


BASELINE = {"activations": "spu-direct", "exp_mode": "taylor"}  # SPU as it ships


def _label(r) -> str:
    """An implementation as the tables name it: SPU's exp mode shows where it is not the default."""
    return r["activations"] if r.get("exp_mode", "taylor") == "taylor" else f"{r['activations']} ({r['exp_mode']} exp)"


@dataclass
class RepeatGroup:
    """One configuration's repeats (its points differ only in their seed)."""
    points: Any  # the rows of `ok`
    baseline_s: Any  # the baseline's step time per seed (SPU as it ships, same configuration), or None

    @property
    def first(self):
        return self.points.iloc[0]

    def ratios(self):
        """Baseline time over this configuration's, per seed both ran (a Series by seed; empty for
        the baseline itself, or without one)."""
        if self.baseline_s is None:
            return pd.Series(dtype=float)
        own = self.points.groupby("seed")["step_s"].mean()
        return (self.baseline_s / own).dropna()

    def mean_ratio(self) -> float:
        """Baseline time over this configuration's, on the means of their runs."""
        return self.baseline_s.mean() / self.points["step_s"].mean()


def repeat_groups(ok) -> list[RepeatGroup]:
    """Points that differ only in their seed are repeats of one configuration (a step's costs do not
    depend on the values); each group knows its baseline's times, unless it is the baseline."""

    def key(columns: list[str]):  # None and NaN (unset fields) compare equal
        return ok[columns].apply(lambda r: "|".join("" if pd.isna(v) else str(v) for v in r), axis=1)

    keys = [f for f in PointParams.model_fields if f != "seed" and f in ok.columns]
    ok = ok.assign(_key=key(keys), _base_key=key([k for k in keys if k not in BASELINE]))
    is_baseline = (ok[list(BASELINE)] == pd.Series(BASELINE)).all(axis=1)
    baseline = ok[is_baseline]
    groups = []
    for _, g in ok.groupby("_key", sort=False):
        if len(g) < 2:
            continue
        base = baseline[baseline["_base_key"] == g["_base_key"].iloc[0]]
        by_seed = base.groupby("seed")["step_s"].mean() if len(base) and not is_baseline[g.index[0]] else None
        groups.append(RepeatGroup(g, by_seed))
    return groups


def repeat_rows(ok) -> list[dict[str, Any]]:
    """The repeats table: each configuration's spread in time, its counts, and the time ratio against
    the baseline on the means and per seed."""
    rows = []
    for grp in repeat_groups(ok):
        g, r0 = grp.points, grp.first
        row = {"workload": r0["workload"], "activations": _label(r0), "network": r0["profile"],
               "batch": r0["batch"], "runs": len(g), "s/step mean": f"{g['step_s'].mean():.2f}",
               "s/step range": f"{g['step_s'].min():.2f} - {g['step_s'].max():.2f}",
               "MB/step": "; ".join(sorted({f"{v:.1f}" for v in g["mb_per_step"]})),
               "actions/step": "; ".join(sorted({f"{v:,.0f}" for v in g["send_actions"] / g["steps"]})),
               "time vs SPU (Taylor): means": "", "per seed": ""}
        if grp.baseline_s is not None:
            row["time vs SPU (Taylor): means"] = f"{grp.mean_ratio():.3f}x"
            ratios = grp.ratios()
            if len(ratios):
                row["per seed"] = f"{ratios.min():.3f}x - {ratios.max():.3f}x ({len(ratios)} pairs)"
        rows.append(row)
    return rows


@dataclass
class _Sweep:
    """What every report section reads: the finished points (with derived columns), the failed
    ones, and where figures go."""

    ok: pd.DataFrame
    failed: pd.DataFrame
    figures: Path

    def figure(self, fig, name: str, caption: str) -> str:
        """Save `fig` as figures/NAME.png and return the Markdown that shows it."""
        fig.tight_layout()
        fig.savefig(self.figures / f"{name}.png", dpi=110)
        pyplot().close(fig)
        return f"![{caption}](figures/{name}.png)\n"


def build_report(directory: Path, console: Console | None = None) -> Path:
    """Write DIRECTORY/report.md and its figures from a sweep's results.

    Args:
        directory: a `raympc sweep --out` directory.
        console: where to say what was written.

    Returns:
        The report's path.

    Raises:
        ConfigError: the directory holds no sweep results.
    """
    console = console or Console()
    store = ResultStore(directory)
    df = store.frame()
    if df.empty:
        raise ConfigError(f"no sweep results in {directory} (expected {store.path})")
    ok = _profile_columns(df[df["status"] == "ok"].copy())
    ok["step_s"] = ok["time_s"] / ok["steps"]
    ok["impl"] = [_label(r) for _, r in ok.iterrows()]
    ok["mb_per_step"] = ok["send_bytes"] / ok["steps"] / 1e6
    sweep = _Sweep(ok, df[df["status"] != "ok"], Path(directory) / "figures")
    sweep.figures.mkdir(exist_ok=True)
    md: list[str] = [f"# Sweep report: {', '.join(sorted(df['sweep'].dropna().unique())) or directory}\n",
                     f"{len(df)} points: {len(ok)} finished, {len(sweep.failed)} failed. Source: `{store.path}`. "
                     "Bytes and send actions are SPU's counts over all three ranks; times are wall-clock "
                     "seconds of the secure steps (compilation excluded).\n"]
    for section in SECTIONS:
        md += section(sweep)
    path = write_text_atomically(Path(directory) / "report.md", "\n".join(md))
    console.print(f"wrote {path} and {len(list(sweep.figures.glob('*.png')))} figures in {sweep.figures}")
    return path


def _points(sweep: _Sweep) -> list[str]:
    ok, rows = sweep.ok, []
    for _, r in ok.sort_values(["workload", "impl", "rate_mbit", "rtt_ms", "seed"]).iterrows():
        rows.append({"point": r["point_id"][:8], "workload": r["workload"], "activations": r["impl"],
                     "network": r["profile"], "protocol": r["protocol"], "batch": r["batch"], "steps": r["steps"],
                     **({"seed": r["seed"]} if ok["seed"].nunique() > 1 else {}),
                     "s/step": _fmt(r["step_s"], ".2f"), "MB/step": _fmt(r["mb_per_step"], ".1f"),
                     "actions/step": _fmt(r["send_actions"] / r["steps"], ",.0f"),
                     "PSNR dB": _fmt(r.get("quality.psnr_db_min"), ".1f"),
                     "max err": _fmt(r.get("quality.max_abs_error"), ".3g"),
                     "predicted s/step": _fmt(r.get("predicted_time_s", math.nan) / r["steps"], ".2f"),
                     "backend": r.get("shaping.backend", "")})
    md = ["## Points\n", markdown_table(rows)]
    if len(sweep.failed):
        md += ["## Failed points\n", markdown_table([{"point": r["point_id"][:8], "workload": r["workload"],
                                                      "activations": r["activations"], "network": r["profile"],
                                                      "error": str(r["error"])[:160]}
                                                     for _, r in sweep.failed.iterrows()])]
    return md


def _repeats(sweep: _Sweep) -> list[str]:
    groups = repeat_groups(sweep.ok)
    if not groups:
        return []
    md = ["## Repeats\n",
          "Points that differ only in their seed, as one configuration: bytes and send actions should "
          "agree (SPU's counts are deterministic), times show the machine's run-to-run noise. Ratios are "
          "the baseline's step time (SPU as it ships, same configuration) over this one's.\n"]
    compared = any(len(grp.ratios()) for grp in groups)
    fig, axes = pyplot().subplots(1, 2 if compared else 1, figsize=(9.5 if compared else 5, 3.6), squeeze=False)
    for grp in groups:
        label = f"{grp.first['workload']}, {_label(grp.first)}, {grp.first['profile']}"
        color = axes[0][0].plot(grp.points["seed"], grp.points["step_s"], marker="o", label=label)[0].get_color()
        ratios = grp.ratios()
        if len(ratios):
            axes[0][1].plot(ratios.index, ratios.values, marker="o", color=color, label=label)
            axes[0][1].axhline(grp.mean_ratio(), color=color, ls="--", lw=0.8)
    axes[0][0].set_xlabel("seed (run)")
    axes[0][0].set_ylabel("s per step")
    axes[0][0].legend(fontsize=7)
    if compared:
        axes[0][1].set_xlabel("seed (run)")
        axes[0][1].set_ylabel("SPU (Taylor) time / this time")
        axes[0][1].set_title("per run; dashed: ratio of the means", fontsize=9)
    md.append(sweep.figure(fig, "repeats", "repeats: step time and ratio against SPU per run"))
    md.append(markdown_table(repeat_rows(sweep.ok)))
    return md


def _time_against_network(sweep: _Sweep) -> list[str]:
    shaped, md = sweep.ok[sweep.ok["profile"] != "unshaped"], []
    for x, other, xlabel, title in (("rate_mbit", "rtt_ms", "rate (Mbit/s)", "bandwidth"),
                                    ("rtt_ms", "rate_mbit", "RTT (ms)", "rtt")):
        groups = [g for g in shaped.groupby(["workload", other]) if g[1][x].nunique() >= 2]
        if not groups:
            continue
        md.append(f"## Step time against {'bandwidth' if x == 'rate_mbit' else 'RTT'}\n")
        fig, axes = pyplot().subplots(1, len(groups), figsize=(4.5 * len(groups), 3.6), squeeze=False)
        for ax, ((workload, fixed), g) in zip(axes[0], groups):
            for impl, gi in g.groupby("impl"):
                gi = gi.sort_values(x)
                ax.plot(gi[x], gi["step_s"], marker="o", label=impl)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("s per step")
            ax.set_xscale("log" if x == "rate_mbit" else "linear")
            ax.set_title(f"{workload}, {'RTT' if other == 'rtt_ms' else 'rate'} {fixed:g}"
                         f"{' ms' if other == 'rtt_ms' else ' Mbit/s'}", fontsize=9)
            ax.legend(fontsize=8)
        md.append(sweep.figure(fig, f"latency-vs-{title}", f"step time against {xlabel}"))
    return md


def _bytes_per_implementation(sweep: _Sweep) -> list[str]:
    per_impl = sweep.ok.groupby(["workload", "impl"])["mb_per_step"].median().reset_index()
    if not len(per_impl):
        return []
    workloads = sorted(per_impl["workload"].unique())
    fig, axes = pyplot().subplots(1, len(workloads), figsize=(4.2 * len(workloads), 3.4), squeeze=False)
    for ax, w in zip(axes[0], workloads):
        g = per_impl[per_impl["workload"] == w].sort_values("mb_per_step")
        ax.barh(g["impl"], g["mb_per_step"])
        ax.set_xlabel("MB per step (3 ranks)")
        ax.set_title(w, fontsize=9)
    return ["## Bytes per step by activation implementation\n",
            sweep.figure(fig, "bytes-per-implementation", "bytes per step per activation implementation"),
            markdown_table([{"workload": r["workload"], "activations": r["impl"], "MB/step": f"{r['mb_per_step']:.1f}"}
                            for _, r in per_impl.iterrows()])]


KINDS = ("conv/matmul", "groupnorm", "activation", "attention", "other")


def _breakdown(sweep: _Sweep) -> list[str]:
    kcols = [f"breakdown.{k}.send_bytes" for k in KINDS]
    if not all(c in sweep.ok.columns for c in kcols):
        return []
    b = sweep.ok.dropna(subset=kcols)  # rows with a breakdown
    if not len(b):
        return []
    labels = [f"{r['workload']}\n{r['activations']}\n{r['profile']}" for _, r in b.iterrows()]
    fig, axes = pyplot().subplots(1, 3, figsize=(max(10, 1.6 * len(b) * 3), 4))
    for ax, metric, unit, scale in ((axes[0], "send_bytes", "MB", 1e6), (axes[1], "send_actions", "send actions", 1),
                                    (axes[2], "time_s", "s", 1)):
        bottom = [0.0] * len(b)
        for k in KINDS:
            vals = [max(float(v), 0.0) / scale for v in b[f"breakdown.{k}.{metric}"]]
            ax.bar(range(len(b)), vals, bottom=bottom, label=k)
            bottom = [x + y for x, y in zip(bottom, vals)]
        ax.set_xticks(range(len(b)), labels, fontsize=6)
        ax.set_ylabel(unit)
    axes[0].legend(fontsize=7)
    rows = []
    for _, r in b.iterrows():
        tot = sum(max(r[f"breakdown.{k}.time_s"], 0) for k in KINDS) or 1.0
        totb = sum(max(r[f"breakdown.{k}.send_bytes"], 0) for k in KINDS) or 1.0
        rows.append({"workload": r["workload"], "activations": r["impl"], "network": r["profile"],
                     **{f"{k} bytes/time": f"{max(r[f'breakdown.{k}.send_bytes'], 0) / totb:.0%} / "
                                           f"{max(r[f'breakdown.{k}.time_s'], 0) / tot:.0%}" for k in KINDS}})
    return ["## Cost by layer kind (first step, each kind replayed alone under MPC)\n",
            sweep.figure(fig, "breakdown-by-kind", "cost by layer kind"), markdown_table(rows)]


def _measured_against_predicted(sweep: _Sweep) -> list[str]:
    ok = sweep.ok
    if "predicted_time_s" not in ok.columns or not ok["predicted_time_s"].notna().any():
        return []
    p = ok.dropna(subset=["predicted_time_s"])
    fig, ax = pyplot().subplots(figsize=(4.6, 4.4))
    for impl, g in p.groupby("impl"):
        ax.scatter(g["time_s"], g["predicted_time_s"], label=impl)
    top = max(p["time_s"].max(), p["predicted_time_s"].max()) * 1.05
    ax.plot([0, top], [0, top], "k--", lw=0.8)
    for f in (0.9, 1.1):
        ax.plot([0, top], [0, top * f], "k:", lw=0.6)
    ax.set_xlabel("measured s")
    ax.set_ylabel("predicted s")
    ax.legend(fontsize=8)
    err = p["prediction_error"].abs()
    return ["## Measured against predicted time (analytic network model)\n",
            sweep.figure(fig, "measured-vs-predicted", "measured against predicted"),
            f"{len(p)} shaped points over {p['profile'].nunique()} profiles: |error| median "
            f"{err.median():.1%}, max {err.max():.1%}; {int((err <= 0.10).sum())} of {len(p)} within 10%.\n"]


def _cost_against_quality(sweep: _Sweep) -> list[str]:
    if "quality.max_abs_error" not in sweep.ok.columns:
        return []
    fig, ax = pyplot().subplots(figsize=(5.5, 4))
    for impl, g in sweep.ok.groupby("impl"):
        ax.scatter(g["mb_per_step"], g["quality.max_abs_error"], label=impl)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("MB per step (3 ranks)")
    ax.set_ylabel("max |secure - plaintext|")
    ax.legend(fontsize=8)
    return ["## Cost against quality\n", sweep.figure(fig, "cost-vs-quality", "cost against quality")]


MAX_TIMELINES = 6  # figures of traced points (every trace file is listed)


def _timelines(sweep: _Sweep) -> list[str]:
    if "trace" not in sweep.ok.columns or sweep.ok["trace"].isna().all():
        return []
    traced = sweep.ok[sweep.ok["trace"].notna()].sort_values(["workload", "impl", "profile"])
    rows = [{"point": r["point_id"][:8], "workload": r["workload"], "activations": r["impl"], "network": r["profile"],
             "timeline (ui.perfetto.dev)": f"[{r['trace']}]({r['trace']})"} for _, r in traced.iterrows()]
    lines = ["## Message timelines\n",
             "Every message on every directed party link, from the relay: one track per link, one slice per "
             "message from send to delivery, the bytes in flight, and each secure run on a track of its own. "
             "Open a file in ui.perfetto.dev or chrome://tracing. The figures show each point's first secure "
             "step: many thin bars one after another are a latency-bound step, long bars back to back a "
             "bandwidth-bound one, gaps on every link compute.\n", markdown_table(rows)]
    for _, r in traced.head(MAX_TIMELINES).iterrows():
        messages, marks = netsim.from_chrome_trace(json.loads((sweep.figures.parent / r["trace"]).read_text()))
        if marks:
            _, start, end = marks[0]
            messages = [m for m in messages if start <= m.sent <= end]
        title = f"{r['workload']}, {r['impl']}, {r['profile']}: first secure step"
        lines.append(sweep.figure(timeline_figure(messages, title, marks[0][1] if marks else None),
                                  f"timeline-{r['point_id'][:8]}", title))
    return lines


# The report's sections, in order; each returns its Markdown (empty when the sweep has nothing for it).
SECTIONS: tuple[Callable[[_Sweep], list[str]], ...] = (
    _points, _repeats, _time_against_network, _bytes_per_implementation, _breakdown, _measured_against_predicted,
    _cost_against_quality, _timelines,
)
