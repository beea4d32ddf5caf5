"""`cyclegan train`: train a CycleGAN from two folders of unpaired images (or the built-in data set), or with
`--model pix2pix` its paired baseline from aligned pairs."""

from __future__ import annotations

import argparse
import logging

from ..config import Config, apply_overrides, config_from_layers, load_config_file
from ..training.distributed import launched_rank
from ..training.loop import train
from .options import add_config_options, given_options


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a CycleGAN (or pix2pix)", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train a CycleGAN as the paper does (defaults: LSGAN, lambda 10, identity 0.5, Adam 2e-4, "
                    "100 + 100 epochs, pool of 50), or pix2pix with --model pix2pix. Options come from the "
                    "defaults, then the model's own defaults, then --config, then flags.")
    parser.add_argument("--config", help="YAML or TOML file of options (sections model/data/train, or flat).")
    parser.add_argument("--resume", action="store_true",
                        help="Continue the run in --run-dir exactly where it stopped (weights, optimisers, "
                             "schedule, image pools, RNG, epoch and iteration).")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="Stop cleanly after this many iterations, with a checkpoint to --resume from.")
    parser.add_argument("--quiet", action="store_true", help="No progress bar; one log line per epoch.")
    add_config_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    given = given_options(args)
    main_process = launched_rank() == 0  # under torchrun, one process speaks for the run
    if not main_process:
        logging.getLogger().setLevel(logging.WARNING)
    if args.resume:
        run_dir = given.get("train", {}).get("run_dir", Config().train.run_dir)
        config = apply_overrides(Config(), {"run_dir": run_dir})
        flat = {name: value for values in given.values() for name, value in values.items()}
        result = train(config, resume=True, overrides=flat, show_progress=not args.quiet and main_process,
                       max_steps=args.max_steps)
    else:
        layers = [load_config_file(args.config)] if args.config else []
        config = config_from_layers(*layers, given)  # the chosen model's defaults first (config.model_defaults)
        result = train(config, show_progress=not args.quiet and main_process, max_steps=args.max_steps)
    if not main_process:
        return 0
    state = "stopped" if result.stopped_early else "finished"
    print(f"{state} after {result.epochs_done} epoch(s), {result.steps_done} step(s); "
          f"report: {result.run_dir / 'index.html'}")
    if result.stopped_early:
        print(f"resume with: cyclegan train --resume --run-dir {result.run_dir}")
    return 0
