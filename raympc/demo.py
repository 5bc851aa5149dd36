"""`raympc demo`: secure kernels end to end on three local parties, checked against plaintext."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
from rich.console import Console
from rich.table import Table

from workloads.kernels import KERNELS

from .session import Session
from .values import Secret


def run_demo(out: Path | None = None, protocol: str = "aby3", field: str = "fm64", seed: int = 0,
             tls: bool = False, console: Console | None = None) -> dict:
    console = console or Console()
    rng = np.random.default_rng(seed)
    summary: dict = {"protocol": protocol, "field": field, "tls": tls, "kernels": {}}
    errors = Table(title=f"secure vs plaintext ({protocol.upper()}, {field.upper()})")
    for col in ("kernel", "output", "max abs error", "sent bytes (3 ranks)", "send actions", "wall s"):
        errors.add_column(col, justify="right" if col not in ("kernel", "output") else "left")
    with console.status("starting Ray and three SPU parties..."):
        session = Session(protocol=protocol, field=field, tls=tls).open()
    with session:
        for kernel in KERNELS.values():
            inputs = kernel.make_inputs(rng, 1)
            tagged = [Secret(a, owner=o) for a, o in zip(inputs, kernel.owners)]
            with console.status(f"secure {kernel.name}..."):
                result = session.run(kernel.fn, *tagged)
            expected = jax.tree_util.tree_leaves(kernel.fn(*inputs))
            got = jax.tree_util.tree_leaves(result.outputs)
            errs = [float(np.max(np.abs(np.asarray(g) - np.asarray(e)))) for g, e in zip(got, expected)]
            m = result.metrics
            for i, err in enumerate(errs):
                errors.add_row(kernel.name, f"out{i} {list(np.shape(got[i]))}", f"{err:.2e}",
                               f"{m.send_bytes:,}" if i == 0 else "", f"{m.send_actions:,}" if i == 0 else "",
                               f"{m.wall_time_s:.3f}" if i == 0 else "")
            summary["kernels"][kernel.name] = {"max_abs_error": errs, "metrics": m.to_dict()}
            console.print(m.table(level="hal", top=8))
        console.print(errors)
        summary["session"] = session.describe()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "demo.json").write_text(json.dumps(summary, indent=2))
        console.print(f"metrics written to {out / 'demo.json'}")
    return summary
