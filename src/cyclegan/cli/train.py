"""`cyclegan train`: train a CycleGAN from two folders of unpaired images (or the built-in data set), or with
`--model pix2pix` its paired baseline from aligned pairs."""

from __future__ import annotations

import argparse
import logging

from ..config import Config, ConfigError, apply_overrides, config_from_layers, flat_options
from ..config_files import load_config_file
from ..io.run_folder import RunFolder
from ..training.distributed import launched_rank
from ..training.loop import train
from .options import add_config_options, given_options


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a CycleGAN (or pix2pix, or one of the paper's baselines: --model)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train a CycleGAN as the paper does (defaults: LSGAN, lambda 10, identity 0.5, Adam 2e-4, "
                    "100 + 100 epochs, pool of 50), or another registered model with --model (pix2pix and the "
                    "paper's baselines). Options come from the defaults, then the model's own defaults, then "
                    "--config, then flags.")
    parser.add_argument("--config", help="YAML, TOML or JSON file of options: model: NAME, the sections networks, "
                                         "data, train and one named after the model (cyclegan:, pix2pix:), or "
                                         "all flat.")
    parser.add_argument("--resume", action="store_true",
                        help="Continue the run in --run-dir exactly where it stopped (weights, optimisers, "
                             "schedule, image pools, RNG, epoch and iteration).")
    parser.add_argument("--overwrite", action="store_true",
                        help="Start afresh in a --run-dir that already holds a run: delete its config, log, "
                             "checkpoints, samples and report first (without it, such a folder is refused).")
    parser.add_argument("--max-steps", type=positive_int, default=None,
                        help="Stop cleanly after this many iterations, with a checkpoint to --resume from.")
    parser.add_argument("--quiet", action="store_true", help="No progress bar; one log line per epoch.")
    add_config_options(parser)
    parser.set_defaults(handler=run)


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def run(args: argparse.Namespace) -> int:
    given = given_options(args)
    main_process = launched_rank() == 0  # under torchrun, one process speaks for the run
    if not main_process:
        logging.getLogger().setLevel(logging.WARNING)
    layers = [load_config_file(args.config)] if args.config else []
    show_progress = not args.quiet and main_process
    if args.resume:
        if args.overwrite:
            raise ConfigError("--resume continues a run and --overwrite deletes it: give one of them")
        # The config file and the flags, flattened: the saved config takes what may change on resume and refuses
        # a change to anything else (training/setup.py RESUMABLE_OVERRIDES).
        flat = {name: value for layer in [*layers, given] for name, value in flat_options(layer).items()}
        config = apply_overrides(Config(), {"run_dir": flat.get("run_dir", Config().train.run_dir)})
        result = train(config, resume=True, overrides=flat, show_progress=show_progress, max_steps=args.max_steps)
    else:
        config = config_from_layers(*layers, given)  # the chosen model's defaults first (config.model_defaults)
        result = train(config, show_progress=show_progress, max_steps=args.max_steps, overwrite=args.overwrite)
    if not main_process:
        return 0
    state = "stopped" if result.stopped_early else "finished"
    print(f"{state} after {result.epochs_done} epoch(s), {result.steps_done} step(s); "
          f"report: {RunFolder(result.run_dir).report_file}")
    if result.stopped_early:
        print(f"resume with: cyclegan train --resume --run-dir {result.run_dir}")
    return 0

