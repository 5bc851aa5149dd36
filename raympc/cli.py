"""The `raympc` command line: one module per command in `raympc.commands`; this only dispatches."""

from __future__ import annotations

import argparse
import logging
import sys
from types import ModuleType

from rich.console import Console

from netsim import ProfileError, ShapingError
from raympc.commands import (
    bench,
    check,
    cluster,
    demo,
    evaluate,
    fit,
    info,
    netsim,
    predict,
    record_inputs,
    report,
    results,
    sample,
    sweep,
    train,
)
from raympc.errors import RaympcError

# In the order `raympc --help` lists them. Each module's `register(sub)` adds its sub-parser and
# sets `func`, which takes the parsed arguments.
COMMANDS: tuple[ModuleType, ...] = (demo, sample, check, sweep, report, results, predict, bench, netsim, cluster, info,
                                    fit, record_inputs, train, evaluate)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: `raympc COMMAND ...` for every module of `COMMANDS`."""
    parser = argparse.ArgumentParser(prog="raympc", description="Secure three-party computation on Ray, measured.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def _show_netsim_messages() -> None:
    """netsim logs which backend it chose and why; a library leaves the handler to its user, we are one."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("raympc netsim: %(message)s"))
    logger = logging.getLogger("netsim")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    """Run one command; raympc's own errors print as one line and exit 1, usage errors exit 2."""
    args = build_parser().parse_args(argv)
    _show_netsim_messages()
    try:
        args.func(args)
    except (RaympcError, ShapingError, ProfileError) as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
