"""`raympc netsim probe|set|show|reset`: network shaping by hand, and undoing what killed runs left."""

from __future__ import annotations

import argparse

from netsim import commands
from raympc.cluster import leftovers
from raympc.cluster.node_shaping import reset_all_nodes
from raympc.cluster.ray_instance import start_or_join
from raympc.commands.common import Subparsers, make_console


def register(sub: Subparsers) -> None:
    p = sub.add_parser("netsim", help="network shaping: probe, set, show, reset")
    verbs = p.add_subparsers(dest="verb", required=True)
    verbs.add_parser("probe", help="what this kernel supports and which backend 'auto' picks").set_defaults(func=_probe)
    shape = verbs.add_parser("set", help="shape the links between parties until Ctrl-C")
    shape.add_argument("profile", help="a preset (unshaped, lan, wan, wan-slow, spu-wan) or 'RATE,DELAY[,JITTER[,LOSS]]'")
    shape.add_argument("--parties", required=True, help="comma-separated host:port each party listens on")
    shape.add_argument("--backend", default="auto", help="auto, relay, tc, tc+relay or none")
    shape.add_argument("--duration", type=float, default=None, help="seconds, then remove (default: until Ctrl-C)")
    shape.set_defaults(func=_set)
    verbs.add_parser("show", help="active shapings and their counters").set_defaults(func=_show)
    reset = verbs.add_parser("reset", help="undo shapings, Ray processes and temp dirs left by killed runs")
    reset.add_argument("--all", action="store_true", help="also those whose owner is still running")
    reset.add_argument("--address", default=None,
                       help="reset every node of this Ray cluster (e.g. auto, emulated) instead of this host")
    reset.set_defaults(func=_reset)


def _probe(args: argparse.Namespace) -> None:
    commands.cmd_probe(make_console())


def _set(args: argparse.Namespace) -> None:
    commands.cmd_set(args.profile, args.parties.split(","), args.backend, make_console(), args.duration)


def _show(args: argparse.Namespace) -> None:
    commands.cmd_show(make_console())


def _reset(args: argparse.Namespace) -> None:
    console = make_console()
    if args.address:
        handle = start_or_join(args.address)
        try:
            lines = reset_all_nodes(include_live=args.all)
        finally:
            handle.shutdown()
        for line in lines:
            console.print(f"undone: {line}")
        console.print(f"reset ran on every node of {args.address}" + ("" if lines else ": nothing to reset"))
        return
    commands.cmd_reset(args.all, console)
    for line in leftovers.reap(include_live=args.all):  # Ray processes and dirs of killed drivers
        console.print(f"undone: {line}")
