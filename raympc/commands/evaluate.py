"""`raympc evaluate`: plaintext sample quality of a shipped MNIST U-Net, recorded in its sidecar."""

from __future__ import annotations

import argparse

from raympc.commands.common import Subparsers, make_console, policy
from workloads import evaluate


def register(sub: Subparsers) -> None:
    p = sub.add_parser("evaluate", help="plaintext sample quality of a shipped MNIST U-Net (class accuracy, "
                                        "FID proxy), recorded in its weights sidecar")
    p.add_argument("name", nargs="?", default="ddpm-mnist", help="weights name in workloads/weights/")
    p.add_argument("--steps", type=int, default=evaluate.STEPS, help="DDIM steps")
    p.add_argument("--per-class", type=int, default=evaluate.PER_CLASS, help="digits drawn per class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-record", dest="record", action="store_false", help="print only; leave the sidecar alone")
    p.add_argument("--activations", type=policy, default=None,
                   help="also sample with an implementation's forms in the clear (raympc, or mish=raympc "
                        "for one activation) and compare with the model's own; never recorded")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    console = make_console()
    record = args.record and args.activations is None  # the sidecar holds the model's own quality only
    sample = evaluate.record_plaintext_quality if record else evaluate.plaintext_quality
    extra = {} if args.activations is None else {"activations": args.activations}
    with console.status(f"sampling {args.per_class} digits per class from {args.name} in plaintext..."):
        q = sample(args.name, steps=args.steps, per_class=args.per_class, seed=args.seed, **extra)
    console.print(f"{args.name}: {evaluate.summary(q)}"
                  + (f" (recorded in workloads/weights/{args.name}.json)" if record else ""))
