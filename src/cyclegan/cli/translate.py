"""`cyclegan translate`: translate image files, folders or globs with a trained or pretrained model."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from PIL import Image

from ..config import PRECISIONS, ConfigError
from ..engines import DEFAULT_ENGINE, ENGINES
from ..io.images import ImageError, collect_inputs, printable_path
from ..report.html import write_translation_page
from ..tiling import default_max_memory
from ..translate import FileOutcome, Translator

EPILOG = """\
outputs: one PNG per input under --out. An image found in a folder given as INPUT keeps its path below that
folder (photos/a/x.jpg from INPUT photos -> OUT/a/x.png; a glob keeps the path below its wildcard-free
leading folders); a file given directly keeps its name. Where two outputs would share a name (compared
case-insensitively) the later ones are numbered: x.png, x_1.png, x_2.png, ..., never taking a name another
output wants. --out may be a folder that holds inputs, but nothing is written if an output would replace an
input image (also through links): choose another --out then. OUT/index.html shows each input beside its
output and lists the inputs that were not translated; it is written also when some fail or on Ctrl-C.

exit status: 0 every image translated; 1 some inputs could not be read or written (the rest are translated
and every failure is listed on stderr at the end); 2 bad arguments, a model without the --direction asked
for, an output that would overwrite an input (nothing written), or, with --strict, the first failure;
130 interrupted.
"""


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024**2, "mb": 1000**2, "mib": 1024**2,
               "g": 1024**3, "gb": 1000**3, "gib": 1024**3, "t": 1024**4, "tb": 1000**4, "tib": 1024**4}


def parse_size(text: str) -> int:
    """A size in bytes from text such as 2GB (10**9 bytes each), 512MiB or 3G (2**30 each), 1.5g, 1000000."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS or float(match.group(1)) * _SIZE_UNITS[unit] < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; write e.g. 2GB, 512MiB, 3G or a number of bytes")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


class _EpilogKeptFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Option defaults shown, and the epilog's paragraphs kept as written."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "translate", help="translate images with a trained or pretrained model",
        formatter_class=_EpilogKeptFormatter,
        usage="cyclegan translate (MODEL | --pretrained NAME) INPUT... [options]",
        description="Translate every image given (files, folders, globs; any size) and write PNGs plus an HTML "
                    "page of inputs beside outputs. MODEL is a run folder, a checkpoint or model file of ours, an "
                    "official generator .pth, an official checkpoint folder, or a generator exported as .onnx (which "
                    "translates its one direction with onnxruntime).", epilog=EPILOG)
    parser.add_argument("items", nargs="+", metavar="MODEL INPUT",
                        help="The model (unless --pretrained is given), then image files, folders (searched "
                             "recursively, following symlinked sub-folders; hidden ones skipped) or glob "
                             "patterns.")
    parser.add_argument("--pretrained", metavar="NAME", default=None,
                        help="Use an official pretrained model (see `cyclegan pretrained list`); downloaded once.")
    parser.add_argument("--base-url", default=None,
                        help="Where --pretrained models are downloaded from (default: the official address, or "
                             "$CYCLEGAN_PRETRAINED_URL).")
    parser.add_argument("--direction", choices=("AtoB", "BtoA"), default="AtoB",
                        help="AtoB uses G (A -> B); BtoA uses F (B -> A). A pix2pix model or an official "
                             "single-generator file has AtoB only.")
    parser.add_argument("--out", default="translated",
                        help="Output folder (may hold inputs; none is ever overwritten, see below).")
    parser.add_argument("--resize", type=_at_least_one, default=None,
                        help="Scale each image's shorter side to this many pixels first (default: keep the size).")
    parser.add_argument("--batch-size", type=_at_least_one, default=None,
                        help="Images translated together, at least 1 (default: 1 on the CPU, the fastest there; "
                             "4 on a GPU).")
    parser.add_argument("--strict", action="store_true",
                        help="Stop at the first input that cannot be read or written (exit 2) instead of "
                             "translating the rest and listing the failures at the end (exit 1).")
    _add_engine_options(parser)
    _add_memory_options(parser)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps.")
    parser.add_argument("--quiet", action="store_true", help="No progress bar.")
    parser.set_defaults(handler=run)


def _add_engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exact-convolutions", action="store_true",
                        help="On the CPU, use oneDNN's direct convolutions only. By default a CPU without "
                             "AVX-512 runs the ResNet's stride-1 convolutions through NNPACK's Winograd/FFT kernels "
                             "(faster there, equal up to float rounding); with AVX-512 oneDNN's are the faster "
                             "ones and run either way (nets/convolutions.py fast_kernel). Implies --engine torch "
                             "unless another engine is named.")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="float32: exact. bf16 (CPUs with AVX512-BF16 or AMX, GPUs) or fp16 (GPUs): autocast, "
                             "faster, outputs a few 8-bit steps off float32 (README, Speed).")
    parser.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE,
                        help="What runs the generator: torch (PyTorch), onnxruntime (the CPU; the model is exported "
                             "to ONNX on first use and cached; needs pip install \"cyclegan[onnx]\"), or auto, the "
                             "fastest within one 8-bit step of exact: onnxruntime where installed and the device is "
                             "a CPU with AVX-512, else torch ($CYCLEGAN_ENGINE sets what auto means). An .onnx "
                             "MODEL always runs on onnxruntime.")


def _add_memory_options(parser: argparse.ArgumentParser) -> None:
    """--max-memory, --tile, --scratch-dir, --max-pixels: exact tiled translation of large images."""
    parser.add_argument("--max-memory", type=parse_size, default=None, metavar="SIZE",
                        help="Memory for one image's translation (its feature maps; the program itself takes a few "
                             "hundred MB more), e.g. 2GB, 512MiB, 3G. An image whose whole-image translation would "
                             "need more is translated in exact tiles, equal to whole-image translation (default: "
                             "half of this machine's physical memory).")
    parser.add_argument("--tile", type=_at_least_one, default=None, metavar="ROWS",
                        help="Translate every image in exact tiles: bands of this many output rows (default: "
                             "only images over --max-memory, in bands as tall as fit).")
    parser.add_argument("--scratch-dir", default=None, metavar="DIR",
                        help="Folder for tiled translation's scratch files when its maps do not fit in "
                             "--max-memory (default: the system's temporary folder, $TMPDIR); they are removed at "
                             "the end, also after an error or Ctrl-C.")
    parser.add_argument("--max-pixels", type=_at_least_one, default=None, metavar="N",
                        help="Set Pillow's guard against decompression bombs to N pixels: it refuses an image of "
                             "more than twice that (default: Pillow's N, "
                             f"{Image.MAX_IMAGE_PIXELS}: images over {2 * Image.MAX_IMAGE_PIXELS} pixels, about "
                             f"{int((2 * Image.MAX_IMAGE_PIXELS) ** 0.5)} a side, are refused).")


def run(args: argparse.Namespace) -> int:
    guard = Image.MAX_IMAGE_PIXELS
    if args.max_pixels is not None:
        Image.MAX_IMAGE_PIXELS = args.max_pixels  # Pillow's own global; restored after this run
    try:
        return _run(args)
    finally:
        Image.MAX_IMAGE_PIXELS = guard


def _run(args: argparse.Namespace) -> int:
    if args.pretrained:
        model_name, items = f"pretrained {args.pretrained}", args.items
    else:
        model_name, items = args.items[0], args.items[1:]
        if not items:
            raise ConfigError("give the model and at least one input image, folder or glob")
    inputs = collect_inputs(items)
    if args.exact_convolutions and args.engine == "auto":
        args.engine = "torch"  # oneDNN's direct convolutions are PyTorch's
    if args.pretrained:
        translator = Translator.from_pretrained(args.pretrained, args.base_url, args.device,
                                                show_progress=not args.quiet, engine=args.engine)
    else:
        translator = Translator.load(model_name, args.device, args.engine)
    translator.set_fast_convolutions(not args.exact_convolutions).set_precision(args.precision)
    out = Path(args.out)
    # Checks the direction and that no input is overwritten before anything (the page included) is written.
    job = translator.translate_each([found.path for found in inputs], out, args.direction, args.resize,
                                    args.batch_size, show_progress=not args.quiet,
                                    names=[found.relative for found in inputs], strict=args.strict,
                                    max_memory=args.max_memory or default_max_memory(), tile=args.tile,
                                    scratch_dir=args.scratch_dir)
    outcomes: list[FileOutcome] = []
    stopped: str | None = "Stopped by an error"
    try:
        for outcome in job:
            outcomes.append(outcome)
        stopped = None
    except ImageError:
        stopped = "Stopped at the first failure (--strict)"  # cli.main prints the failure
        raise
    except KeyboardInterrupt:
        stopped = "Interrupted"
        raise
    finally:  # also after --strict's first failure or Ctrl-C: a page for what was done
        page = _write_page(outcomes, len(inputs), out / "index.html", f"{model_name}: {args.direction}", stopped)
        if not args.strict:
            _print_failures(outcomes, len(inputs))
    done = sum(outcome.output is not None for outcome in outcomes)
    print(f"translated {done} of {len(inputs)} image(s) into {printable_path(out)}; page: {printable_path(page)}")
    return 0 if done == len(inputs) else 1


def _write_page(outcomes: list[FileOutcome], total: int, page: Path, title: str, stopped: str | None) -> Path:
    pairs = [(outcome.source, outcome.output) for outcome in outcomes if outcome.output is not None]
    failures = [(outcome.source, outcome.error or "") for outcome in outcomes if outcome.output is None]
    note = None if stopped is None else f"{stopped} after {len(outcomes)} of {total} input(s)."
    return write_translation_page(pairs, page, title, failures, note)


def _print_failures(outcomes: list[FileOutcome], total: int) -> None:
    failures = [outcome for outcome in outcomes if outcome.output is None]
    if failures:
        print(f"cyclegan: {len(failures)} of {total} image(s) not translated:", file=sys.stderr)
        for failure in failures:
            print(f"  {printable_path(failure.error or failure.source)}", file=sys.stderr)
