"""The one progress helper: library code reports progress here; the caller decides whether a person sees it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def progress_bar(iterable: Iterable | None = None, total: int | None = None, description: str = "",
                 enabled: bool = True, unit: str = "it", initial: int = 0) -> Any:
    """A tqdm bar on stderr showing count, rate and ETA; with enabled=False it shows nothing but still iterates."""
    return tqdm(iterable, total=total, desc=description, disable=not enabled, unit=unit, initial=initial,
                dynamic_ncols=True, leave=True)


def format_duration(seconds: float) -> str:
    """1:02:03 style, for the whole run's ETA beside tqdm's per-epoch one."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"
