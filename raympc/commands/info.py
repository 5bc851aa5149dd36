"""`raympc info`: versions, what network shaping this kernel allows, and the Ray cluster's nodes."""

from __future__ import annotations

import argparse
import json

import ray
from rich.console import Console
from rich.table import Table

from netsim import choose_backend, probe
from netsim.profile import PRESETS
from raympc.cluster.ray_instance import alive_nodes, start_or_join
from raympc.commands.common import Subparsers, make_console
from raympc.util.results import versions


def register(sub: Subparsers) -> None:
    p = sub.add_parser("info", help="versions, network shaping support, Ray nodes and resources")
    p.add_argument("--address", default=None, help="join this Ray cluster (default: a private embedded one)")
    p.add_argument("--json", action="store_true", help="also print everything as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    info = show_info(address=args.address, console=make_console())
    if args.json:
        print(json.dumps(info, indent=2, default=str))


def show_info(address: str | None = None, console: Console | None = None) -> dict:
    console = console or Console()
    info: dict = {"versions": versions()}
    t = Table(title="versions")
    t.add_column("package")
    t.add_column("version")
    for k, v in info["versions"].items():
        t.add_row(k, v)
    console.print(t)

    caps = probe()
    info["network_shaping"] = {"capabilities": caps.to_dict(),
                               "auto_backend": {n: choose_backend(p, caps)[0] for n, p in PRESETS.items()}}
    st = Table(title="network shaping (raympc netsim probe for details)")
    st.add_column("root")
    st.add_column("htb")
    st.add_column("netem")
    st.add_column("auto backend for 'wan'")
    st.add_row(*("yes" if v else "no" for v in (caps.root, caps.htb, caps.netem)),
               info["network_shaping"]["auto_backend"]["wan"])
    console.print(st)

    handle = start_or_join(address)
    try:
        nodes = alive_nodes()
        info["nodes"] = [{"node_id": n["NodeID"], "ip": n["NodeManagerAddress"], "resources": n["Resources"]}
                         for n in nodes]
        nt = Table(title=f"Ray nodes ({'embedded' if address is None else address})")
        for col in ("node", "ip", "CPU", "GPU", "memory GiB", "custom resources"):
            nt.add_column(col)
        for n in info["nodes"]:
            r = n["resources"]
            custom = {k: v for k, v in r.items()
                      if k not in ("CPU", "GPU", "memory", "object_store_memory") and not k.startswith("node:")}
            nt.add_row(n["node_id"][:12], n["ip"], str(r.get("CPU", 0)), str(r.get("GPU", 0)),
                       f"{r.get('memory', 0) / 2**30:.1f}", ", ".join(f"{k}={v}" for k, v in custom.items()))
        console.print(nt)
        info["cluster_resources"] = ray.cluster_resources()
    finally:
        handle.shutdown()
    return info
