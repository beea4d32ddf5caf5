"""The paper's Tables 2-5 on the built-in labels<->photos data set, offline, on the CPU.

Every method trains for the same budget with the same generator and discriminator (so the tables compare
objectives, not architectures; CoGAN, whose generators map a latent to an image, has its own DCGAN-style pair),
once per seed (three by default: a GAN amplifies float rounding, so one seed on one CPU cannot order methods),
then is scored as the paper scores Cityscapes (Sec. 5.1.2):

- labels -> photo (A -> B): FCN score, i.e. our small segmentation network, trained on real photo/label pairs, reads
  the generated photo, and its label map is compared with the input labels (Table 2, Table 4);
- photo -> labels (B -> A): the generated label map against the ground truth (Table 3, Table 5).

    python benchmarks/paper_tables.py --preset small --out benchmarks/results/small

writes tables.md (mean ± sd over the seeds, and which differences from CycleGAN exceed the seed spread),
tables.json and figure.png there. Seeded and reproducible. `--preset small`: 600 iterations per method at 64 px;
`--preset large`: 2,000 iterations at 128 px; `--preset smoke`: seconds, for tests. Their measured times per method
are in tables.md: each run's training time as its checkpoint records it, so a table can be made in parts (`--methods`
on the same `--out`, then one call for all rows, which trains only what is missing and reuses finished runs and
their times). Training runs in bf16 autocast where the CPU has AMX (`--precision auto`), else in float32; the
Feature loss + GAN row needs the VGG-16 weights (io/vgg_weights.py) and is marked, not run, without them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cyclegan.config import Config, apply_overrides
from cyclegan.data.synthetic import ensure_builtin
from cyclegan.io.atomic import atomic_write_text
from cyclegan.io.checkpoints import CheckpointError
from cyclegan.io.download import DownloadError
from cyclegan.io.images import image_to_tensor, list_images, load_image
from cyclegan.io.vgg_weights import resolve_vgg16_weights
from cyclegan.metrics.fcn_score import fcn_score, get_scorer
from cyclegan.metrics.segmentation import load_palette, score_label_folders
from cyclegan.report.grids import sample_grid, save_png
from cyclegan.training.loop import train
from cyclegan.translate import Translator

PRESETS = {
    # scenes per domain x epochs = iterations per method
    "smoke": {"builtin_size": 32, "builtin_count": 8, "epochs": (1, 0), "ngf": 4, "ndf": 4, "scorer_steps": 30},
    "small": {"builtin_size": 64, "builtin_count": 100, "epochs": (4, 2), "ngf": 16, "ndf": 32, "scorer_steps": 600},
    "large": {"builtin_size": 128, "builtin_count": 200, "epochs": (5, 5), "ngf": 32, "ndf": 64,
              "scorer_steps": 1200},
}

@dataclass(frozen=True)
class Method:
    """One row: a model with its options; a one-way model (pix2pix) is trained once per direction, as in the
    paper; `needs` names weights without which the row is marked rather than run."""

    name: str
    model: str
    options: dict = field(default_factory=dict)
    direction: str | None = None
    needs: str | None = None

    @property
    def tag(self) -> str:
        objective = self.options.get("objective")
        return "_".join(part for part in (self.model, objective, self.direction) if part)


METHODS = [  # the paper's order of rows: Tables 2-3, then the ablations of Tables 4-5
    Method("CoGAN", "cogan"),
    Method("BiGAN/ALI", "bigan"),
    Method("SimGAN (GAN + L1 to input)", "cyclegan", {"objective": "simgan"}),
    Method("Feature loss + GAN", "feature_gan", needs="VGG-16 weights"),
    Method("CycleGAN (ours)", "cyclegan", {"objective": "full"}),
    Method("pix2pix (paired)", "pix2pix", direction="AtoB"),
    Method("pix2pix (paired)", "pix2pix", direction="BtoA"),
    Method("Cycle alone", "cyclegan", {"objective": "cycle_only"}),
    Method("GAN alone", "cyclegan", {"objective": "gan_only"}),
    Method("GAN + forward cycle", "cyclegan", {"objective": "gan_forward"}),
    Method("GAN + backward cycle", "cyclegan", {"objective": "gan_backward"}),
]
TABLE_2 = ["CoGAN", "BiGAN/ALI", "SimGAN (GAN + L1 to input)", "Feature loss + GAN", "CycleGAN (ours)",
           "pix2pix (paired)"]
TABLE_4 = ["Cycle alone", "GAN alone", "GAN + forward cycle", "GAN + backward cycle", "CycleGAN (ours)"]
METRICS = [("pixel_accuracy", "Per-pixel acc."), ("class_accuracy", "Per-class acc."), ("mean_iou", "Class IOU")]
DEFAULT_SEEDS = (0, 1, 2)


@dataclass
class Result:
    name: str
    direction: str
    seed: int
    scores: dict[str, float]
    seconds: float


def method_config(preset: dict, run_dir: Path, method: Method, seed: int, precision: str,
                  vgg_weights: Path | None = None) -> Config:
    n_epochs, n_decay = preset["epochs"]
    size = preset["builtin_size"]
    options = {
        "model": method.model, "run_dir": str(run_dir), "dataroot": "builtin", "builtin_size": size,
        "builtin_count": preset["builtin_count"], "load_size": size + size // 8, "crop_size": size,
        "gen_arch": "resnet_6blocks", "ngf": preset["ngf"], "ndf": preset["ndf"], "norm": "instance",
        "n_epochs": n_epochs, "n_epochs_decay": n_decay, "num_workers": 0, "seed": seed, "num_samples": 2,
        "save_every": 1000, "precision": precision, **method.options,
    }
    if method.model == "pix2pix":
        options.update(direction=method.direction, gan_mode="lsgan", pool_size=0, dropout=False)
    elif method.model == "cyclegan":
        options.update(lambda_identity=0.0)
    elif method.model == "cogan":  # a latent-to-image generator at the image size (its own architecture)
        options.update(gen_arch=f"dcgan_{size}", norm="batch")
    elif method.model == "feature_gan":
        options.update(vgg_weights=str(vgg_weights))
    return apply_overrides(Config(), options)


def training_precision(asked: str) -> tuple[str, str]:
    """The precision to train in and why: with `auto`, bf16 autocast where the CPU has AMX (where it is about
    2x faster than float32; torch's get_cpu_capability says only AVX512 there), else float32."""
    if asked != "auto":
        return asked, "as asked"
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    return ("bf16", "the CPU has AMX") if amx else ("float32", "the CPU has no AMX")


def available_vgg_weights() -> tuple[Path | None, str | None]:
    """The VGG-16 weights file (given, cached or downloaded now), or None and why not."""
    try:
        return resolve_vgg16_weights(show_progress=sys.stderr.isatty()), None
    except (DownloadError, CheckpointError) as error:
        return None, str(error)


def translate_test(run_dir: Path, data_root: Path, out: Path, directions: list[str], one_way: bool) -> dict[str, Path]:
    """Translate the test split in each direction; a one-way model (pix2pix) was trained with the direction
    swapped in its data, so its single generator does the work."""
    translator = Translator.load(run_dir, device="cpu")
    folders = {}
    for direction in directions:
        source = data_root / ("testA" if direction == "AtoB" else "testB")
        generator = "AtoB" if one_way else direction
        translator.translate_files(list_images(source), out / direction, generator, show_progress=False)
        folders[direction] = out / direction
    return folders


def score(direction: str, generated: Path, data_root: Path, scorer, palette) -> dict[str, float]:
    if direction == "AtoB":  # labels -> photo: FCN score against the input labels
        result = fcn_score(generated, data_root / "testA", scorer)
    else:  # photo -> labels: the generated label map against the ground truth labels
        result = score_label_folders(generated, data_root / "testA", palette)
    return {key: float(result[key]) for key, _ in METRICS}


def spread(results: list[Result], name: str, direction: str, key: str) -> tuple[float, float, int] | None:
    """Mean, sample standard deviation (0 for one seed) and number of seeds of one score of one row."""
    values = [r.scores[key] for r in results if r.name == name and r.direction == direction]
    if not values:
        return None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values)


def markdown_table(title: str, results: list[Result], names: list[str], direction: str,
                   missing: dict[str, str]) -> str:
    lines = [f"**{title}**", "", "| Loss | " + " | ".join(label for _, label in METRICS) + " |",
             "|---" * (len(METRICS) + 1) + "|"]
    for name in names:
        if name in missing:
            lines.append(f"| {name} | " + " | ".join(f"needs {missing[name]}" for _ in METRICS) + " |")
            continue
        cells = [spread(results, name, direction, key) for key, _ in METRICS]
        if cells[0] is not None:
            lines.append(f"| {name} | " + " | ".join(f"{m:.2f} ± {sd:.2f}" for m, sd, _ in cells) + " |")
    return "\n".join(lines)


def differences(results: list[Result], names: list[str], direction: str, reference: str = "CycleGAN (ours)",
                key: str = "mean_iou") -> list[str]:
    """Which rows differ from `reference` in class IoU by more than the seed-to-seed spread: |difference of the
    means| > the sum of the two standard deviations (the mean +- sd intervals do not overlap). A row with one seed
    has no spread, so its difference is given but not judged."""
    base = spread(results, reference, direction, key)
    notes = []
    for name in names:
        other = spread(results, name, direction, key)
        if name == reference or other is None or base is None:
            continue
        gap, band = other[0] - base[0], other[1] + base[1]
        if min(other[2], base[2]) < 2:
            notes.append(f"{name}: {gap:+.2f} class IoU against {reference}: one seed, no spread to judge it by")
            continue
        verdict = "larger than the seed spread" if abs(gap) > band else "within the seed spread"
        notes.append(f"{name}: {gap:+.2f} class IoU against {reference} (spread {band:.2f}): {verdict}")
    return notes


def figure(data_root: Path, outputs: dict[tuple[str, str], Path], count: int, out: Path) -> None:
    """Rows: test images; columns: the input labels, each method's photo, the real photo (A -> B)."""
    names = list(dict.fromkeys(method.name for method in METHODS if (method.name, "AtoB") in outputs))
    rows = []
    for path in list_images(data_root / "testA")[:count]:
        row = [image_to_tensor(load_image(path))]
        row += [image_to_tensor(load_image(outputs[(name, "AtoB")] / f"{path.stem}.png")) for name in names]
        row.append(image_to_tensor(load_image(data_root / "testB" / path.name)))
        rows.append(row)
    save_png(sample_grid(rows, ["input labels", *names, "real photo"], cell_size=128), out)


def run_method(method: Method, seed: int, context: dict) -> tuple[list[Result], dict[str, Path], float]:
    """Train (or resume) one method for one seed, translate the test split and score it."""
    out, data_root = context["out"], context["data_root"]
    run_dir = out / "runs" / f"seed{seed}" / method.tag
    config = method_config(context["preset"], run_dir, method, seed, context["precision"], context["vgg"])
    resume = (run_dir / "checkpoints" / "latest.safetensors").exists()
    trained = train(config, resume=resume, show_progress=sys.stderr.isatty())
    seconds = trained.seconds  # the whole run's training time, also when an earlier call trained it (or part)
    directions = [method.direction] if method.direction else ["AtoB", "BtoA"]
    translated = translate_test(run_dir, data_root, out / "outputs" / f"seed{seed}" / method.tag, directions,
                                method.direction is not None)
    results = [Result(method.name, each, seed, score(each, translated[each], data_root, context["scorer"],
                                                     context["palette"]), seconds) for each in directions]
    print(f"{method.name} ({method.tag}, seed {seed}): {trained.steps_done} steps in {seconds:.0f} s", flush=True)
    return results, translated, seconds


def write_tables(args: argparse.Namespace, context: dict, results: list[Result], missing: dict[str, str],
                 times: dict[str, list[float]], elapsed: float) -> str:
    seconds = {name: statistics.fmean(values) for name, values in times.items()}
    training = sum(sum(values) for values in times.values())
    real = score("AtoB", context["data_root"] / "testB", context["data_root"], context["scorer"], context["palette"])
    tables = "\n\n".join([
        markdown_table("Table 2: FCN scores, labels -> photo", results, TABLE_2, "AtoB", missing),
        markdown_table("Table 3: segmentation scores, photo -> labels", results, TABLE_2, "BtoA", missing),
        markdown_table("Table 4: ablations, FCN scores, labels -> photo", results, TABLE_4, "AtoB", missing),
        markdown_table("Table 5: ablations, segmentation scores, photo -> labels", results, TABLE_4, "BtoA", missing),
        "Differences from CycleGAN, labels -> photo:\n" + "\n".join(
            f"- {line}" for line in differences(results, TABLE_2 + TABLE_4, "AtoB")),
        "Differences from CycleGAN, photo -> labels:\n" + "\n".join(
            f"- {line}" for line in differences(results, TABLE_2 + TABLE_4, "BtoA")),
        "Training time per method and seed (mean): " + ", ".join(
            f"{name} {value / 60:.1f} min" for name, value in seconds.items()),
        "Scorer on real test photos (the instrument's ceiling): "
        + ", ".join(f"{label} {real[key]:.2f}" for key, label in METRICS),
    ])
    cpu = common_cpu()
    header = (f"Preset {args.preset}, seeds {', '.join(map(str, args.seeds))} (mean ± sd over seeds), "
              f"{context['precision']} ({context['precision_why']}), {elapsed / 60:.1f} min on {cpu} "
              f"(the runs' training: {training / 60:.1f} min, some maybe in earlier calls), "
              f"{torch.get_num_threads()} threads, torch {torch.__version__}.\n\n")
    atomic_write_text(args.out / "tables.md", header + tables + "\n")
    atomic_write_text(args.out / "tables.json", json.dumps({
        "preset": args.preset, "seeds": args.seeds, "precision": context["precision"], "seconds": elapsed,
        "training_seconds": training, "machine": cpu, "scorer_on_real": real, "missing": missing,
        "seconds_per_method": seconds,
        "results": [r.__dict__ for r in results]}, indent=2))
    return header + tables


def common_cpu() -> str:
    """The CPU's name and its vector / matrix units, which decide how float32 rounds (the tables say it)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import common

    return f"{common.cpu_model()} ({common.cpu_summary(common.cpu_flags())})"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small", help="Budget and image size.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/small"),
                        help="Folder for runs, tables and figure.")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS),
                        help="Seeds: every method is trained once per seed; tables give mean ± sd.")
    parser.add_argument("--precision", choices=("auto", "float32", "bf16"), default="auto",
                        help="Training arithmetic; auto: bf16 autocast where the CPU has AMX, else float32.")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="Only these rows (names as in the tables; default: all).")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    preset = PRESETS[args.preset]
    started = time.monotonic()
    data_root = ensure_builtin(args.out / "data", preset["builtin_size"], preset["builtin_count"])
    precision, why = training_precision(args.precision)
    context = {"out": args.out, "preset": preset, "data_root": data_root, "palette": load_palette(data_root),
               "scorer": get_scorer(data_root, preset["builtin_size"], steps=preset["scorer_steps"]),
               "precision": precision, "precision_why": why, "vgg": None}
    methods = [m for m in METHODS if args.methods is None or m.name in args.methods]
    missing: dict[str, str] = {}
    if any(m.needs == "VGG-16 weights" for m in methods):
        context["vgg"], problem = available_vgg_weights()
        if problem is not None:
            missing.update({m.name: m.needs for m in methods if m.needs == "VGG-16 weights"})
            print(f"Feature loss + GAN skipped: {problem}", file=sys.stderr)
    results: list[Result] = []
    outputs: dict[tuple[str, str], Path] = {}
    times: dict[str, list[float]] = {}
    for seed in args.seeds:
        for method in (m for m in methods if m.name not in missing):
            found, translated, seconds = run_method(method, seed, context)
            results += found
            times.setdefault(method.name, []).append(seconds)
            if seed == args.seeds[0]:
                outputs.update({(method.name, direction): path for direction, path in translated.items()})
    text = write_tables(args, context, results, missing, times, time.monotonic() - started)
    figure(data_root, outputs, 4, args.out / "figure.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
