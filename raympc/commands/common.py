"""What every command module shares: the console, and parsers for values several commands take."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from raympc.activations.policy import PolicyError, resolve
from raympc.errors import ConfigError
from raympc.runtime.protocols import EXP_MODES
from workloads.protocol import WorkloadError
from workloads.registry import factory

# The `add_parser` hook of `raympc`'s sub-command table.
Subparsers = argparse._SubParsersAction


def make_console() -> Console:
    """Rich squeezes tables to 80 columns when output is not a terminal (CI logs, files): widen it.
    No emoji codes: source locations such as `model.py:100:34` would print as an emoji."""
    console = Console(emoji=False)
    return console if console.is_terminal else Console(width=160, emoji=False)


def policy(text: str) -> str:
    """An `--activations` value, checked now: 'raympc', 'mish=raympc,softmax=spu-direct' or
    'raympc,softmax=raympc-lean' (activations.policy.resolve)."""
    try:
        resolve(text)
    except PolicyError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def workload(name: str) -> str:
    """A `--workload` value, checked now: a shipped workload's name or package.module:factory."""
    try:
        factory(name)
    except WorkloadError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name


def names(text: str) -> tuple[str, ...]:
    """A comma-separated list ('unshaped,wan') as a tuple, without empty items."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def assignments(pairs: list[str] | None, flag: str, form: str = "KEY=VALUE") -> dict[str, str]:
    """Repeated `KEY=VALUE` flags as a dict (`form` names the pair in the error, e.g. FIELD=VALUE).

    Raises:
        ConfigError: an item without '=' or with an empty key or value.
    """
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"{flag} takes {form}, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def exp_mode(parser: argparse.ArgumentParser) -> None:
    """The `--exp-mode` flag: SPU's exp for the activations that use its stock one (CipherDM's
    baseline is Pade; SPU's default Taylor)."""
    parser.add_argument("--exp-mode", choices=sorted(EXP_MODES), default="taylor",
                        help="SPU's exp for stock exp/softmax/sigmoid: taylor (SPU's default) or pade (CipherDM's "
                             "baseline)")


def out_dir(parser: argparse.ArgumentParser, default: str, what: str = "results") -> None:
    """The `--out DIR` flag every writing command takes."""
    parser.add_argument("--out", type=Path, default=Path(default), help=f"directory for the {what} (default {default})")
