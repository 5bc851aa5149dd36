"""`raympc sample`: secure sampling next to plaintext sampling from the same noise, with metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from . import weights
from .diffusion import Schedule
from .registry import WORKLOADS, WorkloadOptions, run_workload
from .unet import UNetConfig


def load_model(name: str = "ddpm-mnist") -> tuple[dict, UNetConfig, Schedule, dict]:
    params, meta = weights.load(name)
    recipe = meta.get("recipe", {})
    m = recipe.get("model", {})
    cfg = UNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in m.items() if k != "extra"})
    s = recipe.get("schedule", {})
    return params, cfg, Schedule(**s), meta


def save_grid(rows: dict[str, np.ndarray], path: Path) -> None:
    from raympc.bench.output import pyplot

    plt = pyplot()
    n = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n + 1.2, 1.2 * len(rows)), squeeze=False)
    for r, (name, imgs) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(imgs):
                ax.imshow(np.clip(imgs[c, :, :, 0], -1, 1), cmap="gray", vmin=-1, vmax=1)
        axes[r][0].set_title(name, fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def kinds_table(kinds: dict[str, dict], title: str) -> Table:
    table = Table(title=title)
    for c in ("kind", "calls", "MB sent", "share", "send actions", "time s"):
        table.add_column(c, justify="right" if c != "kind" else "left")
    for kind, v in kinds.items():
        table.add_row(kind, str(v.get("calls", "")), f"{v['send_bytes'] / 1e6:.1f}", f"{v['bytes_share']:.0%}",
                      f"{v['send_actions']:,}", f"{v['time_s']:.2f}")
    return table


def run_sample(workload: str = "ddim-mnist", steps: int = 10, activations: str = "raympc", network: str | None = None,
               batch: int = 4, out: Path = Path("runs/sample"), seed: int = 0, eta: float = 0.0,
               breakdown: bool = True, scale: str = "tiny", console: Console | None = None) -> dict:
    import raympc.activations as acts
    from raympc import Session

    console = console or Console()
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}; choose one of {sorted(WORKLOADS)}")
    opts = WorkloadOptions(steps=steps, batch=batch, seed=seed, eta=eta, scale=scale, breakdown=breakdown)
    out.mkdir(parents=True, exist_ok=True)
    with Session(network=network) as session, acts.use(activations) as mapping, Progress(console=console) as bar:
        task = bar.add_task(f"secure {workload}, {activations} activations, {steps} steps", total=steps)
        done = run_workload(workload, session, opts, on_step=lambda i, s: bar.update(task, advance=1))
        described = session.describe()
    result = {
        "workload": workload, "steps": steps, "batch": batch, "activations": activations, "mapping": mapping,
        "network": described["network"], "seed": seed, "model": done.info,
        "compile_s": done.compile_s, "per_step": done.per_step, "total": done.total,
        "breakdown_step0": done.breakdown, "quality": done.quality,
    }
    stem = f"{workload}-{activations}"
    if done.images:
        save_grid({"plaintext": done.plain, f"secure ({activations})": done.secure}, out / f"{stem}.png")
    else:  # latents: show channel 0 of each, scaled to their range
        peak = float(np.abs(done.plain).max()) or 1.0
        first = lambda v: np.moveaxis(v, 1, -1)[..., :1] / peak  # noqa: E731
        save_grid({"plaintext latent": first(done.plain), f"secure ({activations})": first(done.secure)},
                  out / f"{stem}.png")
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1, default=str))
    table = Table(title=f"{workload}: {steps} steps, batch {batch}, {activations}, network {described['network'].get('profile')}")
    q, t = result["quality"], result["total"]
    cols = {"time s": f"{t['time_s']:.1f}", "MB sent (3 ranks)": f"{t['send_bytes'] / 1e6:.1f}",
            "send actions": f"{t['send_actions']:,}", "PSNR dB (min)": f"{min(q['psnr_db']):.1f}",
            "max err": f"{q['max_abs_error']:.3f}"}
    if "accuracy_secure" in q:
        cols.update({"acc secure": f"{q['accuracy_secure']:.2f}", "acc plain": f"{q['accuracy_plain']:.2f}"})
    for c in cols:
        table.add_column(c, justify="right")
    table.add_row(*cols.values())
    console.print(table)
    if done.breakdown:
        console.print(kinds_table(done.breakdown, "cost of step 1 by layer kind"))
    console.print(f"wrote {out}/{stem}.png and .json")
    return result
