"""`raympc report DIR`: a Markdown report of a sweep's results, with matplotlib figures.

Sections appear when the sweep holds the data for them: a summary table; latency against
bandwidth and against RTT per activation implementation; bytes per implementation; cost by layer
kind (the paper's latency breakdown, from the per-kind replays); measured against predicted time;
cost against quality.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

import netsim
from raympc.errors import ConfigError
from raympc.sweeps.spec import PointParams
from raympc.sweeps.store import ResultStore
from raympc.util.figures import pyplot
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
        import pandas as pd

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
    import pandas as pd


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


def build_report(directory: Path, console: Console | None = None) -> Path:
    console = console or Console()
    store = ResultStore(directory)
    df = store.frame()
    if df.empty:
        raise ConfigError(f"no sweep results in {directory} (expected {store.path})")
    ok = _profile_columns(df[df["status"] == "ok"].copy())
    failed = df[df["status"] != "ok"]
    ok["step_s"] = ok["time_s"] / ok["steps"]
    ok["impl"] = [_label(r) for _, r in ok.iterrows()]
    ok["mb_per_step"] = ok["send_bytes"] / ok["steps"] / 1e6
    figs = Path(directory) / "figures"
    figs.mkdir(exist_ok=True)
    plt = pyplot()
    md: list[str] = [f"# Sweep report: {', '.join(sorted(df['sweep'].dropna().unique())) or directory}\n",
                     f"{len(df)} points: {len(ok)} finished, {len(failed)} failed. Source: `{store.path}`. "
                     "Bytes and send actions are SPU's counts over all three ranks; times are wall-clock "
                     "seconds of the secure steps (compilation excluded).\n"]

    # -- summary --------------------------------------------------------------------------------
    rows = []
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
    md += ["## Points\n", markdown_table(rows)]
    if len(failed):
        md += ["## Failed points\n", markdown_table([{"point": r["point_id"][:8], "workload": r["workload"],
                                                 "activations": r["activations"], "network": r["profile"],
                                                 "error": str(r["error"])[:160]} for _, r in failed.iterrows()])]

    def save(fig, name: str, caption: str) -> None:
        fig.tight_layout()
        fig.savefig(figs / f"{name}.png", dpi=110)
        plt.close(fig)
        md.append(f"![{caption}](figures/{name}.png)\n")

    # -- repeats -----------------------------------------------------------------------------------
    groups = repeat_groups(ok)
    if groups:
        md += ["## Repeats\n",
               "Points that differ only in their seed, as one configuration: bytes and send actions should "
               "agree (SPU's counts are deterministic), times show the machine's run-to-run noise. Ratios are "
               "the baseline's step time (SPU as it ships, same configuration) over this one's.\n"]
        compared = any(len(grp.ratios()) for grp in groups)
        fig, axes = plt.subplots(1, 2 if compared else 1, figsize=(9.5 if compared else 5, 3.6), squeeze=False)
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
        save(fig, "repeats", "repeats: step time and ratio against SPU per run")
        md.append(markdown_table(repeat_rows(ok)))

    # -- latency vs bandwidth and vs RTT -----------------------------------------------------------
    shaped = ok[ok["profile"] != "unshaped"]
    for x, other, xlabel, title in (("rate_mbit", "rtt_ms", "rate (Mbit/s)", "bandwidth"),
                                    ("rtt_ms", "rate_mbit", "RTT (ms)", "rtt")):
        groups = [g for g in shaped.groupby(["workload", other]) if g[1][x].nunique() >= 2]
        if not groups:
            continue
        md.append(f"## Step time against {'bandwidth' if x == 'rate_mbit' else 'RTT'}\n")
        fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 3.6), squeeze=False)
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
        save(fig, f"latency-vs-{title}", f"step time against {xlabel}")

    # -- bytes per implementation ------------------------------------------------------------------
    per_impl = ok.groupby(["workload", "impl"])["mb_per_step"].median().reset_index()
    if len(per_impl):
        md.append("## Bytes per step by activation implementation\n")
        workloads = sorted(per_impl["workload"].unique())
        fig, axes = plt.subplots(1, len(workloads), figsize=(4.2 * len(workloads), 3.4), squeeze=False)
        for ax, w in zip(axes[0], workloads):
            g = per_impl[per_impl["workload"] == w].sort_values("mb_per_step")
            ax.barh(g["impl"], g["mb_per_step"])
            ax.set_xlabel("MB per step (3 ranks)")
            ax.set_title(w, fontsize=9)
        save(fig, "bytes-per-implementation", "bytes per step per activation implementation")
        md.append(markdown_table([{"workload": r["workload"], "activations": r["impl"],
                              "MB/step": f"{r['mb_per_step']:.1f}"} for _, r in per_impl.iterrows()]))

    # -- breakdown by layer kind -------------------------------------------------------------------
    kinds = ["conv/matmul", "groupnorm", "activation", "attention", "other"]
    kcols = [f"breakdown.{k}.send_bytes" for k in kinds]
    if all(c in ok.columns for c in kcols):
        b = ok.dropna(subset=kcols)  # rows with a breakdown
        if len(b):
            md.append("## Cost by layer kind (first step, each kind replayed alone under MPC)\n")
            labels = [f"{r['workload']}\n{r['activations']}\n{r['profile']}" for _, r in b.iterrows()]
            fig, axes = plt.subplots(1, 3, figsize=(max(10, 1.6 * len(b) * 3), 4))
            for ax, metric, unit, scale in ((axes[0], "send_bytes", "MB", 1e6), (axes[1], "send_actions", "send actions", 1),
                                            (axes[2], "time_s", "s", 1)):
                bottom = [0.0] * len(b)
                for k in kinds:
                    vals = [max(float(v), 0.0) / scale for v in b[f"breakdown.{k}.{metric}"]]
                    ax.bar(range(len(b)), vals, bottom=bottom, label=k)
                    bottom = [x + y for x, y in zip(bottom, vals)]
                ax.set_xticks(range(len(b)), labels, fontsize=6)
                ax.set_ylabel(unit)
            axes[0].legend(fontsize=7)
            save(fig, "breakdown-by-kind", "cost by layer kind")
            rows = []
            for _, r in b.iterrows():
                tot = sum(max(r[f"breakdown.{k}.time_s"], 0) for k in kinds) or 1.0
                totb = sum(max(r[f"breakdown.{k}.send_bytes"], 0) for k in kinds) or 1.0
                rows.append({"workload": r["workload"], "activations": r["impl"], "network": r["profile"],
                             **{f"{k} bytes/time": f"{max(r[f'breakdown.{k}.send_bytes'], 0) / totb:.0%} / "
                                                   f"{max(r[f'breakdown.{k}.time_s'], 0) / tot:.0%}" for k in kinds}})
            md.append(markdown_table(rows))

    # -- measured vs predicted ---------------------------------------------------------------------
    if "predicted_time_s" in ok.columns and ok["predicted_time_s"].notna().any():
        p = ok.dropna(subset=["predicted_time_s"])
        md.append("## Measured against predicted time (analytic network model)\n")
        fig, ax = plt.subplots(figsize=(4.6, 4.4))
        for impl, g in p.groupby("impl"):
            ax.scatter(g["time_s"], g["predicted_time_s"], label=impl)
        top = max(p["time_s"].max(), p["predicted_time_s"].max()) * 1.05
        ax.plot([0, top], [0, top], "k--", lw=0.8)
        for f in (0.9, 1.1):
            ax.plot([0, top], [0, top * f], "k:", lw=0.6)
        ax.set_xlabel("measured s")
        ax.set_ylabel("predicted s")
        ax.legend(fontsize=8)
        save(fig, "measured-vs-predicted", "measured against predicted")
        err = p["prediction_error"].abs()
        md.append(f"{len(p)} shaped points over {p['profile'].nunique()} profiles: |error| median "
                  f"{err.median():.1%}, max {err.max():.1%}; {int((err <= 0.10).sum())} of {len(p)} within 10%.\n")

    # -- cost vs quality ---------------------------------------------------------------------------
    if "quality.max_abs_error" in ok.columns:
        md.append("## Cost against quality\n")
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for impl, g in ok.groupby("impl"):
            ax.scatter(g["mb_per_step"], g["quality.max_abs_error"], label=impl)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("MB per step (3 ranks)")
        ax.set_ylabel("max |secure - plaintext|")
        ax.legend(fontsize=8)
        save(fig, "cost-vs-quality", "cost against quality")

    path = Path(directory) / "report.md"
    path.write_text("\n".join(md))
    console.print(f"wrote {path} and {len(list(figs.glob('*.png')))} figures in {figs}")
    return path
