"""`raympc cluster`: an emulated three-node cluster on this machine, and party labels for real ones."""

from __future__ import annotations

import argparse
import json

from raympc.cluster import emulated
from raympc.cluster.labels import party_resources
from raympc.commands.common import Subparsers, make_console


def register(sub: Subparsers) -> None:
    p = sub.add_parser("cluster", help="multi-node helpers: emulate a 3-node cluster here, party labels")
    verbs = p.add_subparsers(dest="cluster_verb", required=True)
    emu = verbs.add_parser("emulate", help="three network namespaces with one Ray node each (root)")
    emu_verbs = emu.add_subparsers(dest="emulate_verb", required=True)
    up = emu_verbs.add_parser("up", help="create namespaces, veths, a bridge, and start the Ray nodes")
    up.add_argument("--nodes", type=int, default=3)
    up.add_argument("--cpus-per-node", type=int, default=1)
    up.add_argument("--mode", choices=["auto", "netns", "loopback"], default="auto",
                    help="netns needs root; auto falls back to Ray nodes on loopback without it")
    up.add_argument("--cpu-share", type=float, default=None, metavar="CORES",
                    help="hold each node's processes to CORES cores on average (a cgroup quota, root), as "
                         "separate machines would be; default: the nodes share all of this host's cores")
    up.set_defaults(func=_up)
    emu_verbs.add_parser("down", help="stop the nodes and delete everything `up` made (also after a crash)"
                         ).set_defaults(func=_down)
    emu_verbs.add_parser("status", help="what is up").set_defaults(func=_status)
    label = verbs.add_parser("label", help="this host's party resources, from its position in a worker list")
    label.add_argument("--workers", required=True, help="comma-separated worker IPs in party order")
    label.set_defaults(func=_label)


def _up(args: argparse.Namespace) -> None:
    console = make_console()
    with console.status(f"creating {args.nodes} namespaces and starting one Ray node in each..."):
        state = emulated.up(nodes=args.nodes, cpus_per_node=args.cpus_per_node, mode=args.mode,
                            cpu_share_cores=args.cpu_share)
    if state.mode == "netns":
        console.print(f"emulated cluster up: head {state.gcs_address} (host side), nodes "
                      f"{', '.join(state.node_ips)} in namespaces {', '.join(state.netns)}; token auth on")
    else:
        console.print(f"emulated cluster up [bold]on loopback[/] ({emulated.namespaces_possible()[1] or 'as asked'}): "
                      f"head {state.gcs_address} and {state.nodes} nodes on 127.0.0.1 that differ only in their "
                      "party resources; links are shaped by the single-host backends; token auth on")
    if state.cpu_share is not None:
        console.print(f"each node's processes are held to {state.cpu_share:g} cores (cgroups {', '.join(state.cgroups)})")
    console.print("use it with [bold]--address emulated[/] (or Session(address='emulated', placement='spread')); "
                  "stop it with [bold]raympc cluster emulate down[/]")


def _down(args: argparse.Namespace) -> None:
    console = make_console()
    for line in emulated.down():
        console.print(f"undone: {line}")


def _status(args: argparse.Namespace) -> None:
    state = emulated.load()
    make_console().print("no emulated cluster" if state is None else json.dumps(
        {k: v for k, v in vars(state).items() if k != "processes"}, indent=1))


def _label(args: argparse.Namespace) -> None:
    print(json.dumps(party_resources(args.workers.split(","))))
