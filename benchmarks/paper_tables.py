"""The paper's Tables 2-5 on the built-in labels<->photos data set, offline, on the CPU.

Every method trains for the same budget with the same generator and discriminator (so the tables compare
objectives, not architectures), then is scored as the paper scores Cityscapes (Sec. 5.1.2):

- labels -> photo (A -> B): FCN score, i.e. our small segmentation network, trained on real photo/label pairs, reads
  the generated photo, and its label map is compared with the input labels (Table 2, Table 4);
- photo -> labels (B -> A): the generated label map against the ground truth (Table 3, Table 5).

    python benchmarks/paper_tables.py --preset small --out benchmarks/results/small

writes tables.md, tables.json and figure.png there. Seeded and reproducible. `--preset small`: 600 iterations per
method at 64 px (its time is in tables.md); `--preset large`: 2,000 iterations at 128 px, about 3 hours (an
estimate from the measured 128 px step time; not run yet);
`--preset smoke`: seconds, for tests.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from cyclegan.config import Config, apply_overrides
from cyclegan.data.synthetic import ensure_builtin
from cyclegan.io.atomic import atomic_write_text
from cyclegan.io.images import image_to_tensor, list_images, load_image
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

# (row name, model, objective, direction): pix2pix is trained once per direction, as in the paper.
METHODS = [
    ("CycleGAN (ours)", "cyclegan", "full", None),
    ("GAN alone", "cyclegan", "gan_only", None),
    ("Cycle alone", "cyclegan", "cycle_only", None),
    ("GAN + forward cycle", "cyclegan", "gan_forward", None),
    ("GAN + backward cycle", "cyclegan", "gan_backward", None),
    ("SimGAN (GAN + L1 to input)", "cyclegan", "simgan", None),
    ("pix2pix (paired)", "pix2pix", "full", "AtoB"),
    ("pix2pix (paired)", "pix2pix", "full", "BtoA"),
]
TABLE_2 = ["SimGAN (GAN + L1 to input)", "CycleGAN (ours)", "pix2pix (paired)"]
TABLE_4 = ["Cycle alone", "GAN alone", "GAN + forward cycle", "GAN + backward cycle", "CycleGAN (ours)"]
METRICS = [("pixel_accuracy", "Per-pixel acc."), ("class_accuracy", "Per-class acc."), ("mean_iou", "Class IOU")]


@dataclass
class Result:
    name: str
    direction: str
    scores: dict[str, float]
    seconds: float


def method_config(preset: dict, run_dir: Path, model: str, objective: str, direction: str | None,
                  seed: int) -> Config:
    n_epochs, n_decay = preset["epochs"]
    options = {
        "run_dir": str(run_dir), "dataroot": "builtin", "builtin_size": preset["builtin_size"],
        "builtin_count": preset["builtin_count"], "load_size": preset["builtin_size"] + preset["builtin_size"] // 8,
        "crop_size": preset["builtin_size"], "gen_arch": "resnet_6blocks", "ngf": preset["ngf"], "ndf": preset["ndf"],
        "norm": "instance", "n_epochs": n_epochs, "n_epochs_decay": n_decay,
        "num_workers": 0, "seed": seed, "num_samples": 2, "save_every": 1000, "model": model,
    }
    if model == "pix2pix":
        options.update(direction=direction, gan_mode="lsgan", pool_size=0, dropout=False)
    else:
        options.update(objective=objective, lambda_identity=0.0)
    return apply_overrides(Config(), options)


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


def markdown_table(title: str, results: list[Result], names: list[str], direction: str) -> str:
    by_name = {r.name: r for r in results if r.direction == direction}
    lines = [f"**{title}**", "", "| Loss | " + " | ".join(label for _, label in METRICS) + " |",
             "|---" * (len(METRICS) + 1) + "|"]
    for name in names:
        if name in by_name:
            values = " | ".join(f"{by_name[name].scores[key]:.2f}" for key, _ in METRICS)
            lines.append(f"| {name} | {values} |")
    return "\n".join(lines)


def figure(data_root: Path, outputs: dict[tuple[str, str], Path], count: int, out: Path) -> None:
    """Rows: test images; columns: the input labels, each method's photo, the real photo (A -> B)."""
    names = [name for name, _, _, _ in METHODS if (name, "AtoB") in outputs]
    names = list(dict.fromkeys(names))
    rows = []
    for path in list_images(data_root / "testA")[:count]:
        row = [image_to_tensor(load_image(path))]
        row += [image_to_tensor(load_image(outputs[(name, "AtoB")] / f"{path.stem}.png")) for name in names]
        row.append(image_to_tensor(load_image(data_root / "testB" / path.name)))
        rows.append(row)
    save_png(sample_grid(rows, ["input labels", *names, "real photo"], cell_size=128), out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small", help="Budget and image size.")
    parser.add_argument("--out", default="benchmarks/results/small", help="Folder for runs, tables and figure.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of every run.")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    preset, out = PRESETS[args.preset], Path(args.out)
    started = time.monotonic()
    results: list[Result] = []
    outputs: dict[tuple[str, str], Path] = {}
    data_root = ensure_builtin(out / "data", preset["builtin_size"], preset["builtin_count"])
    palette = load_palette(data_root)
    scorer = get_scorer(data_root, preset["builtin_size"], steps=preset["scorer_steps"])
    for name, model, objective, direction in METHODS:
        tag = f"{model}_{objective}" + (f"_{direction}" if direction else "")
        run_dir = out / "runs" / tag
        config = method_config(preset, run_dir, model, objective, direction, args.seed)
        begin = time.monotonic()
        resume = (run_dir / "checkpoints" / "latest.safetensors").exists()
        trained = train(config, resume=resume, show_progress=sys.stderr.isatty())
        seconds = time.monotonic() - begin
        directions = [direction] if direction else ["AtoB", "BtoA"]
        translated = translate_test(run_dir, data_root, out / "outputs" / tag, directions, model == "pix2pix")
        for each in directions:
            results.append(Result(name, each, score(each, translated[each], data_root, scorer, palette), seconds))
            outputs[(name, each)] = translated[each]
        print(f"{name} ({tag}): {trained.steps_done} steps in {seconds:.0f} s", flush=True)
    real = score("AtoB", data_root / "testB", data_root, scorer, palette)  # the scorer on real photos
    tables = "\n\n".join([
        markdown_table("Table 2: FCN scores, labels -> photo", results, TABLE_2, "AtoB"),
        markdown_table("Table 3: segmentation scores, photo -> labels", results, TABLE_2, "BtoA"),
        markdown_table("Table 4: ablations, FCN scores, labels -> photo", results, TABLE_4, "AtoB"),
        markdown_table("Table 5: ablations, segmentation scores, photo -> labels", results, TABLE_4, "BtoA"),
        "Scorer on real test photos (the instrument's ceiling): "
        + ", ".join(f"{label} {real[key]:.2f}" for key, label in METRICS),
    ])
    elapsed = time.monotonic() - started
    cpu = platform.processor() or platform.machine()
    machine = f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    header = f"Preset {args.preset}, seed {args.seed}, {elapsed / 60:.1f} min on {machine}.\n\n"
    atomic_write_text(out / "tables.md", header + tables + "\n")
    atomic_write_text(out / "tables.json", json.dumps({
        "preset": args.preset, "seed": args.seed, "seconds": elapsed, "machine": machine, "scorer_on_real": real,
        "results": [r.__dict__ for r in results]}, indent=2))
    figure(data_root, outputs, 4, out / "figure.png")
    print(header + tables)
    return 0


if __name__ == "__main__":
    sys.exit(main())
