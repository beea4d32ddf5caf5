"""The `cyclegan` command: one subcommand per module in this package."""

from __future__ import annotations

import argparse
import logging
import sys

from ..config import ConfigError
from ..data.folders import DatasetError
from ..io.atomic import WriteError
from ..io.checkpoints import CheckpointError
from ..io.download import DownloadError
from ..io.images import ImageError
from ..metrics import MetricError
from ..runtime import keep_freed_memory
from ..training.loop import TrainingError
from ..translate import TranslationError
from . import data, demo, eval, export, pretrained, serve, train, translate

USER_ERRORS = (ConfigError, DatasetError, CheckpointError, ImageError, DownloadError, MetricError, WriteError,
               TranslationError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cyclegan", description="CycleGAN (Zhu et al., ICCV 2017): unpaired image-to-image translation.")
    parser.add_argument("-v", "--verbose", action="store_true", help="Show debug messages.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (demo, train, translate, serve, export, data, pretrained, eval):
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    # The process is the command's own, so it may tune malloc (fewer page faults in CPU training and
    # translation); the library leaves the host process's malloc alone.
    keep_freed_memory()
    try:
        return args.handler(args)
    except USER_ERRORS as error:
        print(f"cyclegan: error: {error}", file=sys.stderr)
        return 2
    except TrainingError as error:  # training failed midway; the message says what was saved
        logging.getLogger(__name__).debug("training failed", exc_info=error)
        print(f"cyclegan: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cyclegan: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
