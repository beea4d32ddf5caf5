"""`cyclegan eval`: score generated images (paired metrics, segmentation scores, FID/KID) and write JSON."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_write_text
from ..metrics.evaluate import evaluate, format_table
from ..metrics.registry import aliases, metric_names, parse_metric_names


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="score generated images: L1/PSNR/SSIM, segmentation scores, FID/KID",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        usage="cyclegan eval GENERATED [--real DIR] [--labels DIR --palette FILE] [options]",
        description="Score a folder of generated images with the metrics that fit what is given: L1, PSNR and "
                    "SSIM against same-named files in --real; per-pixel accuracy, per-class accuracy and class IoU "
                    "of generated label maps against --labels; FID and KID against the images in --real (needs "
                    "the 'metrics' extra: pip install 'cyclegan[metrics]'). Prints a table and writes JSON.")
    parser.add_argument("generated", metavar="GENERATED", help="Folder of generated images.")
    parser.add_argument("--real", default=None,
                        help="Folder of real images: ground truth for paired metrics (same file names) and the "
                             "reference set of FID/KID.")
    parser.add_argument("--labels", default=None,
                        help="Folder of ground-truth colour label images (same file names as GENERATED).")
    parser.add_argument("--palette", default=None,
                        help="The data set's palette.json (default: the one in or above --labels).")
    parser.add_argument("--fcn", default=None, metavar="DATAROOT",
                        help="GENERATED are photos made from the --labels maps: give the FCN score (paper Sec. 5.1.2) "
                             "with a scorer trained once on DATAROOT's real photo/label pairs (the built-in data set "
                             "or a folder with palette.json).")
    parser.add_argument("--metrics", default=None,
                        help=f"Comma-separated subset of {','.join(metric_names())} ("
                             + ", ".join(f"'{alias}' = {','.join(names)}" for alias, names in aliases().items())
                             + "); those named must be computable (default: every metric that fits).")
    parser.add_argument("--inception-weights", default=None, metavar="PATH",
                        help="FID Inception-v3 weights file pt_inception-2015-12-05-6726825d.pth (default: "
                             "$CYCLEGAN_INCEPTION_WEIGHTS, else downloaded once into the cache).")
    parser.add_argument("--out", default=None,
                        help="JSON file to write (default: metrics.json inside GENERATED).")
    parser.add_argument("--batch-size", type=int, default=32, help="Images per Inception batch.")
    parser.add_argument("--device", default="cpu", help="Device of the Inception network: cpu, cuda, cuda:N, mps.")
    parser.add_argument("--kid-subsets", type=int, default=100, help="Random subsets averaged by KID.")
    parser.add_argument("--kid-subset-size", type=int, default=1000,
                        help="Images per KID subset (capped at the smaller folder's count).")
    parser.add_argument("--quiet", action="store_true", help="No progress bar.")
    parser.set_defaults(handler=run)


def _strict_json(value: Any) -> Any:
    """JSON has no inf/NaN: write them as null (PSNR of identical images is infinite)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _strict_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_strict_json(item) for item in value]
    return value


def run(args: argparse.Namespace) -> int:
    metrics = parse_metric_names(args.metrics) if args.metrics else None
    results = evaluate(args.generated, real=args.real, labels_truth=args.labels, palette=args.palette,
                       inception_weights=args.inception_weights, metrics=metrics, batch_size=args.batch_size,
                       device=args.device, kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size,
                       show_progress=not args.quiet, fcn_dataroot=args.fcn)
    generated = Path(args.generated)
    out = Path(args.out) if args.out else (generated if generated.is_dir() else generated.parent) / "metrics.json"
    atomic_write_text(out, json.dumps(_strict_json(results), indent=2, allow_nan=False) + "\n")
    print(format_table(results))
    print(f"results written to {out}")
    return 0
