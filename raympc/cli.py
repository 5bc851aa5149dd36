"""The `raympc` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console

from netsim import ProfileError, ShapingError

from .errors import ConfigError, RaympcError


def make_console() -> Console:
    """Rich squeezes tables to 80 columns when output is not a terminal (CI logs, files)."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


def _cmd_demo(args: argparse.Namespace) -> None:
    if args.kernels:
        from .demo import run_demo

        run_demo(out=args.out, protocol=args.protocol, field=args.field, tls=args.tls, console=make_console())
        return
    from .sampling_demo import run_sampling_demo

    run_sampling_demo(out=args.out, steps=args.steps, network=args.network, console=make_console())


def _cmd_info(args: argparse.Namespace) -> None:
    from .info import show_info

    info = show_info(address=args.address, console=make_console())
    if args.json:
        print(json.dumps(info, indent=2, default=str))


def _cmd_bench_runtime(args: argparse.Namespace) -> None:
    from .bench.runtime import bench_runtime

    bench_runtime(scale=args.scale, repeats=args.repeats, out=args.out, console=make_console())


def _cmd_bench_netsim(args: argparse.Namespace) -> None:
    from .bench.network import bench_netsim

    bench_netsim(seconds=args.seconds, out=args.out, console=make_console())


def _cmd_bench_activations(args: argparse.Namespace) -> None:
    from .bench.activations import bench_activations

    inputs = {}
    for item in args.inputs or []:
        activation, sep, path = item.partition("=")
        if not sep:
            raise ConfigError(f"--inputs wants ACTIVATION=FILE, got {item!r}")
        inputs[activation] = Path(path)
    bench_activations(elements=args.elements, out=args.out, console=make_console(),
                      networks=tuple(args.networks.split(",")), inputs=inputs,
                      only=tuple(args.only.split(",")) if args.only else None, ops=args.ops)


def _cmd_bench_sd_scale(args: argparse.Namespace) -> None:
    from .bench.sd_scale import bench_sd_scale

    bench_sd_scale(fit=tuple(args.fit.split(",")), holdout=tuple(args.holdout.split(",")), target=args.target,
                   activations=args.activations, out=args.out, console=make_console())


def _cmd_sweep(args: argparse.Namespace) -> None:
    from .sweeps.runner import run_sweep

    console = make_console()
    s = run_sweep(args.spec, args.out, address=args.address, parallel=args.parallel,
                  retry_failed=args.retry_failed,
                  share_references=not args.own_references, console=console, only=_only(args.only))
    line = f"{s.points} points: {s.skipped} already done, {s.ran} ran, {s.failed} failed"
    if s.ran:
        line += f"; wall {s.wall_s:.1f} s for {s.busy_s:.1f} s of point time"
    console.print(line)
    for path in s.tables:
        console.print(f"wrote {path}")


def _only(pairs: list[str] | None) -> dict[str, str]:
    only = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"--only takes FIELD=VALUE (e.g. activations=raympc), got {pair!r}")
        only[key.strip()] = value.strip()
    return only


def _cmd_predict(args: argparse.Namespace) -> None:
    from .predict_command import run_predict

    run_predict(args.run, args.network, point=args.point, calibration=args.calibration, console=make_console())


def _cmd_bench_netmodel(args: argparse.Namespace) -> None:
    from .bench.netmodel import bench_netmodel

    bench_netmodel(out=args.out, spec=args.spec, fit=tuple(args.fit.split(";")), install=args.install,
                   console=make_console())


def _cmd_report(args: argparse.Namespace) -> None:
    from .report import build_report

    build_report(args.dir, console=make_console())


def _cmd_bench_sweep_scale(args: argparse.Namespace) -> None:
    from .bench.sweep_scale import bench_sweep_scale

    bench_sweep_scale(points=args.points, steps=args.steps, network=args.network, out=args.out,
                      shared_cores=args.shared_cores, console=make_console())


def _cmd_fit(args: argparse.Namespace) -> None:
    from .activations.fit_command import run_fit

    run_fit(args.activation, args.degree, args.pieces, tuple(args.range) if args.range else None, args.inputs,
            args.name, measure=not args.no_measure, elements=args.elements, out=args.out, console=make_console(),
            fraction_bits=args.fraction_bits or None, tail=args.tail)


def _cmd_bench_tls(args: argparse.Namespace) -> None:
    from .bench.tls import bench_tls

    bench_tls(scale=args.scale, repeats=args.repeats, networks=tuple(args.networks.split(",")), out=args.out,
              console=make_console())


def _cmd_sample(args: argparse.Namespace) -> None:
    from workloads.run_sample import run_sample

    run_sample(args.workload, args.steps, args.activations, args.network, args.batch, args.out, args.seed, args.eta,
               breakdown=not args.no_breakdown, scale=args.scale, console=make_console())


def _cmd_record_inputs(args: argparse.Namespace) -> None:
    from workloads.record_inputs import record_inputs

    summary = record_inputs(args.out, steps=args.steps, batch=args.batch, seed=args.seed, model=args.model)
    for name, stats in summary.items():
        print(f"{name}: {stats['count']:,} values in [{stats['min']:.2f}, {stats['max']:.2f}] "
              f"(1-99%: {stats['p01']:.2f} .. {stats['p99']:.2f}) -> {args.out / (name + '.npy')}")


def _activation_policy(text: str) -> str:
    """'raympc' (every activation it provides), 'mish=raympc,softmax=spu-direct' or
    'raympc,softmax=raympc-lean' (activations.policy.resolve), checked now."""
    from .activations.policy import resolve

    try:
        resolve(text)
    except KeyError as exc:
        raise ConfigError(f"--activations {text!r}: {exc.args[0]}") from None
    return text


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from workloads import evaluate

    console = make_console()
    record = args.record and args.activations is None  # the sidecar holds the model's own quality only
    run = evaluate.record_plaintext_quality if record else evaluate.plaintext_quality
    extra = {} if args.activations is None else {"activations": _activation_policy(args.activations)}
    with console.status(f"sampling {args.per_class} digits per class from {args.name} in plaintext..."):
        q = run(args.name, steps=args.steps, per_class=args.per_class, seed=args.seed, **extra)
    console.print(f"{args.name}: {evaluate.summary(q)}"
                  + (f" (recorded in workloads/weights/{args.name}.json)" if record else ""))


def _cmd_train(args: argparse.Namespace) -> None:
    from workloads import train

    console = make_console()
    if args.what == "mnist":
        from workloads.unet import UNetConfig

        recipe = train.DiffusionRecipe(steps=args.steps, batch=args.batch, seed=args.seed, lr=args.lr,
                                       model=UNetConfig(channels=args.channels, activation=args.activation))
        train.train_diffusion(recipe, name=args.name or ("ddpm-mnist" if args.activation == "silu" else
                                                          f"ddpm-mnist-{args.activation}"), console=console,
                              resume=args.resume)
    else:
        train.train_classifier(epochs=args.epochs, seed=args.seed, console=console)


def _cmd_cluster(args: argparse.Namespace) -> None:
    console = make_console()
    if args.cluster_verb == "label":
        from .cluster_label import party_resources

        print(json.dumps(party_resources(args.workers.split(","))))
        return
    from . import emulate

    if args.emulate_verb == "up":
        with console.status(f"creating {args.nodes} namespaces and starting one Ray node in each..."):
            state = emulate.up(nodes=args.nodes, cpus_per_node=args.cpus_per_node, mode=args.mode,
                               cpu_share_cores=args.cpu_share)
        if state.mode == "netns":
            console.print(f"emulated cluster up: head {state.gcs_address} (host side), nodes "
                          f"{', '.join(state.node_ips)} in namespaces {', '.join(state.netns)}; token auth on")
        else:
            console.print(f"emulated cluster up [bold]on loopback[/] ({emulate.namespaces_possible()[1] or 'as asked'}): "
                          f"head {state.gcs_address} and {state.nodes} nodes on 127.0.0.1 that differ only in their "
                          "party resources; links are shaped by the single-host backends; token auth on")
        if state.cpu_share is not None:
            console.print(f"each node's processes are held to {state.cpu_share:g} cores (cgroups {', '.join(state.cgroups)})")
        console.print("use it with [bold]--address emulated[/] (or Session(address='emulated', placement='spread')); "
                      "stop it with [bold]raympc cluster emulate down[/]")
    elif args.emulate_verb == "down":
        for line in emulate.down():
            console.print(f"undone: {line}")
    else:
        state = emulate.load()
        console.print("no emulated cluster" if state is None else json.dumps(
            {k: v for k, v in vars(state).items() if k != "processes"}, indent=1))


def _cmd_netsim(args: argparse.Namespace) -> None:
    from netsim import commands

    console = make_console()
    if args.verb == "probe":
        commands.cmd_probe(console)
    elif args.verb == "set":
        commands.cmd_set(args.profile, args.parties.split(","), args.backend, console, args.duration)
    elif args.verb == "show":
        commands.cmd_show(console)
    elif args.address:
        from .cluster import start_or_join
        from .node_shaping import reset_all_nodes

        handle = start_or_join(args.address)
        try:
            lines = reset_all_nodes(include_live=args.all)
        finally:
            handle.shutdown()
        for line in lines:
            console.print(f"undone: {line}")
        console.print(f"reset ran on every node of {args.address}" + ("" if lines else ": nothing to reset"))
    else:
        commands.cmd_reset(args.all, console)
        from . import leftovers

        for line in leftovers.reap(include_live=args.all):  # Ray processes and dirs of killed drivers
            console.print(f"undone: {line}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raympc", description="Secure three-party computation on Ray, measured.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="secure DDIM sampling of MNIST digits: spu-direct vs raympc activations")
    demo.add_argument("--steps", type=int, default=6, help="DDIM steps")
    demo.add_argument("--network", default="lan", help="network profile for the party links")
    demo.add_argument("--kernels", action="store_true", help="the small-kernel demo instead (matmul, softmax, conv, SiLU)")
    demo.add_argument("--protocol", default="aby3")
    demo.add_argument("--field", default="fm64")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="where demo.json goes")
    demo.add_argument("--tls", action="store_true", help="TLS on the party links (per-session certificates)")
    demo.set_defaults(func=_cmd_demo)

    info = sub.add_parser("info", help="Ray nodes and resources, versions")
    info.add_argument("--address", default=None, help="join this Ray cluster (default: embedded)")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=_cmd_info)

    fit = sub.add_parser("fit", help="fit a piecewise-polynomial activation, register it, measure it under SPU")
    fit.add_argument("activation", choices=["silu", "mish", "gelu_tanh", "gelu_erf"])
    fit.add_argument("--degree", type=int, required=True, help="polynomial degree per piece")
    fit.add_argument("--pieces", type=int, default=1, help="pieces per side of zero (each costs a comparison)")
    fit.add_argument("--range", type=float, nargs=2, metavar=("A", "B"),
                     help="clamp points below and above zero (default: scanned for the smallest error)")
    fit.add_argument("--inputs", type=Path, default=None, help=".npy/.npz of recorded inputs to weight the fit by")
    fit.add_argument("--name", default=None, help="implementation name (default fit-pN-dD)")
    fit.add_argument("--fraction-bits", type=int, default=18,
                     help="round coefficients to this fixed point, refitting the lower ones around each "
                          "(default 18, SPU's for FM64; 0 keeps float coefficients)")
    fit.add_argument("--tail", choices=["clamp", "relu"], default="clamp",
                     help="beyond the clamp points: the polynomial's last value (clamp), or relu plus a "
                          "constant offset (relu: the polynomial is masked instead of clamped; one piece)")
    fit.add_argument("--elements", type=int, default=16384, help="grid size for the secure measurement")
    fit.add_argument("--no-measure", action="store_true", help="fit and register only; skip the SPU run")
    fit.add_argument("--out", type=Path, default=None,
                     help="also write the result as JSON into this directory (fit-ACTIVATION-NAME.json)")
    fit.set_defaults(func=_cmd_fit)

    sa = sub.add_parser("sample", help="secure diffusion sampling next to plaintext from the same noise")
    from workloads.registry import WORKLOADS

    sa.add_argument("--workload", choices=sorted(WORKLOADS), default="ddim-mnist")
    sa.add_argument("--scale", default="tiny", help="sd-unet only: tiny, small, medium, wide")
    sa.add_argument("--steps", type=int, default=10)
    sa.add_argument("--activations", default="raympc",
                    help="implementation (raympc, spu-direct, cipherdm, puma, ...), per activation "
                         "(mish=raympc,softmax=spu-direct), or both (raympc,softmax=raympc-lean)")
    sa.add_argument("--network", default=None, help="network profile (preset or RATE,DELAY)")
    sa.add_argument("--batch", type=int, default=4)
    sa.add_argument("--eta", type=float, default=0.0, help="DDIM eta (0: deterministic)")
    sa.add_argument("--seed", type=int, default=0)
    sa.add_argument("--out", type=Path, default=Path("runs/sample"))
    sa.add_argument("--no-breakdown", action="store_true",
                    help="skip the cost-by-layer-kind replay (it costs about one more step)")
    sa.set_defaults(func=_cmd_sample)

    ri = sub.add_parser("record-inputs", help="record a shipped U-Net's activation inputs during plaintext DDIM")
    ri.add_argument("--out", type=Path, default=Path("runs/inputs"))
    ri.add_argument("--steps", type=int, default=10)
    ri.add_argument("--batch", type=int, default=10)
    ri.add_argument("--seed", type=int, default=0)
    ri.add_argument("--model", choices=["ddpm-mnist", "ddpm-mnist-mish"], default="ddpm-mnist",
                    help="which shipped U-Net to run: its SiLU or Mish inputs are recorded")
    ri.set_defaults(func=_cmd_record_inputs)

    tr = sub.add_parser("train", help="train the shipped models (plaintext): the MNIST U-Net or the classifier")
    tr.add_argument("what", choices=["mnist", "classifier"])
    tr.add_argument("--steps", type=int, default=3000, help="optimizer steps (mnist)")
    tr.add_argument("--batch", type=int, default=64)
    tr.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    tr.add_argument("--channels", type=int, default=16, help="U-Net base channels (mnist)")
    tr.add_argument("--activation", choices=["silu", "mish"], default="silu")
    tr.add_argument("--epochs", type=int, default=2, help="epochs (classifier)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--name", default=None, help="weights name in workloads/weights/")
    tr.add_argument("--resume", default=None, help="continue from these saved weights (mnist)")
    tr.set_defaults(func=_cmd_train)

    from workloads.evaluate import PER_CLASS, STEPS

    ev = sub.add_parser("evaluate", help="plaintext sample quality of a shipped MNIST U-Net (class accuracy, "
                                         "FID proxy), recorded in its weights sidecar")
    ev.add_argument("name", nargs="?", default="ddpm-mnist", help="weights name in workloads/weights/")
    ev.add_argument("--steps", type=int, default=STEPS, help="DDIM steps")
    ev.add_argument("--per-class", type=int, default=PER_CLASS, help="digits drawn per class")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--no-record", dest="record", action="store_false", help="print only; leave the sidecar alone")
    ev.add_argument("--activations", default=None,
                    help="also sample with an implementation's forms in the clear (raympc, or mish=raympc "
                         "for one activation) and compare with the model's own; never recorded")
    ev.set_defaults(func=_cmd_evaluate)

    cl = sub.add_parser("cluster", help="multi-node helpers: emulate a 3-node cluster here, party labels")
    cl_verbs = cl.add_subparsers(dest="cluster_verb", required=True)
    emu = cl_verbs.add_parser("emulate", help="three network namespaces with one Ray node each (root)")
    emu_verbs = emu.add_subparsers(dest="emulate_verb", required=True)
    emu_up = emu_verbs.add_parser("up", help="create namespaces, veths, a bridge, and start the Ray nodes")
    emu_up.add_argument("--nodes", type=int, default=3)
    emu_up.add_argument("--cpus-per-node", type=int, default=1)
    emu_up.add_argument("--mode", choices=["auto", "netns", "loopback"], default="auto",
                        help="netns needs root; auto falls back to Ray nodes on loopback without it")
    emu_up.add_argument("--cpu-share", type=float, default=None, metavar="CORES",
                        help="hold each node's processes to CORES cores on average (a cgroup quota, root), as "
                             "separate machines would be; default: the nodes share all of this host's cores")
    emu_verbs.add_parser("down", help="stop the nodes and delete everything `up` made (also after a crash)")
    emu_verbs.add_parser("status", help="what is up")
    label = cl_verbs.add_parser("label", help="this host's party resources, from its position in a worker list")
    label.add_argument("--workers", required=True, help="comma-separated worker IPs in party order")
    cl.set_defaults(func=_cmd_cluster)

    ns = sub.add_parser("netsim", help="network shaping: probe, set, show, reset")
    verbs = ns.add_subparsers(dest="verb", required=True)
    verbs.add_parser("probe", help="what this kernel supports and which backend 'auto' picks")
    ns_set = verbs.add_parser("set", help="shape the links between parties until Ctrl-C")
    ns_set.add_argument("profile", help="a preset (unshaped, lan, wan, wan-slow, spu-wan) or 'RATE,DELAY[,JITTER]'")
    ns_set.add_argument("--parties", required=True, help="comma-separated host:port each party listens on")
    ns_set.add_argument("--backend", default="auto", help="auto, relay, tc, tc+relay or none")
    ns_set.add_argument("--duration", type=float, default=None, help="seconds, then remove (default: until Ctrl-C)")
    verbs.add_parser("show", help="active shapings and their counters")
    ns_reset = verbs.add_parser("reset", help="undo shapings, Ray processes and temp dirs left by killed runs")
    ns_reset.add_argument("--all", action="store_true", help="also those whose owner is still running")
    ns_reset.add_argument("--address", default=None,
                          help="reset every node of this Ray cluster (e.g. auto, emulated) instead of this host")
    ns.set_defaults(func=_cmd_netsim)

    sw = sub.add_parser("sweep", help="run a grid of experiments from a YAML spec (resumable)")
    sw.add_argument("spec", type=Path, help="sweep spec (see workloads/specs/)")
    sw.add_argument("--out", type=Path, required=True, help="results directory (rerun to resume)")
    sw.add_argument("--address", default=None, help="Ray cluster: 'auto', HOST:PORT or 'emulated' (default: embedded)")
    sw.add_argument("--parallel", type=int, default=None,
                    help="points at once (embedded Ray: sizes it for that many; cluster: a cap)")
    sw.add_argument("--retry-failed", action="store_true", help="run failed points again")
    sw.add_argument("--only", action="append", metavar="FIELD=VALUE",
                    help="run only the spec's points with this field value (repeatable: all must match)")
    sw.add_argument("--own-references", action="store_true",
                    help="every shaped point measures its own unshaped reference steps (by default points "
                         "running the same program share one measurement)")
    sw.set_defaults(func=_cmd_sweep)

    pr = sub.add_parser("predict", help="predict a measured run's time under another network profile")
    pr.add_argument("run", type=Path, help="a `raympc sample` JSON, or a sweep results directory")
    pr.add_argument("--network", required=True, action="append", help="profile(s) to predict for (repeatable)")
    pr.add_argument("--point", default=None, help="sweep point id (when RUN is a sweep directory)")
    pr.add_argument("--calibration", type=Path, default=None, help="calibration JSON (default: the shipped one)")
    pr.set_defaults(func=_cmd_predict)

    rp = sub.add_parser("report", help="Markdown report with figures from a sweep's results")
    rp.add_argument("dir", type=Path, help="sweep results directory")
    rp.set_defaults(func=_cmd_report)

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    rt = bench_sub.add_parser("runtime", help="Ray-hosted parties vs SPU's in-process simulation")
    rt.add_argument("--scale", type=int, default=8, help="problem size multiplier")
    rt.add_argument("--repeats", type=int, default=5)
    rt.add_argument("--out", type=Path, default=Path("runs/bench"))
    rt.set_defaults(func=_cmd_bench_runtime)
    nb = bench_sub.add_parser("netsim", help="set vs measured rate and RTT per preset and backend")
    nb.add_argument("--seconds", type=float, default=1.5, help="length of each throughput transfer")
    nb.add_argument("--out", type=Path, default=Path("runs/bench"))
    nb.set_defaults(func=_cmd_bench_netsim)
    ab = bench_sub.add_parser("activations", help="cost and error of every activation implementation")
    ab.add_argument("--elements", type=int, default=65536)
    ab.add_argument("--networks", default="unshaped,wan", help="profiles to time under (bytes do not depend on them)")
    ab.add_argument("--inputs", action="append", metavar="ACTIVATION=FILE",
                    help="recorded inputs (.npy/.npz) to report errors on as well; repeatable")
    ab.add_argument("--only", metavar="ACTIVATION[,...]",
                    help="bench these activations only (all their implementations), e.g. silu,softmax")
    ab.add_argument("--ops", action="store_true", help="also print each implementation's cost by SPU MPC kernel")
    ab.add_argument("--out", type=Path, default=Path("runs/bench"))
    ab.set_defaults(func=_cmd_bench_activations)
    tb = bench_sub.add_parser("tls", help="cost of TLS on the party links")
    tb.add_argument("--scale", type=int, default=8, help="problem size multiplier")
    tb.add_argument("--repeats", type=int, default=5)
    tb.add_argument("--networks", default="unshaped,wan")
    tb.add_argument("--out", type=Path, default=Path("runs/bench"))
    tb.set_defaults(func=_cmd_bench_tls)
    sd = bench_sub.add_parser("sd-scale", help="SD U-Net secure step at small scales, extrapolated to SD v1")
    sd.add_argument("--fit", default="tiny,small,medium", help="scales the cost model is fitted on")
    sd.add_argument("--holdout", default="wide", help="measured scales that check the extrapolation")
    sd.add_argument("--target", default="sd-v1", help="scale to extrapolate to (abstract trace only)")
    sd.add_argument("--activations", default="raympc", help="a policy, as for `raympc sample`")
    sd.add_argument("--out", type=Path, default=Path("runs/bench"),
                    help="results; measured scales are cached here and not re-run")
    sd.set_defaults(func=_cmd_bench_sd_scale)
    from .bench.netmodel import FIT_PROFILES, SPEC

    nm = bench_sub.add_parser("netmodel", help="calibrate the analytic network model and check it on held-out profiles")
    nm.add_argument("--spec", type=Path, default=SPEC)
    nm.add_argument("--fit", default=";".join(FIT_PROFILES), help="profiles to fit on, ';'-separated")
    nm.add_argument("--install", action="store_true", help="make the fit the default calibration")
    nm.add_argument("--out", type=Path, default=Path("runs/bench/netmodel"), help="sweep results (resumable)")
    nm.set_defaults(func=_cmd_bench_netmodel)
    ss = bench_sub.add_parser("sweep-scale", help="parallel efficiency of a sweep on a 3-node emulated cluster (root)")
    ss.add_argument("--points", type=int, default=6)
    ss.add_argument("--steps", type=int, default=4)
    ss.add_argument("--network", default="wan")
    ss.add_argument("--out", type=Path, default=Path("runs/bench/sweep-scale"))
    ss.add_argument("--shared-cores", action="store_true",
                    help="let the emulated nodes share all cores (default: each gets cores/3 through a cgroup quota)")
    ss.set_defaults(func=_cmd_bench_sweep_scale)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (RaympcError, ShapingError, ProfileError) as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
