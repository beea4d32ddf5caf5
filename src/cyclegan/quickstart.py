"""The main job on the built-in data set: train a small CycleGAN, translate the test images, score and report.

The built-in test split is paired, so the translations can be scored against ground truth: mean L1 (in [-1, 1]
units) of A->B (labels -> photos) and B->A (photos -> labels), for the trained model and for the same model
untrained, which is the baseline that shows the model learned something.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .config import Config, apply_overrides
from .io.atomic import atomic_write_text
from .io.images import image_to_tensor, list_images, load_image
from .io.run_folder import RunFolder
from .report.html import write_run_report, write_translation_page
from .training.loop import train
from .translate import Translator

# Small enough to finish on 2 CPU cores in minutes, large enough to learn the street scenes.
DEMO_OPTIONS: dict[str, Any] = {
    "builtin_size": 64, "builtin_count": 200, "preprocess": "resize_and_crop", "load_size": 72, "crop_size": 64,
    "gen_arch": "resnet_6blocks", "ngf": 24, "ndf": 32, "n_epochs": 5, "n_epochs_decay": 3, "batch_size": 1,
    "lambda_identity": 0.0,
    "num_workers": 1, "save_every": 5, "num_samples": 4,
}


@dataclass(frozen=True)
class DemoResult:
    run_dir: Path
    scores: dict[str, dict[str, float]]  # direction -> {"trained": L1, "untrained": L1}
    translations: Path


def demo_config(run_dir: str | Path, **overrides: Any) -> Config:
    return apply_overrides(Config(), {**DEMO_OPTIONS, "run_dir": str(run_dir), **overrides})


def paired_l1(pairs: list[tuple[Path, Path]], truth_folder: Path, channels: int) -> float:
    """Mean absolute difference, in [-1, 1] units, between each output and the same-named ground-truth image."""
    total, count = 0.0, 0
    for _, output in pairs:
        truth_path = next(truth_folder.glob(f"{output.stem}.*"))
        truth = image_to_tensor(load_image(truth_path, channels))
        produced = image_to_tensor(load_image(output, channels))
        total += (produced - truth).abs().mean().item()
        count += 1
    return total / max(count, 1)


def run_demo(config: Config, show_progress: bool = True) -> DemoResult:
    """Train on the built-in data set, translate all test images both ways, score them and write the report.

    A run folder that already holds this run is resumed (and, if it had finished, only translated and scored).
    """
    already_started = RunFolder(Path(config.train.run_dir)).latest_checkpoint.exists()
    # A finished or stopped demo continues; one that never got to its first checkpoint starts afresh.
    result = train(config, resume=already_started, overwrite=not already_started, show_progress=show_progress)
    run = RunFolder(result.run_dir)
    data_root = Path(result.config.data.dataroot)
    out = run.translations
    torch.manual_seed(config.train.seed)
    untrained = Translator.from_config(config, device="cpu")
    trained = Translator.load(run.root, device=config.train.device)
    scores: dict[str, dict[str, float]] = {}
    all_pairs = []
    for direction, source, truth, channels in (("AtoB", "testA", "testB", config.networks.channels_b),
                                               ("BtoA", "testB", "testA", config.networks.channels_a)):
        inputs = list_images(data_root / source)
        pairs = trained.translate_files(inputs, out / direction, direction, show_progress=show_progress)
        baseline = untrained.translate_files(inputs, out / "untrained" / direction, direction,
                                             show_progress=False)
        scores[direction] = {"trained": paired_l1(pairs, data_root / truth, channels),
                             "untrained": paired_l1(baseline, data_root / truth, channels)}
        all_pairs += pairs
    write_translation_page(all_pairs, run.translations_page, "Test images: A->B (labels->photos), B->A")
    atomic_write_text(run.scores_file, json.dumps(
        {"metric": "mean L1 to paired ground truth, [-1, 1] units (lower is better)", "scores": scores,
         "config": {"model": config.model, "networks": dataclasses.asdict(config.networks),
                    config.model: dataclasses.asdict(config.options)}}, indent=2))
    write_run_report(run.root)
    return DemoResult(run.root, scores, out)
