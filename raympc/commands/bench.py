"""`raympc bench ...`: the benchmarks. Each writes NAME.json (with its provenance) and, where a
picture helps, NAME.png into `--out`; `--out benchmarks/results` refreshes the committed figures
that `raympc results` renders into docs/results.md."""

from __future__ import annotations

import argparse
from pathlib import Path

from raympc.bench.activations import bench_activations
from raympc.bench.models import POLICIES, WORKLOADS, bench_models
from raympc.bench.netmodel import FIT_PROFILES, SPEC, bench_netmodel
from raympc.bench.network import bench_netsim
from raympc.bench.runtime import bench_runtime
from raympc.bench.sd_scale import bench_sd_scale
from raympc.bench.sweep_scale import bench_sweep_scale
from raympc.bench.tls import bench_tls
from raympc.commands.common import Subparsers, assignments, make_console, names, out_dir, policy, workload

DEFAULT_OUT = "runs/bench"


def register(sub: Subparsers) -> None:
    p = sub.add_parser("bench", help="benchmarks (their results: docs/results.md)")
    benches = p.add_subparsers(dest="bench", required=True)

    b = benches.add_parser("runtime", help="Ray-hosted parties vs SPU's in-process simulation")
    b.add_argument("--scale", type=int, default=8, help="problem size multiplier")
    b.add_argument("--repeats", type=int, default=5)
    out_dir(b, DEFAULT_OUT)
    b.set_defaults(func=lambda a: bench_runtime(scale=a.scale, repeats=a.repeats, out=a.out, console=make_console()))

    b = benches.add_parser("netsim", help="set vs measured rate and RTT per preset and backend")
    b.add_argument("--seconds", type=float, default=1.5, help="length of each throughput transfer")
    out_dir(b, DEFAULT_OUT)
    b.set_defaults(func=lambda a: bench_netsim(seconds=a.seconds, out=a.out, console=make_console()))

    b = benches.add_parser("activations", help="cost and error of every activation implementation")
    b.add_argument("--elements", type=int, default=65536)
    b.add_argument("--networks", type=names, default=("unshaped", "wan"),
                   help="profiles to time under, comma-separated (bytes do not depend on them)")
    b.add_argument("--inputs", action="append", metavar="ACTIVATION=FILE",
                   help="recorded inputs (.npy/.npz) to report errors on as well; repeatable")
    b.add_argument("--only", type=names, default=None, metavar="ACTIVATION[,...]",
                   help="bench these activations only (all their implementations), e.g. silu,softmax")
    b.add_argument("--ops", action="store_true", help="also print each implementation's cost by SPU MPC kernel")
    out_dir(b, DEFAULT_OUT)
    b.set_defaults(func=_activations)

    b = benches.add_parser("tls", help="cost of TLS on the party links")
    b.add_argument("--scale", type=int, default=8, help="problem size multiplier")
    b.add_argument("--repeats", type=int, default=5)
    b.add_argument("--networks", type=names, default=("unshaped", "wan"))
    out_dir(b, DEFAULT_OUT)
    b.set_defaults(func=lambda a: bench_tls(scale=a.scale, repeats=a.repeats, networks=a.networks, out=a.out,
                                            console=make_console()))

    b = benches.add_parser("sd-scale", help="SD U-Net secure step at small scales, extrapolated to SD v1")
    b.add_argument("--fit", type=names, default=("tiny", "small", "medium"), help="scales the cost model is fitted on")
    b.add_argument("--holdout", type=names, default=("wide",), help="measured scales that check the extrapolation")
    b.add_argument("--target", default="sd-v1", help="scale to extrapolate to (abstract trace only)")
    b.add_argument("--activations", type=policy, default="raympc", help="a policy, as for `raympc sample`")
    out_dir(b, DEFAULT_OUT, "results; measured scales are cached here and not re-run")
    b.set_defaults(func=lambda a: bench_sd_scale(fit=a.fit, holdout=a.holdout, target=a.target,
                                                 activations=a.activations, out=a.out, console=make_console()))

    b = benches.add_parser("models", help="bytes, messages, time, coverage and error per model and policy")
    b.add_argument("--workload", type=workload, action="append", metavar="NAME|package.module:factory",
                   help=f"repeatable; default: {', '.join(WORKLOADS)} (examples/ from a checkout)")
    b.add_argument("--policy", type=policy, action="append", help=f"repeatable; default: {', '.join(POLICIES)}")
    b.add_argument("--batch", type=int, default=1)
    b.add_argument("--no-pade", action="store_true", help="skip CipherDM's Pade-exp pair on its U-Net")
    out_dir(b, DEFAULT_OUT)
    b.set_defaults(func=lambda a: bench_models(workloads=tuple(a.workload or WORKLOADS),
                                               policies=tuple(a.policy or POLICIES), pade=not a.no_pade,
                                               batch=a.batch, out=a.out, console=make_console()))

    b = benches.add_parser("netmodel", help="calibrate the analytic network model and check it on held-out profiles")
    b.add_argument("--spec", type=Path, default=SPEC)
    b.add_argument("--fit", default=";".join(FIT_PROFILES), help="profiles to fit on, ';'-separated")
    b.add_argument("--install", action="store_true", help="make the fit the default calibration")
    b.add_argument("--random", type=int, default=4, metavar="N",
                   help="also check N profiles drawn at random from the grid's rate and delay ranges")
    b.add_argument("--seed", type=int, default=0, help="seed of the random profiles (a miss reproduces)")
    out_dir(b, "runs/bench/netmodel", "sweep results (resumable)")
    b.add_argument("--results", type=Path, default=None,
                   help="where bench-netmodel.json and .png go (default: --out; the committed ones: benchmarks/results)")
    b.set_defaults(func=lambda a: bench_netmodel(out=a.out, spec=a.spec, fit=tuple(a.fit.split(";")),
                                                 install=a.install, random=a.random, seed=a.seed, results=a.results,
                                                 console=make_console()))

    b = benches.add_parser("sweep-scale", help="parallel efficiency of a sweep on a 3-node emulated cluster (root)")
    b.add_argument("--points", type=int, default=6)
    b.add_argument("--steps", type=int, default=4)
    b.add_argument("--network", default="wan")
    out_dir(b, "runs/bench/sweep-scale")
    b.add_argument("--shared-cores", action="store_true",
                   help="let the emulated nodes share all cores (default: each gets cores/3 through a cgroup quota)")
    b.set_defaults(func=lambda a: bench_sweep_scale(points=a.points, steps=a.steps, network=a.network, out=a.out,
                                                    shared_cores=a.shared_cores, console=make_console()))


def _activations(args: argparse.Namespace) -> None:
    inputs = {activation: Path(path) for activation, path in assignments(args.inputs, "--inputs", "ACTIVATION=FILE").items()}
    bench_activations(elements=args.elements, out=args.out, console=make_console(), networks=args.networks,
                      inputs=inputs, only=args.only, ops=args.ops)
