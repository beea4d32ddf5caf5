"""The metric registry: each metric declares what it needs and the table rows it adds; one rule skips or raises.

A metric here is one computation that fills one section of the results (paired L1/PSNR/SSIM are one metric with
three names, FID/KID another with two). `evaluate` loops over `METRICS` in order; the CLI's `--metrics` choices
and the table come from the same entries, so a new metric is one `register_metric` call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import MetricError

logger = logging.getLogger(__name__)

# The inputs a metric may need, as the command line spells them (Python callers pass the matching arguments).
FLAGS = {"real": "--real", "labels": "--labels", "palette": "--palette", "fcn_dataroot": "--fcn DATAROOT"}


@dataclass(frozen=True)
class Inputs:
    """What `evaluate` was given, resolved once; each metric reads the fields it declares in `Metric.needs`."""

    generated: Path
    real: Path | None = None
    labels: Path | None = None
    palette: Path | None = None  # given, else palette.json in or above `labels`
    fcn_dataroot: Path | None = None
    inception_weights: Path | None = None  # None: $CYCLEGAN_INCEPTION_WEIGHTS, else the cache
    batch_size: int = 32
    device: str = "cpu"
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    show_progress: bool = False
    not_found: Mapping[str, str] = field(default_factory=dict)  # input -> where it was looked for in vain

    def given(self) -> frozenset[str]:
        """The names (keys of FLAGS) of the inputs that are present."""
        present = {"real": self.real, "labels": self.labels, "palette": self.palette,
                   "fcn_dataroot": self.fcn_dataroot}
        return frozenset(name for name, value in present.items() if value is not None)


@dataclass(frozen=True)
class Row:
    """One line of the table: what was measured, its value, over how many images, and how it is printed."""

    label: str
    value: float | None
    images: str
    digits: int = 4
    spread: float | None = None  # printed as "value ± spread" (KID's standard deviation over subsets)


def _ready(inputs: Inputs) -> str | None:
    return None


def _no_caveats(section: dict[str, Any]) -> list[str]:
    return []


@dataclass(frozen=True)
class Metric:
    """A registry entry: one computation, the names it answers to, what it needs and the rows it adds."""

    section: str  # its key in the results, e.g. "paired"
    names: tuple[str, ...]  # what `metrics=` / --metrics may name; asking for any runs the computation once
    title: str  # plural, for messages: "paired metrics"
    needs: Mapping[str, str]  # input (a key of FLAGS) -> what it must be, e.g. {"real": "the ground-truth images"}
    tried_when: tuple[str, ...]  # inputs any of which, given, make the automatic choice try this metric
    compute: Callable[[Inputs, tuple[str, ...]], dict[str, Any]]  # the section, for the names asked for
    rows: Callable[[dict[str, Any]], list[Row]]
    excluded_by: Mapping[str, str] = field(default_factory=dict)  # input -> why, given, it rules this metric out
    ready: Callable[[Inputs], str | None] = _ready  # why it cannot run although its inputs are given, or None
    unavailable: tuple[type[Exception], ...] = ()  # errors of `compute` meaning a resource (weights) is missing
    caveats: Callable[[dict[str, Any]], list[str]] = _no_caveats  # notes on a computed section
    alias: str | None = None  # one name for all of `names`


METRICS: dict[str, Metric] = {}  # by section, in the order of the table


def register_metric(metric: Metric) -> Metric:
    """Add a metric to the registry (its section and names must be new); returns it."""
    taken = set(metric_names()) | set(aliases())
    clash = taken & {*metric.names, *([metric.alias] if metric.alias else [])}
    if metric.section in METRICS or clash:
        raise ValueError(f"metric {metric.section!r} clashes with a registered one ({', '.join(sorted(clash))})")
    if unknown := (set(metric.needs) | set(metric.tried_when) | set(metric.excluded_by)) - set(FLAGS):
        raise ValueError(f"metric {metric.section!r} names unknown inputs {sorted(unknown)}; known: {list(FLAGS)}")
    METRICS[metric.section] = metric
    return metric


def metric_names() -> tuple[str, ...]:
    """Every name `metrics=` accepts besides the aliases, in table order."""
    return tuple(name for metric in METRICS.values() for name in metric.names)


def aliases() -> dict[str, tuple[str, ...]]:
    return {metric.alias: metric.names for metric in METRICS.values() if metric.alias}


def _choices() -> str:
    shown = ", ".join(metric_names())
    return shown + "".join(f" (or {alias!r} for {', '.join(names)})" for alias, names in aliases().items())


def expand_names(names: Iterable[str]) -> set[str]:
    """Metric names with aliases expanded; MetricError for an unknown name or none at all."""
    expanded: set[str] = set()
    for name in (item.strip().lower() for item in names):
        if name in aliases():
            expanded.update(aliases()[name])
        elif name in metric_names():
            expanded.add(name)
        elif name:
            raise MetricError(f"unknown metric {name!r}; choose from {_choices()}")
    if not expanded:
        raise MetricError(f"no metric named; choose from {_choices()}")
    return expanded


def parse_metric_names(text: str) -> set[str]:
    """'l1,psnr,fid' -> {'l1', 'psnr', 'fid'}; an alias such as 'paired' stands for its names."""
    return expand_names(text.split(","))


def _missing(metric: Metric, inputs: Inputs) -> str | None:
    """Why the inputs do not fit `metric`, or None."""
    given = inputs.given()
    for name, why in metric.excluded_by.items():
        if name in given:
            return f"{FLAGS[name]} is given: {why}"
    absent = [name for name in metric.needs if name not in given]
    if not absent:
        return None
    hints = "".join(f"; {inputs.not_found[name]}" for name in absent if name in inputs.not_found)
    return "give " + " and ".join(f"{FLAGS[name]} ({what})" for name, what in metric.needs.items()) + hints


def run_metric(metric: Metric, inputs: Inputs, asked: tuple[str, ...], explicit: bool,
               notes: list[str]) -> dict[str, Any] | None:
    """The one skip-or-raise rule. A metric asked for by name (`explicit`) is computed or raises MetricError saying
    what is missing (errors of `metric.unavailable` propagate as they are). One chosen automatically is tried only
    when an input of its `tried_when` is given and none of `excluded_by`; if it still cannot run it is skipped,
    with a note saying why. Returns the section, or None when skipped.
    """
    given = inputs.given()
    if not explicit and (given.isdisjoint(metric.tried_when) or not given.isdisjoint(metric.excluded_by)):
        return None
    reason = _missing(metric, inputs) or metric.ready(inputs)
    if reason is None:
        try:
            return metric.compute(inputs, asked)
        except metric.unavailable as error:
            if explicit:
                raise
            reason = str(error)
    if explicit:
        raise MetricError(f"{metric.title} cannot be computed: {reason}")
    notes.append(f"{metric.title} skipped: {reason}")
    logger.debug(notes[-1])
    return None


def nothing_fits(notes: list[str]) -> MetricError:
    """The error when the automatic choice found no metric to compute, naming what each one needs."""
    needs = "; ".join(f"{' and '.join(FLAGS[name] for name in metric.needs)} ({metric.title})"
                      for metric in METRICS.values())
    return MetricError(f"no metric fits what was given: give {needs}" + "".join(f"; {note}" for note in notes))
