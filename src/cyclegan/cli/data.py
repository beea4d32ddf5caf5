"""`cyclegan data synth|list|download`: the built-in data set, and the official ones downloaded safely."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.download import DATASET_URL_VARIABLE, DATASETS, DEFAULT_DATASET_URL, download_dataset
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
    synth.add_argument("--paired", action="store_true",
                       help="trainA and trainB show the same scenes under the same names (aligned, for pix2pix).")
    synth.set_defaults(handler=run_synth)
    listing = commands.add_parser("list", help="show the official unpaired data sets")
    listing.set_defaults(handler=run_list)
    fetch = commands.add_parser(
        "download", help="download and extract an official data set",
        description="Download an official data set (the zip is kept in the cache and resumes if interrupted) and "
                    "extract it all-or-nothing into ROOT/NAME with trainA, trainB, testA, testB.")
    fetch.add_argument("name", metavar="NAME", help="Data set name, see `cyclegan data list`.")
    fetch.add_argument("--root", default="datasets", help="Folder that receives NAME/ (default: datasets).")
    fetch.add_argument("--base-url", default=None,
                       help=f"Where the zips are served (default: ${DATASET_URL_VARIABLE}, "
                            f"else {DEFAULT_DATASET_URL}).")
    fetch.add_argument("--quiet", action="store_true", help="No progress bar.")
    fetch.set_defaults(handler=run_download)


def run_synth(args: argparse.Namespace) -> int:
    root = write_dataset(Path(args.out), size=args.size, n_train=args.train, n_test=args.test, seed=args.seed,
                         paired=args.paired)
    print(f"wrote the built-in data set to {root} (trainA/trainB {'paired' if args.paired else 'unpaired'}, "
          "testA/testB paired)")
    return 0


def run_list(args: argparse.Namespace) -> int:
    width = max(map(len, DATASETS))
    for name, description in DATASETS.items():
        print(f"{name:<{width}}  {description}")
    return 0


def run_download(args: argparse.Namespace) -> int:
    folder = download_dataset(args.name, Path(args.root), base_url=args.base_url, show_progress=not args.quiet)
    print(folder)
    return 0
