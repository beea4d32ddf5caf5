"""Two runs of `paper_tables.py` side by side (e.g. float32 and bf16 training): for every row, direction and score,
each run's mean ± sd over its seeds, and whether the two means differ by more than the seed spread (the sum of
the two standard deviations, the rule paper_tables uses against CycleGAN).

    python benchmarks/compare_tables.py benchmarks/results/small/tables.json benchmarks/results/small_bf16/tables.json

Prints a markdown table and a verdict, and writes them as JSON beside the second file (comparison.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

METRICS = ("pixel_accuracy", "class_accuracy", "mean_iou")
DIRECTIONS = {"AtoB": "labels -> photo", "BtoA": "photo -> labels"}


def summaries(path: Path) -> tuple[dict, dict[tuple[str, str, str], tuple[float, float]]]:
    """The run's record and, per (row, direction, metric), the mean and sample sd over its seeds."""
    record = json.loads(path.read_text())
    values: dict[tuple[str, str, str], list[float]] = {}
    for result in record["results"]:
        for metric in METRICS:
            values.setdefault((result["name"], result["direction"], metric), []).append(result["scores"][metric])
    return record, {key: (statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0)
                    for key, v in values.items()}


def compare(first: Path, second: Path) -> dict:
    (record_a, a), (record_b, b) = summaries(first), summaries(second)
    rows = []
    for key in (key for key in a if key in b):
        (mean_a, sd_a), (mean_b, sd_b) = a[key], b[key]
        rows.append({"name": key[0], "direction": key[1], "metric": key[2], "first": [mean_a, sd_a],
                     "second": [mean_b, sd_b], "difference": mean_b - mean_a,
                     "beyond_spread": abs(mean_b - mean_a) > sd_a + sd_b})
    return {"first": {"path": str(first), "precision": record_a.get("precision"), "seeds": record_a.get("seeds")},
            "second": {"path": str(second), "precision": record_b.get("precision"), "seeds": record_b.get("seeds")},
            "rows": rows, "beyond_spread": sum(row["beyond_spread"] for row in rows), "compared": len(rows)}


def markdown(comparison: dict) -> str:
    first, second = comparison["first"]["precision"], comparison["second"]["precision"]
    lines = [f"| Row | Direction | Score | {first} | {second} | difference | beyond the seed spread |",
             "|---|---|---|---|---|---|---|"]
    for row in comparison["rows"]:
        lines.append(f"| {row['name']} | {DIRECTIONS.get(row['direction'], row['direction'])} | {row['metric']} | "
                     f"{row['first'][0]:.2f} ± {row['first'][1]:.2f} | {row['second'][0]:.2f} ± "
                     f"{row['second'][1]:.2f} | {row['difference']:+.2f} | {'yes' if row['beyond_spread'] else 'no'} |")
    lines.append("")
    lines.append(f"{comparison['beyond_spread']} of {comparison['compared']} scores differ by more than the seed "
                 f"spread between {first} and {second} training.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path, help="tables.json of the first run (e.g. float32).")
    parser.add_argument("second", type=Path, help="tables.json of the second run (e.g. bf16).")
    args = parser.parse_args(argv)
    for path in (args.first, args.second):
        if not path.is_file():
            parser.error(f"{path} does not exist; give the tables.json that paper_tables.py wrote")
    comparison = compare(args.first, args.second)
    text = markdown(comparison)
    (args.second.parent / "comparison.json").write_text(json.dumps(comparison, indent=2))
    (args.second.parent / "comparison.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
