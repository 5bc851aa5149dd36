"""`raympc train`: train the shipped models in plaintext (the MNIST U-Net or the classifier)."""

from __future__ import annotations

import argparse

from raympc.commands.common import Subparsers, make_console
from workloads import train
from workloads.unet import UNetConfig


def register(sub: Subparsers) -> None:
    p = sub.add_parser("train", help="train the shipped models (plaintext): the MNIST U-Net or the classifier")
    p.add_argument("what", choices=["mnist", "classifier"])
    p.add_argument("--steps", type=int, default=3000, help="optimizer steps (mnist)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    p.add_argument("--channels", type=int, default=16, help="U-Net base channels (mnist)")
    p.add_argument("--activation", choices=["silu", "mish"], default="silu")
    p.add_argument("--epochs", type=int, default=2, help="epochs (classifier)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default=None, help="weights name in workloads/weights/")
    p.add_argument("--resume", default=None, help="continue from these saved weights (mnist)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    console = make_console()
    if args.what == "classifier":
        train.train_classifier(epochs=args.epochs, seed=args.seed, console=console)
        return
    recipe = train.DiffusionRecipe(steps=args.steps, batch=args.batch, seed=args.seed, lr=args.lr,
                                   model=UNetConfig(channels=args.channels, activation=args.activation))
    default_name = "ddpm-mnist" if args.activation == "silu" else f"ddpm-mnist-{args.activation}"
    train.train_diffusion(recipe, name=args.name or default_name, console=console, resume=args.resume)
