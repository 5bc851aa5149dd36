"""`raympc fit`: fit a sign-split activation, register it under a name, measure its cost and error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from ..errors import ConfigError
from .fit import fit_sign_split
from .registry import get
from .store import register_fit, save_fit


def load_inputs(path: Path) -> np.ndarray:
    """Recorded activation inputs: a .npy array or the first array of a .npz."""
    if not path.exists():
        raise ConfigError(f"inputs file {path} does not exist")
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            if not data.files:
                raise ConfigError(f"{path} holds no arrays")
            data = data[data.files[0]]
    except (ValueError, OSError) as e:
        raise ConfigError(f"{path} is not a .npy/.npz array file ({e})") from e
    values = np.asarray(data, np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ConfigError(f"{path} holds no finite values")
    return values


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
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"fit-{activation}-{name}.json"
        target.write_text(json.dumps(result, indent=2))
        console.print(f"wrote {target}")
    return result


def _measure(activation: str, name: str, samples: np.ndarray | None, elements: int, console: Console) -> list[dict]:
    from ..bench.activations import measure_implementation
    from ..session import Session

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
