"""`cyclegan pretrained list|download`: the official pretrained generators, cached locally."""

from __future__ import annotations

import argparse

from ..io.download import cache_dir
from ..pretrained import DEFAULT_PRETRAINED_URL, PRETRAINED, PRETRAINED_URL_VARIABLE, is_cached, pretrained_file


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("pretrained", help="official pretrained generators",
                                   description="The official pretrained CycleGAN generators (resnet_9blocks, "
                                               "instance norm, ngf 64), downloaded into the cache.")
    commands = parser.add_subparsers(dest="pretrained_command", required=True, metavar="COMMAND")
    listing = commands.add_parser("list", help="show the official models and which are cached")
    listing.set_defaults(handler=run_list)
    fetch = commands.add_parser(
        "download", help="download one model into the cache and print its path",
        description="Download an official generator into the cache ($CYCLEGAN_CACHE, else $XDG_CACHE_HOME/cyclegan,"
                    " else ~/.cache/cyclegan). An interrupted download resumes when run again.")
    fetch.add_argument("name", metavar="NAME", help="Model name, see `cyclegan pretrained list`.")
    fetch.add_argument("--base-url", default=None,
                       help=f"Where the .pth files are served (default: ${PRETRAINED_URL_VARIABLE}, "
                            f"else {DEFAULT_PRETRAINED_URL}).")
    fetch.add_argument("--quiet", action="store_true", help="No progress bar.")
    fetch.set_defaults(handler=run_download)


def run_list(args: argparse.Namespace) -> int:
    width = max(map(len, PRETRAINED))
    print(f"{'NAME':<{width}}  {'CACHED':<6}  TRANSLATES")
    for name, description in PRETRAINED.items():
        mark = "yes" if is_cached(name) else ""
        print(f"{name:<{width}}  {mark:<6}  {description}")
    print(f"\ncache: {cache_dir() / 'pretrained'}; fetch one with `cyclegan pretrained download NAME`")
    return 0


def run_download(args: argparse.Namespace) -> int:
    print(pretrained_file(args.name, base_url=args.base_url, show_progress=not args.quiet))
    return 0
