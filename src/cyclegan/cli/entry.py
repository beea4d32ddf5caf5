"""The `cyclegan` command's entry point: settle the process's OpenMP defaults, then import and run the CLI."""

from __future__ import annotations

from .openmp import set_openmp_defaults


def main(argv: list[str] | None = None) -> int:
    set_openmp_defaults()  # before anything imports torch
    from .main import main as run  # noqa: PLC0415 - imports torch, so only after the defaults are set

    return run(argv)
