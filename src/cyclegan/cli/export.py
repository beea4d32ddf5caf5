"""`cyclegan export`: write a run's model as a safe model file or in the official implementation's format."""

from __future__ import annotations

import argparse

from ..export import FORMATS, export_model


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="export a trained model (safetensors model file, or the official .pth files)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="safetensors: model.safetensors with both generators and the config (loads with "
                    "`cyclegan translate` / cyclegan.load, no flags). official: latest_net_G_A.pth, "
                    "latest_net_G_B.pth, latest_net_D_A.pth, latest_net_D_B.pth for the official test.py "
                    "(G_A = our gen_ab, D_A = our disc_b).")
    parser.add_argument("run", help="Run folder (its latest checkpoint) or a checkpoint file.")
    parser.add_argument("--format", choices=FORMATS, default="safetensors", help="What to write.")
    parser.add_argument("--out", required=True, help="Folder to write into.")
    parser.add_argument("--no-discriminators", action="store_true",
                        help="With --format official: write the generators only.")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    written = export_model(args.run, args.out, args.format, with_discriminators=not args.no_discriminators)
    for path in written:
        print(path)
    return 0
