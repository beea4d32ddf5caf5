"""FCN score for labels -> photo (paper Sec. 5.1.2): segment generated photos and compare with the input labels.

The paper runs the FCN of Long et al. trained on Cityscapes photos; we train our own small segmentation network
on the data set's real photo -> label pairs (train split), cache it, and report its accuracy on real held-out
photos: the ceiling a perfect generator would reach with this instrument. Scores use the paper's metrics
(per-pixel accuracy, per-class accuracy, mean class IoU) from `segmentation.py`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..io.atomic import atomic_path, atomic_write_text
from ..io.download import cache_dir
from ..io.images import image_to_tensor, list_images, load_image, save_image
from ..progress import progress_bar
from . import MetricError
from .paired import match_by_stem
from .segmentation import (
    IGNORE_INDEX,
    TRUTH_MAX_DISTANCE,
    colors_to_labels,
    confusion_matrix,
    load_palette,
    segmentation_scores,
)

logger = logging.getLogger(__name__)

FORMAT = "cyclegan-fcn-scorer"
FORMAT_VERSION = 1  # bump when the network or its training changes, so cached scorers are retrained
# Measured on the default built-in data set (400 training pairs) on one CPU core: 45 s at 64 px for 0.94 pixel
# accuracy on real test photos, 20 s at 32 px for 0.90; doubling the steps adds under 0.01 (0.04 class accuracy).
DEFAULT_STEPS = 600
DEFAULT_WIDTH = 16
BATCH_SIZE = 8
LEARNING_RATE = 3e-3
_PREDICT_BATCH = 32


def _conv(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    # No bias: BatchNorm's shift replaces it.
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class SegmentationNet(nn.Module):
    """A tiny U-Net: three stride-2 stages (1/2, 1/4, 1/8), two decoder stages with skips, logits upsampled.

    About 107k parameters at width 16. Starting at half resolution keeps training cheap on a CPU; the bilinear
    upsampling of the logits gives full-resolution label maps.
    """

    def __init__(self, num_classes: int, width: int = DEFAULT_WIDTH, in_channels: int = 3) -> None:
        super().__init__()
        self.num_classes, self.width = num_classes, width
        self.down1 = nn.Sequential(_conv(in_channels, width, 2), _conv(width, width))
        self.down2 = nn.Sequential(_conv(width, 2 * width, 2), _conv(2 * width, 2 * width))
        self.down3 = nn.Sequential(_conv(2 * width, 4 * width, 2), _conv(4 * width, 4 * width))
        self.up2 = _conv(6 * width, 2 * width)
        self.up1 = _conv(3 * width, width)
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, photos: torch.Tensor) -> torch.Tensor:
        """N x C x H x W photos in [-1, 1] -> N x K x H x W class logits."""
        half = self.down1(photos)
        quarter = self.down2(half)
        eighth = self.down3(quarter)
        quarter = self.up2(torch.cat([_resize(eighth, quarter.shape[-2:]), quarter], dim=1))
        half = self.up1(torch.cat([_resize(quarter, half.shape[-2:]), half], dim=1))
        return _resize(self.classifier(half), photos.shape[-2:])


def _resize(tensor: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(tensor.shape[-2:]) == tuple(size):
        return tensor
    return F.interpolate(tensor, size=tuple(size), mode="bilinear", align_corners=False)


def _photo_tensor(photo: Image.Image | torch.Tensor) -> torch.Tensor:
    return photo if isinstance(photo, torch.Tensor) else image_to_tensor(photo.convert("RGB"))


def train_scorer(photos: Sequence[Image.Image | torch.Tensor], labels: Sequence[np.ndarray], num_classes: int,
                 steps: int = DEFAULT_STEPS, seed: int = 0, width: int = DEFAULT_WIDTH, batch_size: int = BATCH_SIZE,
                 learning_rate: float = LEARNING_RATE, show_progress: bool = False) -> SegmentationNet:
    """Train a `SegmentationNet` on photo -> label pairs; returns it in eval mode.

    Photos are PIL images or 3 x H x W tensors in [-1, 1], labels H x W integer class ids (255 = ignored), all of
    one size. Cross-entropy, Adam with a one-cycle learning rate, random horizontal flips. Deterministic on the CPU
    for a given seed (and thread count); the global random state is left untouched.
    """
    if not photos or len(photos) != len(labels):
        raise ValueError(f"need as many label maps as photos (at least one), got {len(photos)} and {len(labels)}")
    images = torch.stack([_photo_tensor(photo) for photo in photos])
    targets = torch.stack([torch.as_tensor(np.asarray(label), dtype=torch.int64) for label in labels])
    if images.shape[-2:] != targets.shape[-2:]:
        raise ValueError(f"photos are {tuple(images.shape[-2:])} but labels {tuple(targets.shape[-2:])}")
    with torch.random.fork_rng(devices=[]):  # the initial weights depend on the seed alone
        torch.manual_seed(seed)
        network = SegmentationNet(num_classes, width)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)
    # Warm-up then annealing: reaches a good optimum in few steps without tuning a decay schedule.
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=max(steps, 1),
                                                   pct_start=0.1)
    network.train()
    order = torch.empty(0, dtype=torch.int64)
    for _ in progress_bar(range(steps), description="training FCN scorer", enabled=show_progress, unit="step"):
        if len(order) < batch_size:  # epochs of random order, so every pair is seen equally often
            order = torch.cat([order, torch.randperm(len(images), generator=generator)])
        batch, order = order[:batch_size], order[batch_size:]
        flip = (torch.rand(len(batch), generator=generator) < 0.5).view(-1, 1, 1)
        batch_images = torch.where(flip[:, None], images[batch].flip(-1), images[batch])
        batch_targets = torch.where(flip, targets[batch].flip(-1), targets[batch])
        loss = F.cross_entropy(network(batch_images), batch_targets, ignore_index=IGNORE_INDEX)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return network.eval()


@dataclass
class Scorer:
    """A trained segmentation network with what is needed to apply it: classes, colours, input size.

    `real_scores` are its scores on real held-out photos (None without a test split); `from_cache` tells whether
    it was loaded rather than trained by `get_scorer`.
    """

    network: SegmentationNet
    class_names: list[str]
    colors: np.ndarray
    size: int
    fingerprint: str = ""
    real_scores: dict | None = None
    from_cache: bool = False

    @torch.no_grad()
    def predict(self, photos: torch.Tensor, out_size: Sequence[int] | None = None) -> torch.Tensor:
        """N x 3 x H x W photos in [-1, 1] -> N x H' x W' class ids; photos are resized to the scorer's size and
        logits to `out_size` (default: the photos' size)."""
        self.network.eval()
        out_size = tuple(out_size or photos.shape[-2:])
        results = []
        for start in range(0, len(photos), _PREDICT_BATCH):
            batch = _resize(photos[start:start + _PREDICT_BATCH].float(), (self.size, self.size))
            results.append(_resize(self.network(batch), out_size).argmax(dim=1))
        return torch.cat(results)

    def segment_image(self, photo: Image.Image, out_size: Sequence[int] | None = None) -> np.ndarray:
        """One photo -> H x W class ids at `out_size` (height, width; default the photo's size)."""
        photo = _fit(photo.convert("RGB"), self.size)
        out_size = out_size or (photo.height, photo.width)
        return self.predict(image_to_tensor(photo)[None], out_size)[0].numpy()


def _fit(photo: Image.Image, size: int) -> Image.Image:
    # Bicubic, as the training preprocessing resizes photos.
    return photo if photo.size == (size, size) else photo.resize((size, size), Image.Resampling.BICUBIC)


def fcn_score(generated_photos_folder: str | Path, input_labels_folder: str | Path, scorer: Scorer) -> dict:
    """FCN score: segment each generated photo and compare with the input label map of the same stem.

    Label colours map to the nearest palette colour (farther than TRUTH_MAX_DISTANCE: ignored); predictions are
    made at the scorer's size and compared at the label map's size. The confusion matrix is summed over all
    images. Returns pixel_accuracy, class_accuracy, mean_iou, class_iou, classes and count.
    """
    pairs = match_by_stem(list_images(generated_photos_folder), list_images(input_labels_folder), "input label")
    num_classes = len(scorer.class_names)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    for photo_path, labels_path in pairs:
        truth = colors_to_labels(np.asarray(load_image(labels_path, 3)), scorer.colors, IGNORE_INDEX,
                                 TRUTH_MAX_DISTANCE)
        predicted = scorer.segment_image(load_image(photo_path, 3), truth.shape)
        confusion += confusion_matrix(predicted, truth, num_classes, IGNORE_INDEX)
    scores = segmentation_scores(confusion)
    scores.update(classes=list(scorer.class_names), count=len(pairs))
    return scores


def segment(photos_folder: str | Path, scorer: Scorer, out_folder: str | Path) -> list[Path]:
    """Write the scorer's colour label map of every photo in a folder (same stem, .png); returns the paths."""
    written = []
    for photo_path in list_images(photos_folder):
        labels = scorer.segment_image(load_image(photo_path, 3))
        target = Path(out_folder) / f"{photo_path.stem}.png"
        save_image(Image.fromarray(scorer.colors[labels]), target)
        written.append(target)
    return written


# Training data -----------------------------------------------------------------------------------------------

def _builtin_pairs(dataroot: Path, size: int, colors: np.ndarray) -> tuple[list, list]:
    """Photo -> label pairs re-rendered for the built-in data set's training scenes (never its test scenes)."""
    from ..data.synthetic import render_scene  # the renderer is only needed here

    parameters = json.loads((dataroot / "builtin.json").read_text(encoding="utf-8"))
    # Scenes are a pure function of (seed, index): the training scenes (trainA's and trainB's, 0 .. 2 n_train - 1;
    # 0 .. n_train - 1 when both domains show the same ones) are rendered as pairs; the test scenes stay held out.
    n_train = int(parameters["n_train"])
    photos, labels = [], []
    for index in range(n_train if parameters.get("paired") else 2 * n_train):
        label_image, photo = render_scene(int(parameters["seed"]), index, size)
        photos.append(photo)
        labels.append(colors_to_labels(np.asarray(label_image), colors))
    return photos, labels


def _folder_pairs(photos_dir: Path, labels_dir: Path, size: int, colors: np.ndarray) -> tuple[list, list]:
    """Photo -> label pairs from two folders with matching file names, resized to `size`."""
    pairs = match_by_stem(list_images(photos_dir), list_images(labels_dir), "training label")
    photos, labels = [], []
    for photo_path, labels_path in pairs:
        photos.append(_fit(load_image(photo_path, 3), size))
        label_image = load_image(labels_path, 3).resize((size, size), Image.Resampling.NEAREST)
        labels.append(colors_to_labels(np.asarray(label_image), colors, IGNORE_INDEX, TRUTH_MAX_DISTANCE))
    return photos, labels


def _describe_training_data(dataroot: Path, train_pairs: tuple[Path, Path] | None) -> dict:
    """What identifies the training data: the built-in data set's parameters, or file names and byte sizes."""
    if train_pairs is None:
        return {"builtin": json.loads((dataroot / "builtin.json").read_text(encoding="utf-8"))}
    return {"files": [[str(path.relative_to(folder)), path.stat().st_size] for folder in train_pairs
                      for path in list_images(folder)]}


def _fingerprint(description: dict) -> str:
    text = json.dumps(description, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


# Cache --------------------------------------------------------------------------------------------------------

def _load_cached(weights: Path, metadata_path: Path, fingerprint: str) -> Scorer | None:
    """The cached scorer, or None (with a warning when a file is there but unusable)."""
    if not (weights.is_file() and metadata_path.is_file()):
        return None
    try:
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
        if metadata.get("format") != FORMAT or metadata.get("fingerprint") != fingerprint:
            raise ValueError("format or fingerprint does not match")
        network = SegmentationNet(metadata["num_classes"], metadata["width"])
        network.load_state_dict(load_file(weights))
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as error:
        logger.warning("ignoring the cached FCN scorer %s (%s); training a new one", weights, error)
        return None
    return Scorer(network.eval(), list(metadata["classes"]), np.array(metadata["colors"], dtype=np.uint8),
                  int(metadata["size"]), fingerprint, metadata.get("real_scores"), from_cache=True)


def _save(scorer: Scorer, weights: Path, metadata_path: Path, metadata: dict) -> None:
    state = {name: tensor.detach().contiguous() for name, tensor in scorer.network.state_dict().items()}
    with atomic_path(weights) as temporary:
        save_file(state, str(temporary), metadata={"format": FORMAT, "fingerprint": scorer.fingerprint})
    # The metadata is written last: its presence means the weights are complete.
    atomic_write_text(metadata_path, json.dumps(metadata, indent=2) + "\n")


def get_scorer(dataroot: str | Path, size: int, cache: str | Path | None = None, show_progress: bool = True, *,
               train_pairs: tuple[str | Path, str | Path] | None = None,
               test_pairs: tuple[str | Path, str | Path] | None = None,
               steps: int = DEFAULT_STEPS, seed: int = 0, width: int = DEFAULT_WIDTH) -> Scorer:
    """The FCN scorer for a data set at `size` x `size` px: loaded from the cache, else trained and cached.

    Training pairs: for the built-in data set (a folder with builtin.json) its training scenes are re-rendered
    as photo -> label pairs; for other data sets give `train_pairs` = (photos folder, label-map folder), files
    matched by stem. Classes come from the data set's palette.json. The scorer is scored on real held-out photos:
    `test_pairs` (photos, labels), by default testB and testA of the built-in data set. The cache is
    `cache` or `cache_dir()/fcn_scorers`, one `<fingerprint>.safetensors` + `.json` per training set and budget.
    """
    dataroot = Path(dataroot)
    names, colors = load_palette(dataroot)
    builtin = (dataroot / "builtin.json").is_file()
    if train_pairs is None and not builtin:
        raise MetricError(f"{dataroot} is not the built-in data set: give train_pairs=(photos folder, label folder) "
                          "with real training photos and their label maps under the same file names")
    if test_pairs is None and builtin:
        test_pairs = (dataroot / "testB", dataroot / "testA")
    if train_pairs is not None:
        train_pairs = (Path(train_pairs[0]), Path(train_pairs[1]))
    data = _describe_training_data(dataroot, train_pairs)
    architecture = {"name": "SegmentationNet", "width": width, "num_classes": len(names)}
    training = {"steps": steps, "seed": seed, "batch_size": BATCH_SIZE, "learning_rate": LEARNING_RATE}
    fingerprint = _fingerprint({"version": FORMAT_VERSION, "architecture": architecture, "training": training,
                                "size": size, "classes": names, "colors": colors.tolist(), "data": data})
    folder = Path(cache) if cache is not None else cache_dir() / "fcn_scorers"
    weights, metadata_path = folder / f"{fingerprint}.safetensors", folder / f"{fingerprint}.json"
    scorer = _load_cached(weights, metadata_path, fingerprint)
    if scorer is not None:
        logger.info("loaded the cached FCN scorer %s", weights)
        return scorer

    started = time.perf_counter()
    if train_pairs is None:
        photos, labels = _builtin_pairs(dataroot, size, colors)
    else:
        photos, labels = _folder_pairs(train_pairs[0], train_pairs[1], size, colors)
    network = train_scorer(photos, labels, len(names), steps=steps, seed=seed, width=width,
                           show_progress=show_progress)
    seconds = time.perf_counter() - started
    scorer = Scorer(network, names, colors, size, fingerprint)
    if test_pairs is not None and all(Path(folder).is_dir() for folder in test_pairs):
        scores = fcn_score(test_pairs[0], test_pairs[1], scorer)
        scorer.real_scores = {key: scores[key] for key in ("pixel_accuracy", "class_accuracy", "mean_iou", "count")}
    logger.info("trained the FCN scorer on %d pairs in %.1f s; on real held-out photos: %s", len(photos), seconds,
                scorer.real_scores)
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "fingerprint": fingerprint, **architecture,
                "classes": names, "colors": colors.tolist(), "size": size, "training": training, "data": data,
                "training_pairs": len(photos), "training_seconds": round(seconds, 2),
                "real_scores": scorer.real_scores}
    _save(scorer, weights, metadata_path, metadata)
    return scorer
