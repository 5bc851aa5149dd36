"""`raympc bench models`: what each activation policy saves on whole models, ours and others'.

For every workload (a shipped name or a user's `package.module:factory`) and every policy (and
SPU exp mode), one unshaped secure step of the workload next to the same step in plaintext with the
model's own activations: bytes and send actions over the three ranks, the step's time, the
coverage (call sites the policy swapped out of all nonlinearity call sites) and the max abs error
against plaintext. A step's bytes do not depend on the weights or on which step it is, so one step
prices a whole run (steps x bytes per step).

The default set is the MNIST U-Net step and three models nobody here wrote, from `examples/`:
transformers' Flax GPT-2 (random weights), a Flax module whose activation is a dataclass field,
and CipherDM's own tiny MNIST U-Net; the last is also run with SPU's Pade exp to compare with the
run CipherDM released (`PADE_PAIR`, `CIPHERDM_RELEASED`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

import raympc.activations as acts
from raympc.runtime.config import SpuConfig
from raympc.runtime.session import Session
from raympc.util.figures import pyplot
from raympc.util.results import write_results
from workloads.protocol import WorkloadOptions
from workloads.registry import run_workload

WORKLOADS = ("ddim-mnist", "examples.gpt2_tiny:make", "examples.flax_denoiser:make", "examples.cipherdm_unet:make")
POLICIES = ("spu-direct", "puma", "cipherdm", "raympc")
# CipherDM's released comparison: SPU with Pade exp, and the same with only its SiLU swapped in
PADE_PAIR = ("spu-direct", "silu=cipherdm")
PADE_WORKLOADS = ("examples.cipherdm_unet:make",)
# Its released code on the tiny U-Net (spu 0.9.2b0, 50 DDIM steps, batch 1), per step: SPU's
# profile of one party, so bytes of one rank; and its baseline's bytes by SPU op (exp is Pade's,
# in softmax and SiLU's sigmoid; reduce is attention's row max)
CIPHERDM_RELEASED = {"spu-direct": 13.88e9 / 50, "silu=cipherdm": 10.99e9 / 50}
CIPHERDM_RELEASED_OPS = {"pphlo.exponential": 9.85e9 / 50, "pphlo.reciprocal": 1.88e9 / 50, "pphlo.reduce": 0.69e9 / 50}
RANKS = 3


@dataclass(frozen=True)
class Case:
    workload: str
    policy: str
    exp_mode: str = "taylor"

    @property
    def label(self) -> str:
        return self.policy if self.exp_mode == "taylor" else f"{self.policy} ({self.exp_mode} exp)"


def cases(workloads: tuple[str, ...], policies: tuple[str, ...], pade: bool) -> list[Case]:
    """Every workload under every policy; with `pade`, CipherDM's Pade pair too where it applies."""
    out = [Case(w, p) for w in workloads for p in policies]
    if pade:
        out += [Case(w, p, "pade") for w in workloads if w in PADE_WORKLOADS for p in PADE_PAIR]
    return out


def measure(session: Session, case: Case, batch: int) -> dict[str, Any]:
    """One secure step of `case` on `session`, against plaintext."""
    with acts.use(case.policy):
        done = run_workload(case.workload, session, WorkloadOptions(steps=1, batch=batch, breakdown=False))
    step = done.per_step[0]
    return {"workload": case.workload, "policy": case.policy, "exp_mode": case.exp_mode, "label": case.label,
            "model": done.info.get("model", case.workload), "parameters": done.info.get("parameters"),
            "send_bytes": step["send_bytes"], "send_actions": step["send_actions"],
            "max_rank_send_actions": step.get("max_rank_send_actions"), "time_s": step["time_s"],
            "compile_s": done.compile_s, "swapped": len(done.coverage.swapped), "missed": len(done.coverage.missed),
            "sites": len(done.coverage.sites), "max_abs_error": float(np.abs(done.secure - done.plain).max()),
            # SPU op -> bytes one rank sends (the ranks' mean), the ops carrying 1% or more
            "op_bytes_per_rank": {op: c["send_bytes"] for op, c in step.get("hlo_ops", {}).items()
                                  if c["send_bytes"] >= 0.01 * step["send_bytes"] / RANKS}}


def bench_models(workloads: tuple[str, ...] = WORKLOADS, policies: tuple[str, ...] = POLICIES, pade: bool = True,
                 batch: int = 1, out: Path | None = None, console: Console | None = None) -> dict[str, Any]:
    """Measure every case (see the module docstring); write bench-models.json and .png to `out`.

    Raises:
        WorkloadError: a workload cannot be built (checked before anything secure runs).
        PolicyError: a policy names no registered implementation.
    """
    console = console or Console()
    todo = cases(workloads, policies, pade)
    for policy in {c.policy for c in todo}:
        acts.resolve(policy)
    rows = []
    with Progress(console=console) as bar:
        task = bar.add_task("models x policies", total=len(todo))
        for exp_mode in sorted({c.exp_mode for c in todo}, reverse=True):  # taylor first
            with Session(spu_config=SpuConfig(exp_mode=exp_mode)) as session:
                for case in (c for c in todo if c.exp_mode == exp_mode):
                    bar.update(task, description=f"{case.workload}, {case.label}")
                    rows.append(measure(session, case, batch))
                    bar.update(task, advance=1)
    result = {"benchmark": "models", "batch": batch, "rows": rows, "cipherdm_released": released_comparison(rows)}
    console.print(rich_table(summary(rows), "one unshaped secure step per model and policy (all three ranks)"))
    if result["cipherdm_released"]:
        console.print(rich_table(released_summary(result["cipherdm_released"]),
                                 "CipherDM's tiny U-Net: its released run (spu 0.9.2b0) and here"))
    write_results(out, "bench-models", result, console, plot=lambda path: plot(rows, path))
    return result


def released_comparison(rows: list[dict]) -> dict[str, Any] | None:
    """CipherDM's U-Net under its Pade pair here and in its released run, per step and rank."""
    pair = {r["policy"]: r for r in rows
            if r["workload"] in PADE_WORKLOADS and r["exp_mode"] == "pade" and r["policy"] in PADE_PAIR}
    if len(pair) < len(PADE_PAIR):
        return None
    per_rank = {p: pair[p]["send_bytes"] / RANKS for p in PADE_PAIR}
    ops = pair["spu-direct"].get("op_bytes_per_rank", {})
    return {"measured_per_rank": per_rank, "measured_ratio": per_rank["spu-direct"] / per_rank["silu=cipherdm"],
            "released": CIPHERDM_RELEASED,
            "released_ratio": CIPHERDM_RELEASED["spu-direct"] / CIPHERDM_RELEASED["silu=cipherdm"],
            "baseline_ops": {op: {"released": b, "measured": ops.get(op)} for op, b in CIPHERDM_RELEASED_OPS.items()}}


def summary(rows: list[dict]) -> list[dict[str, str]]:
    """The rows as the console and the results page show them."""
    out = []
    for r in rows:
        out.append({"model": short(r["workload"]), "policy": r["label"], "MB / step": f"{r['send_bytes'] / 1e6:,.2f}",
                    "send actions": f"{r['send_actions']:,}", "time s": f"{r['time_s']:.2f}",
                    "swapped sites": f"{r['swapped']}/{r['sites']}" + (f" ({r['missed']} missed)" if r["missed"] else ""),
                    "max abs error": f"{r['max_abs_error']:.2g}",
                    "bytes vs spu-direct": f"{baseline(rows, r)['send_bytes'] / r['send_bytes']:.2f}x"})
    return out


def released_summary(c: dict[str, Any]) -> list[dict[str, str]]:
    """CipherDM's released bytes per step and rank beside ours, in all and by op, as shown."""
    def row(what: str, released: float, here: float | None) -> dict[str, str]:
        return {"per DDIM step, one rank (Pade exp)": what, "released MB": f"{released / 1e6:,.1f}",
                "here MB": "" if here is None else f"{here / 1e6:,.1f}",
                "here / released": "" if here is None else f"{here / released:.2f}"}

    out = [row(p, c["released"][p], c["measured_per_rank"][p]) for p in PADE_PAIR]
    out += [row(f"spu-direct: {op}", v["released"], v["measured"]) for op, v in c["baseline_ops"].items()]
    return out + [{"per DDIM step, one rank (Pade exp)": "spu-direct / silu=cipherdm",
                   "released MB": f"{c['released_ratio']:.2f}x", "here MB": f"{c['measured_ratio']:.2f}x",
                   "here / released": f"{c['measured_ratio'] / c['released_ratio']:.2f}"}]


def rich_table(rows: list[dict[str, str]], title: str) -> Table:
    t = Table(title=title)
    for i, col in enumerate(rows[0]):
        t.add_column(col, justify="left" if i < 2 else "right")
    for r in rows:
        t.add_row(*r.values())
    return t


def short(workload: str) -> str:
    """"examples.gpt2_tiny:make" -> "gpt2_tiny"."""
    return workload.split(":")[0].rsplit(".", 1)[-1]


def baseline(rows: list[dict], row: dict) -> dict:
    """The row's SPU baseline: spu-direct on the same workload with the same exp."""
    return next((r for r in rows if r["workload"] == row["workload"] and r["exp_mode"] == row["exp_mode"]
                 and r["policy"] == "spu-direct"), row)


def plot(rows: list[dict], path: Path) -> None:
    """Bytes per step relative to SPU's stock step, per model and policy (Taylor exp rows)."""
    plt = pyplot()
    shown = [r for r in rows if r["exp_mode"] == "taylor"]
    models = list(dict.fromkeys(r["workload"] for r in shown))
    policies = list(dict.fromkeys(r["policy"] for r in shown))
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(models), 3.6))
    width = 0.8 / max(len(policies), 1)
    for j, policy in enumerate(policies):
        xs, ys = [], []
        for i, m in enumerate(models):
            r = next((r for r in shown if r["workload"] == m and r["policy"] == policy), None)
            if r is not None:
                xs.append(i + (j - (len(policies) - 1) / 2) * width)
                ys.append(r["send_bytes"] / baseline(shown, r)["send_bytes"])
        ax.bar(xs, ys, width, label=policy)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(models)), [short(m) for m in models])
    ax.set_ylabel("bytes per step / SPU's stock step")
    ax.set_title("what each policy sends, per model (one unshaped step)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
