"""`cyclegan demo`: the main job on the built-in data set (train, translate the test images, report)."""

from __future__ import annotations

import argparse

from ..io.run_folder import RunFolder
from ..quickstart import DEMO_OPTIONS, demo_config, run_demo


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="train on the built-in data set, translate its test images and write the report",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="The quick start: a small CycleGAN on the built-in labels<->photos street scenes "
                    f"({DEMO_OPTIONS['builtin_size']} px), a few minutes on a CPU.")
    parser.add_argument("--run-dir", default="runs/demo", help="Run folder to write (resumed if it exists).")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"Total epochs (default: {DEMO_OPTIONS['n_epochs'] + DEMO_OPTIONS['n_epochs_decay']};"
                             " the last 40%% decay the learning rate).")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps.")
    parser.add_argument("--quiet", action="store_true", help="No progress bars.")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    overrides = {"device": args.device}
    if args.epochs is not None:
        decay = args.epochs * 2 // 5
        overrides.update(n_epochs=args.epochs - decay, n_epochs_decay=decay)
    result = run_demo(demo_config(args.run_dir, **overrides), show_progress=not args.quiet)
    print("mean L1 to the paired ground truth of the test split (lower is better):")
    print(f"  {'direction':<26}{'trained':>9}{'untrained':>11}")
    for direction, label in (("AtoB", "A->B labels -> photos"), ("BtoA", "B->A photos -> labels")):
        score = result.scores[direction]
        print(f"  {label:<26}{score['trained']:>9.3f}{score['untrained']:>11.3f}")
    run = RunFolder(result.run_dir)
    print(f"report: {run.report_file}")
    print(f"translations: {run.translations_page}")
    return 0
