"""`cyclegan translate`: translate image files, folders or globs with a trained model."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..io.images import expand_inputs
from ..report.html import write_translation_page
from ..translate import Translator


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "translate", help="translate images with a trained model",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Translate every image given (files, folders, globs; any size) and write PNGs plus an HTML "
                    "page of inputs beside outputs.")
    parser.add_argument("model", help="Run folder (uses its latest checkpoint) or a checkpoint file.")
    parser.add_argument("inputs", nargs="+", help="Image files, folders (searched recursively) or glob patterns.")
    parser.add_argument("--direction", choices=("AtoB", "BtoA"), default="AtoB",
                        help="AtoB uses G (A -> B); BtoA uses F (B -> A).")
    parser.add_argument("--out", default="translated", help="Output folder.")
    parser.add_argument("--resize", type=int, default=None,
                        help="Scale each image's shorter side to this many pixels first (default: keep the size).")
    parser.add_argument("--batch-size", type=int, default=4, help="Images translated together.")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps.")
    parser.add_argument("--quiet", action="store_true", help="No progress bar.")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    paths = expand_inputs(args.inputs)
    translator = Translator.load(args.model, args.device)
    out = Path(args.out)
    pairs = translator.translate_files(paths, out, args.direction, args.resize, args.batch_size,
                                       show_progress=not args.quiet)
    page = write_translation_page(pairs, out / "index.html", f"{args.model}: {args.direction}")
    print(f"translated {len(pairs)} image(s) into {out}; page: {page}")
    return 0
