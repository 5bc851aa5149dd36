"""`raympc fit`: fit a sign-split activation, register it under a name, measure its cost and error."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from raympc.activations.fit import fit_sign_split
from raympc.activations.recorded import load_inputs
from raympc.activations.registry import get
from raympc.activations.store import register_fit, save_fit
from raympc.bench.activations import measure_implementation
from raympc.commands.common import Subparsers, make_console
from raympc.errors import ConfigError
from raympc.runtime.session import Session
from raympc.util.results import write_results


def register(sub: Subparsers) -> None:
    p = sub.add_parser("fit", help="fit a piecewise-polynomial activation, register it, measure it under SPU")
    p.add_argument("activation", choices=["silu", "mish", "gelu_tanh", "gelu_erf"])
    p.add_argument("--degree", type=int, required=True, help="polynomial degree per piece")
    p.add_argument("--pieces", type=int, default=1, help="pieces per side of zero (each costs a comparison)")
    p.add_argument("--range", type=float, nargs=2, metavar=("A", "B"),
                   help="clamp points below and above zero (default: scanned for the smallest error)")
    p.add_argument("--inputs", type=Path, default=None, help=".npy/.npz of recorded inputs to weight the fit by")
    p.add_argument("--name", default=None, help="implementation name (default fit-pN-dD)")
    p.add_argument("--fraction-bits", type=int, default=18,
                   help="round coefficients to this fixed point, refitting the lower ones around each "
                        "(default 18, SPU's for FM64; 0 keeps float coefficients)")
    p.add_argument("--tail", choices=["clamp", "relu"], default="clamp",
                   help="beyond the clamp points: the polynomial's last value (clamp), or relu plus a "
                        "constant offset (relu: the polynomial is masked instead of clamped; one piece)")
    p.add_argument("--elements", type=int, default=16384, help="grid size for the secure measurement")
    p.add_argument("--no-measure", action="store_true", help="fit and register only; skip the SPU run")
    p.add_argument("--out", type=Path, default=None,
                   help="also write the result as JSON into this directory (fit-ACTIVATION-NAME.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    run_fit(args.activation, args.degree, args.pieces, tuple(args.range) if args.range else None, args.inputs,
            args.name, measure=not args.no_measure, elements=args.elements, out=args.out, console=make_console(),
            fraction_bits=args.fraction_bits or None, tail=args.tail)


def run_fit(activation: str, degree: int, pieces: int = 1, fit_range: tuple[float, float] | None = None,
            inputs: Path | None = None, name: str | None = None, measure: bool = True,
            elements: int = 16384, out: Path | None = None, console: Console | None = None,
            fraction_bits: int | None = None, tail: str = "clamp") -> dict:
    console = console or Console()
    if fit_range is not None:
        lo, hi = fit_range
        if not lo < 0 < hi:
            raise ConfigError(f"--range A B needs A < 0 < B (the clamp points below and above zero), got {lo} {hi}")
        limit_neg, limit_pos = -lo, hi
    else:
        limit_neg = limit_pos = None
    samples = load_inputs(inputs) if inputs is not None else None
    name = name or f"fit-p{pieces}-d{degree}" + ("-weighted" if samples is not None else "")
    with console.status(f"fitting {activation}: degree {degree}, {pieces} piece(s)"
                        + ("" if fit_range else ", scanning clamp points")):
        try:
            fit = fit_sign_split(activation, degree, pieces, limit_neg, limit_pos, samples,
                                 weighted_by=str(inputs) if inputs else None, fraction_bits=fraction_bits,
                                 tail=tail)
        except ValueError as e:
            raise ConfigError(str(e)) from e
    path = save_fit(name, fit)
    register_fit(name, fit)
    result = {"activation": activation, "name": name, "fits_file": str(path), "fit": fit.to_dict(),
              "plaintext_max_abs_error": fit.fit_max_error}
    console.print(f"registered [bold]{activation}/{name}[/] in {path}: clamp at -{fit.limit_neg:g} / "
                  f"+{fit.limit_pos:g} ({fit.tail} beyond), float64 max abs error {fit.fit_max_error:.2e} on [-16, 16]")
    if measure:
        result["secure"] = _measure(activation, name, samples, elements, console)
    write_results(out, f"fit-{activation}-{name}", result, console)
    return result


def _measure(activation: str, name: str, samples: np.ndarray | None, elements: int, console: Console) -> list[dict]:
    rng = np.random.default_rng(0)
    recorded = {} if samples is None else \
        {activation: rng.choice(samples, size=min(elements, samples.size), replace=False).astype(np.float32)}
    with console.status("measuring under SPU (ABY3, FM64) on three Ray parties"), Session() as session:
        rows = [measure_implementation(session, get(activation, impl), elements, recorded)
                for impl in (name, "raympc", "spu-direct")]
    table = Table(title=f"{activation}: secure cost and error ({elements:,} elements on [-16, 16])")
    cols = ["impl", "rank-0 B/elem", "B/elem/rank", "max err", "mean err"] + (["inputs max", "inputs mean"] if recorded else [])
    for c in cols:
        table.add_column(c, justify="left" if c == "impl" else "right")
    for r in rows:
        cells = [r["impl"], f"{r['rank0_bytes_per_elem']:.0f}", f"{r['bytes_per_elem_per_rank']:.0f}",
                 f"{r['max_abs_error']:.2e}", f"{r['mean_abs_error']:.2e}"]
        if recorded:
            cells += [f"{r['inputs_max_abs_error']:.2e}", f"{r['inputs_mean_abs_error']:.2e}"]
        table.add_row(*cells)
    console.print(table)
    return rows
