"""`cyclegan data synth`: write the built-in labels<->photos data set in the official folder layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.synthetic import write_dataset


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="data sets", description="Data set tools.")
    commands = parser.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    synth = commands.add_parser(
        "synth", help="write the built-in street-scene labels<->photos data set",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Procedural street scenes: A = flat class-colour label maps, B = textured photos. trainA and "
                    "trainB come from disjoint scenes (unpaired); testA/testB are paired (same file names).")
    synth.add_argument("--out", required=True, help="Folder to write trainA, trainB, testA, testB into.")
    synth.add_argument("--size", type=int, default=128, help="Image side in pixels.")
    synth.add_argument("--train", type=int, default=200, help="Training scenes per domain.")
    synth.add_argument("--test", type=int, default=50, help="Paired test scenes.")
    synth.add_argument("--seed", type=int, default=0, help="Seed of the scenes.")
    synth.set_defaults(handler=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    root = write_dataset(Path(args.out), size=args.size, n_train=args.train, n_test=args.test, seed=args.seed)
    print(f"wrote the built-in data set to {root} (trainA/trainB unpaired, testA/testB paired)")
    return 0
