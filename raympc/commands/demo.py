"""`raympc demo`: the main job. Secure DDIM sampling of MNIST digits, spu-direct against raympc.

Both implementations run on the same three parties, their links shaped to one profile, from the
same noise, next to the plaintext model: a comparison table (time, bytes, PSNR, classifier
accuracy), the image grid, a Markdown report and `demo.json`. `--kernels` runs a tour of small
secure kernels (matmul, softmax, conv, SiLU) instead and writes `kernels.json`. `--protocol`,
`--field` and `--tls` apply to both.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from raympc import activations as acts
from raympc.commands.common import Subparsers, make_console, out_dir
from raympc.runtime.session import Session
from raympc.runtime.values import Secret
from raympc.util.figures import save_grid
from raympc.util.files import write_text_atomically
from raympc.util.results import write_results
from raympc.util.tables import markdown_table
from workloads import quality, sampling
from workloads.kernels import KERNELS
from workloads.weights import load_model

IMPLEMENTATIONS = ("spu-direct", "raympc")


def register(sub: Subparsers) -> None:
    p = sub.add_parser("demo", help="the main job: secure DDIM sampling of MNIST digits, spu-direct vs raympc "
                                    "activations (--kernels: a tour of small secure kernels)")
    p.add_argument("--steps", type=int, default=6, help="DDIM steps (default 6)")
    p.add_argument("--network", default="lan", help="network profile for the party links (default lan)")
    p.add_argument("--kernels", action="store_true",
                   help="a tour of small secure kernels (matmul, softmax, conv, SiLU) instead of sampling")
    p.add_argument("--protocol", default="aby3", help="SPU protocol (aby3, semi2k, securenn, ...)")
    p.add_argument("--field", default="fm64", help="SPU ring (fm64, fm128, fm32)")
    p.add_argument("--tls", action="store_true", help="TLS on the party links (per-session certificates)")
    out_dir(p, "runs/demo", "samples, demo.json and report.md (kernels.json with --kernels)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    console = make_console()
    if args.kernels:
        run_kernels(out=args.out, protocol=args.protocol, field=args.field, tls=args.tls,
                    network=args.network, console=console)
    else:
        run_sampling(out=args.out, steps=args.steps, network=args.network, protocol=args.protocol,
                     field=args.field, tls=args.tls, console=console)


def run_sampling(out: Path = Path("runs/demo"), steps: int = 6, digits: tuple[int, ...] = (3, 7),
                 network: str = "lan", seed: int = 0, protocol: str = "aby3", field: str = "fm64",
                 tls: bool = False, console: Console | None = None) -> dict:
    """Sample `digits` securely with each of `IMPLEMENTATIONS` and in plaintext from the same noise.

    Returns:
        The summary written to `out/demo.json`: per implementation time, bytes, send actions,
        compile time, min PSNR against plaintext and classifier accuracy, and the two ratios.
    """
    console = console or Console()
    params, cfg, schedule, meta = load_model()
    plan = sampling.plan_for("ddim-mnist", schedule, steps)
    labels = np.asarray(digits)
    inputs = sampling.SamplingInputs.draw(labels, plan, seed)
    with console.status("plaintext DDIM from the same noise"):
        plain = sampling.sample_plain(params, cfg, plan, inputs)
    rows, images = {}, {"plaintext": plain}
    with console.status(f"starting Ray and three SPU parties, links shaped to {network!r}"):
        session = Session(network=network, protocol=protocol, field=field, tls=tls).open()
    with session, Progress(console=console) as bar:
        for impl in IMPLEMENTATIONS:
            task = bar.add_task(f"secure DDIM, {impl} activations", total=len(plan))
            with acts.use(impl):
                secure = sampling.sample_secure(session, params, cfg, plan, inputs,
                                                on_step=lambda i, s, t=task: bar.update(t, advance=1))
            images[f"secure, {impl}"] = secure.images
            t = secure.total
            rows[impl] = {"time_s": t["time_s"], "send_bytes": t["send_bytes"], "send_actions": t["send_actions"],
                          "compile_s": secure.compile_s,
                          "psnr_db_min": min(quality.closeness(secure.images, plain)["psnr_db"]),
                          "accuracy": quality.accuracy(secure.images, labels)}
        described = session.describe()
    d, r = rows["spu-direct"], rows["raympc"]
    summary = {"steps": steps, "digits": list(digits), "protocol": protocol, "field": field, "tls": tls,
               "network": described["network"], "rows": rows,
               "plaintext_accuracy": quality.accuracy(plain, labels),
               "ratios": {"bytes": d["send_bytes"] / r["send_bytes"], "time": d["time_s"] / r["time_s"]},
               "model": meta}
    console.print(_table(summary, meta))
    console.print(f"raympc activations: {summary['ratios']['bytes']:.2f}x fewer bytes, "
                  f"{summary['ratios']['time']:.2f}x less time")
    out.mkdir(parents=True, exist_ok=True)
    save_grid(images, out / "samples.png")
    write_results(out, "demo", summary, console)
    write_text_atomically(out / "report.md", report(summary))
    console.print(f"wrote {out / 'samples.png'} and {out / 'report.md'}")
    return summary


def rows_for_table(summary: dict) -> list[dict[str, str]]:
    """The demo's comparison as table rows (also the README's headline table)."""
    rows = [{"activations": impl, "time s": f"{r['time_s']:.1f}", "MB sent (3 ranks)": f"{r['send_bytes'] / 1e6:,.1f}",
             "send actions": f"{r['send_actions']:,}", "PSNR vs plaintext (min)": f"{r['psnr_db_min']:.1f} dB",
             "classifier accuracy": f"{r['accuracy']:.2f}"} for impl, r in summary["rows"].items()]
    rows.append({"activations": "plaintext", "classifier accuracy": f"{summary['plaintext_accuracy']:.2f}"})
    return rows


def _table(summary: dict, meta: dict) -> Table:
    table = Table(title=f"secure DDIM on MNIST: {summary['steps']} steps, digits {summary['digits']}, network "
                        f"{summary['network'].get('profile')!r} ({meta.get('parameters', '?'):,} parameters)")
    rows = rows_for_table(summary)
    for col in rows[0]:
        table.add_column(col, justify="left" if col == "activations" else "right")
    for row in rows:
        table.add_row(*(row.get(col, "") for col in rows[0]))
    return table


def report(summary: dict) -> str:
    """The demo as Markdown: the sample grid, the table and the ratios."""
    return "\n".join([
        f"# Secure DDIM sampling on MNIST ({summary['steps']} steps, network `{summary['network'].get('profile')}`)",
        "", "![samples](samples.png)", "", markdown_table(rows_for_table(summary)),
        f"raympc activations move {summary['ratios']['bytes']:.2f}x fewer bytes and take "
        f"{summary['ratios']['time']:.2f}x less time than spu-direct on the same links.", ""])


def run_kernels(out: Path | None = None, protocol: str = "aby3", field: str = "fm64", seed: int = 0,
                tls: bool = False, network: str | None = None, console: Console | None = None) -> dict:
    """Each of `workloads.kernels.KERNELS` once, securely, with its max abs error against plaintext.

    Returns:
        The summary written to `out/kernels.json`: errors and metrics per kernel, and the session.
    """
    console = console or Console()
    rng = np.random.default_rng(seed)
    summary: dict = {"protocol": protocol, "field": field, "tls": tls, "kernels": {}}
    errors = Table(title=f"secure vs plaintext ({protocol.upper()}, {field.upper()})")
    for col in ("kernel", "output", "max abs error", "sent bytes (3 ranks)", "send actions", "wall s"):
        errors.add_column(col, justify="right" if col not in ("kernel", "output") else "left")
    with console.status("starting Ray and three SPU parties..."):
        session = Session(protocol=protocol, field=field, tls=tls, network=network).open()
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
                first = i == 0
                errors.add_row(kernel.name, f"out{i} {list(np.shape(got[i]))}", f"{err:.2e}",
                               f"{m.send_bytes:,}" if first else "", f"{m.send_actions:,}" if first else "",
                               f"{m.wall_time_s:.3f}" if first else "")
            summary["kernels"][kernel.name] = {"max_abs_error": errs, "metrics": m.to_dict()}
            console.print(m.table(level="hal", top=8))
        console.print(errors)
        summary["session"] = session.describe()
    write_results(out, "kernels", summary, console)
    return summary
