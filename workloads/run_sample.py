"""`raympc sample`: secure sampling next to plaintext sampling from the same noise, with metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from . import breakdown as layer_kinds
from . import quality, sampling, weights
from .diffusion import Schedule
from .unet import UNetConfig

WORKLOADS = ("ddpm-mnist", "ddim-mnist")


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
               breakdown: bool = True, console: Console | None = None) -> dict:
    import raympc.activations as acts
    from raympc import Session

    console = console or Console()
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}; choose one of {WORKLOADS}")
    params, cfg, schedule, meta = load_model()
    plan = sampling.plan_for(workload, schedule, steps, eta)
    labels = np.arange(batch) % cfg.classes
    inputs = sampling.SamplingInputs.draw(labels, plan, seed)
    with console.status("plaintext sampling from the same noise"):
        plain = sampling.sample_plain(params, cfg, plan, inputs)
    out.mkdir(parents=True, exist_ok=True)
    with Session(network=network) as session, acts.use(activations) as mapping, Progress(console=console) as bar:
        task = bar.add_task(f"secure {workload}, {activations} activations", total=len(plan))
        secure = sampling.sample_secure(session, params, cfg, plan, inputs,
                                        on_step=lambda i, s: bar.update(task, advance=1))
        kinds = None
        if breakdown:
            task = bar.add_task("cost by layer kind (each kind replayed alone)", total=len(layer_kinds.KINDS))
            calls = layer_kinds.record_layers(sampling.step_function(cfg), *sampling.step_arguments(params, cfg, plan[0], inputs),
                                              public=sampling.PUBLIC_STEP_ARGS)
            measured = layer_kinds.measure_kinds(session, calls, seed=seed, on_kind=lambda k: bar.advance(task))
            kinds = layer_kinds.with_other(measured, secure.per_step[0])
        described = session.describe()
    result = {
        "workload": workload, "steps": steps, "batch": batch, "activations": activations, "mapping": mapping,
        "network": described["network"], "seed": seed, "model": meta.get("parameters"),
        "compile_s": secure.compile_s, "per_step": secure.per_step, "total": secure.total,
        "breakdown_step0": kinds,
        "quality": {
            "psnr_db": [quality.psnr(secure.images[i], plain[i]) for i in range(batch)],
            "max_abs_error": float(np.abs(secure.images - plain).max()),
            "accuracy_secure": quality.accuracy(secure.images, labels),
            "accuracy_plain": quality.accuracy(plain, labels),
        },
    }
    save_grid({"plaintext": plain, f"secure ({activations})": secure.images}, out / f"{workload}-{activations}.png")
    (out / f"{workload}-{activations}.json").write_text(json.dumps(result, indent=1, default=str))
    table = Table(title=f"{workload}: {steps} steps, batch {batch}, {activations}, network {described['network'].get('profile')}")
    for c in ("time s", "MB sent (3 ranks)", "send actions", "PSNR dB (min)", "max err", "acc secure", "acc plain"):
        table.add_column(c, justify="right")
    q, t = result["quality"], result["total"]
    table.add_row(f"{t['time_s']:.1f}", f"{t['send_bytes'] / 1e6:.1f}", f"{t['send_actions']:,}",
                  f"{min(q['psnr_db']):.1f}", f"{q['max_abs_error']:.3f}", f"{q['accuracy_secure']:.2f}",
                  f"{q['accuracy_plain']:.2f}")
    console.print(table)
    if kinds:
        console.print(kinds_table(kinds, "cost of step 1 by layer kind"))
    console.print(f"wrote {out}/{workload}-{activations}.png and .json")
    return result
