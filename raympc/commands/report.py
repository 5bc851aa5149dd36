"""`raympc report DIR`: a Markdown report with figures from a sweep's results."""

from __future__ import annotations

import argparse
from pathlib import Path

from raympc.commands.common import Subparsers, make_console
from raympc.sweeps.report import build_report


def register(sub: Subparsers) -> None:
    p = sub.add_parser("report", help="Markdown report with figures from a sweep's results")
    p.add_argument("dir", type=Path, help="sweep results directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    build_report(args.dir, console=make_console())
