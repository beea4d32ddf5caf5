"""`cyclegan export`: write a model as a safe model file, in the official implementation's format, or as one ONNX
or torch.export file per generator."""

from __future__ import annotations

import argparse

from ..export import FORMATS, export_model


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="export a trained model (safetensors model file, the official .pth files, ONNX or .pt2)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        usage="cyclegan export (MODEL | --pretrained NAME) --out DIR [options]",
        description="safetensors: model.safetensors with both generators and the config (loads with "
                    "`cyclegan translate` / cyclegan.load, no flags). official: latest_net_G_A.pth, "
                    "latest_net_G_B.pth, latest_net_D_A.pth, latest_net_D_B.pth for the official test.py "
                    "(G_A = our gen_ab, D_A = our disc_b); a pix2pix model: latest_net_G.pth, latest_net_D.pth. "
                    "onnx / pt2: gen_ab.onnx and gen_ba.onnx (or .pt2, "
                    "through torch.export), each generator alone with dynamic batch, height and width and its "
                    "metadata (direction, channels, size multiple, min size, value range, layout, config); they run "
                    "without cyclegan (onnx needs pip install \"cyclegan[onnx]\"), and `cyclegan translate "
                    "gen_ab.onnx` uses one with onnxruntime.")
    parser.add_argument("run", nargs="?", default=None, metavar="MODEL",
                        help="Run folder (its latest checkpoint) or a checkpoint or model file; for onnx and pt2 "
                             "also an official generator .pth or official checkpoint folder.")
    parser.add_argument("--pretrained", metavar="NAME", default=None,
                        help="Export an official pretrained model instead (see `cyclegan pretrained list`; onnx and "
                             "pt2 only); downloaded once.")
    parser.add_argument("--base-url", default=None,
                        help="Where --pretrained models are downloaded from (default: the official address, or "
                             "$CYCLEGAN_PRETRAINED_URL).")
    parser.add_argument("--format", choices=FORMATS, default="safetensors", help="What to write.")
    parser.add_argument("--out", required=True, help="Folder to write into.")
    parser.add_argument("--no-discriminators", action="store_true",
                        help="With --format official: write the generators only.")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    written = export_model(args.run, args.out, args.format, with_discriminators=not args.no_discriminators,
                           pretrained=args.pretrained, base_url=args.base_url)
    for path in written:
        print(path)
    return 0
