"""Fits registered by `raympc fit`: kept in a JSON file and registered on import.

The file is $RAYMPC_FITS or ~/.cache/raympc/fits.json: one entry per (activation, name). It is
rewritten atomically, so a crash never leaves it half-written.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from raympc.activations.fit import SPU_FRACTION_BITS, SignSplitFit
from raympc.activations.registry import register
from raympc.util.files import write_json_atomically

# SPU's truncations add at most a few 1e-4 to a fit whose coefficients are on its grid (the tests
# hold every shipped form to 5e-4); rounding float coefficients is bounded separately below.
TRUNCATION_MARGIN = 5e-4
SPU_ULP = 2.0 ** -SPU_FRACTION_BITS


def fits_path() -> Path:
    return Path(os.environ.get("RAYMPC_FITS", Path.home() / ".cache" / "raympc" / "fits.json"))


def load_fits(path: Path | None = None) -> dict[tuple[str, str], SignSplitFit]:
    path = path or fits_path()
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text())
        return {(d["activation"], name): SignSplitFit.from_dict(d)
                for name, entries in raw.items() for d in entries}
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ValueError(f"{path} is not a raympc fits file ({e}); move it away or set RAYMPC_FITS") from e


def save_fit(name: str, fit: SignSplitFit, path: Path | None = None) -> Path:
    """Add or replace (fit.activation, name) in the fits file."""
    path = path or fits_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fits = load_fits(path)
    fits[(fit.activation, name)] = fit
    raw: dict[str, list[dict]] = {}
    for (_, n), f in sorted(fits.items()):
        raw.setdefault(n, []).append(f.to_dict())
    return write_json_atomically(path, raw)


def as_function(fit: SignSplitFit):
    """A plain function (policies rebind module attributes to it; SPU traces it like any other)."""

    def activation(x):
        return fit(x)

    activation.__name__ = f"{fit.activation}_sign_split_d{fit.degree}_p{fit.pieces}"
    return activation


def coefficient_rounding_bound(fit: SignSplitFit) -> float:
    """How far SPU's encoding of float coefficients can move the form: one ulp per coefficient
    times the largest |u|^k. Zero for a fit made on SPU's grid; for a degree-6 Mish in float it
    is 1.2e-2, which is why `raympc fit` rounds by default."""
    if fit.fraction_bits is not None and fit.fraction_bits <= SPU_FRACTION_BITS:
        return 0.0  # multiples of 2^-fraction_bits are exact on SPU's coarser-or-equal grid
    return SPU_ULP * sum(fit.u_max ** k for k in range(fit.degree + 1))


def register_fit(name: str, fit: SignSplitFit) -> None:
    """Make a fit selectable like any implementation: `use({"silu": name})`, the bench, sweeps."""
    bound = fit.fit_max_error + coefficient_rounding_bound(fit) + TRUNCATION_MARGIN
    note = (f"raympc fit: sign-split, degree {fit.degree}, {fit.pieces} piece(s), limits "
            f"-{fit.limit_neg:g}/+{fit.limit_pos:g}" + (f", weighted by {fit.weighted_by}" if fit.weighted_by else ""))
    register(fit.activation, name, bound, (-16, 16), note, fitted=True)(as_function(fit))


def register_stored_fits() -> None:
    try:
        fits = load_fits()
    except ValueError as e:  # a broken user file must not make the package unimportable
        warnings.warn(str(e), stacklevel=2)
        return
    for (_, name), fit in fits.items():
        register_fit(name, fit)
