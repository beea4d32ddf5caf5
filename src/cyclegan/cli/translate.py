"""`cyclegan translate`: translate image files, folders or globs with a trained or pretrained model."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import ConfigError
from ..io.images import expand_inputs
from ..report.html import write_translation_page
from ..translate import Translator


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "translate", help="translate images with a trained or pretrained model",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        usage="cyclegan translate (MODEL | --pretrained NAME) INPUT... [options]",
        description="Translate every image given (files, folders, globs; any size) and write PNGs plus an HTML "
                    "page of inputs beside outputs. MODEL is a run folder, a checkpoint or model file of ours, an "
                    "official generator .pth, or an official checkpoint folder.")
    parser.add_argument("items", nargs="+", metavar="MODEL INPUT",
                        help="The model (unless --pretrained is given), then image files, folders (searched "
                             "recursively) or glob patterns.")
    parser.add_argument("--pretrained", metavar="NAME", default=None,
                        help="Use an official pretrained model (see `cyclegan pretrained list`); downloaded once.")
    parser.add_argument("--base-url", default=None,
                        help="Where --pretrained models are downloaded from (default: the official address, or "
                             "$CYCLEGAN_PRETRAINED_URL).")
    parser.add_argument("--direction", choices=("AtoB", "BtoA"), default="AtoB",
                        help="AtoB uses G (A -> B); BtoA uses F (B -> A).")
    parser.add_argument("--out", default="translated", help="Output folder.")
    parser.add_argument("--resize", type=int, default=None,
                        help="Scale each image's shorter side to this many pixels first (default: keep the size).")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="Images translated together (default: 1 on the CPU, the fastest there; 4 on a GPU).")
    parser.add_argument("--exact-convolutions", action="store_true",
                        help="On the CPU, use oneDNN's direct convolutions only, not NNPACK's Winograd/FFT ones "
                             "(2x faster for the ResNet's 3x3 layers, equal up to float rounding).")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps.")
    parser.add_argument("--quiet", action="store_true", help="No progress bar.")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.pretrained:
        model_name, inputs = f"pretrained {args.pretrained}", args.items
    else:
        model_name, inputs = args.items[0], args.items[1:]
        if not inputs:
            raise ConfigError("give the model and at least one input image, folder or glob")
    paths = expand_inputs(inputs)
    if args.pretrained:
        translator = Translator.from_pretrained(args.pretrained, args.base_url, args.device,
                                                show_progress=not args.quiet)
    else:
        translator = Translator.load(model_name, args.device)
    translator.set_fast_convolutions(not args.exact_convolutions)
    out = Path(args.out)
    pairs = translator.translate_files(paths, out, args.direction, args.resize, args.batch_size,
                                       show_progress=not args.quiet)
    page = write_translation_page(pairs, out / "index.html", f"{model_name}: {args.direction}")
    print(f"translated {len(pairs)} image(s) into {out}; page: {page}")
    return 0
