"""`raympc record-inputs`: a shipped U-Net's activation inputs, recorded during plaintext sampling."""

from __future__ import annotations

import argparse
from pathlib import Path

from raympc.commands.common import Subparsers
from workloads.record_inputs import MODELS, record_inputs


def register(sub: Subparsers) -> None:
    p = sub.add_parser("record-inputs", help="record a shipped U-Net's activation inputs during plaintext sampling")
    p.add_argument("--out", type=Path, default=Path("runs/inputs"), help="directory for ACTIVATION.npy files")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", choices=MODELS, default="ddpm-mnist",
                   help="which shipped U-Net to run: its SiLU or Mish inputs and its attention logits are recorded "
                        "(sd-unet: one step with random weights, a softmax-N.npy per row length)")
    p.add_argument("--scale", default="medium", help="the SD U-Net's scale (sd-unet only)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    summary = record_inputs(args.out, steps=args.steps, batch=args.batch, seed=args.seed, model=args.model,
                            scale=args.scale)
    for name, stats in summary.items():
        print(f"{name}: {stats['count']:,} values in [{stats['min']:.2f}, {stats['max']:.2f}] "
              f"(1-99%: {stats['p01']:.2f} .. {stats['p99']:.2f}) -> {args.out / (name + '.npy')}")
