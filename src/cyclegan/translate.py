"""Translator: a trained model's generators, ready to translate PIL images, tensors, files and folders.

    translator = cyclegan.load("runs/horse2zebra")
    zebra = translator(Image.open("horse.jpg"))            # A -> B; direction="BtoA" for the other way

Any size and aspect ratio works: images are padded (by reflection, or by replication where reflection cannot
reach) to the multiple of 4 (ResNet) or 2**depth (U-Net) the generator needs, and to its smallest size (8 for the
ResNet), and cropped back afterwards.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as functional
from PIL import Image
from torch import nn

from .config import DIRECTIONS, Config, ModelConfig
from .io.checkpoints import CheckpointError, find_checkpoint, load_checkpoint
from .io.images import image_to_tensor, load_image, save_image, tensor_to_image
from .io.official import load_official_generator, official_checkpoint_files
from .models import build_generators, load_generators
from .nets.layers import set_fast_convolutions
from .progress import progress_bar
from .runtime import keep_freed_memory, select_device

logger = logging.getLogger(__name__)


def pad_to_multiple(batch: torch.Tensor, multiple: int, min_size: int = 1
                    ) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad an NCHW batch on the bottom and right to sides divisible by `multiple` and at least `min_size`; returns
    it and the old size.

    Reflection keeps the border statistics natural; where the padding is not smaller than the side (reflection's
    limit: a 1x1 or 3x200 image) the border pixels are replicated instead.
    """
    def padded(side: int) -> int:
        side = max(side, min_size)
        return side + (-side) % multiple

    height, width = batch.shape[-2:]
    pad_h, pad_w = padded(height) - height, padded(width) - width
    if pad_h == 0 and pad_w == 0:
        return batch, (height, width)
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return functional.pad(batch, (0, pad_w, 0, pad_h), mode=mode), (height, width)


class Translator:
    """The generators of a trained model in eval mode: both of a CycleGAN, or one (gen_ab) of a pix2pix model or
    an official single-generator file."""

    def __init__(self, gen_ab: nn.Module | None, gen_ba: nn.Module | None, config: ModelConfig,
                 device: torch.device | str = "cpu") -> None:
        self.config = config
        self.device = torch.device(device)
        if self.device.type == "cpu":
            keep_freed_memory()
        self.generators = {direction: net.to(self.device).eval()
                           for direction, net in (("AtoB", gen_ab), ("BtoA", gen_ba)) if net is not None}
        self.set_fast_convolutions(True)
        # On the CPU one image at a time is fastest (batch 4: ~15% slower per image at 256x256; a GPU wants
        # batches: benchmarks/translate_speed.py).
        self.default_batch_size = 1 if self.device.type == "cpu" else 4

    def set_fast_convolutions(self, enabled: bool) -> Translator:
        """NNPACK convolutions on the CPU (`nets.layers.conv2d`; on by default): the outputs equal oneDNN's up to
        float rounding, far below an 8-bit image's step. Off: oneDNN's direct convolutions only."""
        for net in self.generators.values():
            set_fast_convolutions(net, enabled)
        return self

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> Translator:
        """Load a model; no architecture flags needed. `path` is one of: a run folder (its latest checkpoint), a
        checkpoint or model file of ours (.safetensors; a pix2pix model translates A->B only), an official generator
        file (.pth: A->B only), or an official checkpoint folder (latest_net_G_A.pth and latest_net_G_B.pth)."""
        path = Path(path)
        if path.suffix == ".pth" or (path.is_dir() and official_checkpoint_files(path)):
            return cls._load_official(path, select_device(device))
        checkpoint = find_checkpoint(path)
        target = select_device(device)
        config, state = load_checkpoint(checkpoint, device="cpu", prefix="nets")
        generators = load_generators(config.model, state["nets"], checkpoint)  # checked against the config
        logger.info("loaded %s (%s, %s, ngf=%d)", checkpoint, config.model.model, config.model.gen_arch,
                    config.model.ngf)
        return cls(generators["gen_ab"], generators.get("gen_ba"), config.model, target)

    @classmethod
    def from_pretrained(cls, name: str, base_url: str | None = None, device: str = "auto",
                        show_progress: bool = True) -> Translator:
        """An official pretrained generator (`cyclegan pretrained list`), downloaded into the cache once."""
        from .pretrained import pretrained_file  # the downloader is needed only here

        return cls._load_official(pretrained_file(name, base_url, show_progress=show_progress), select_device(device))

    @classmethod
    def _load_official(cls, path: Path, device: torch.device) -> Translator:
        files = {"gen_ab": path} if path.is_file() or path.suffix == ".pth" else official_checkpoint_files(path)
        nets, specs = {}, {}
        for name in ("gen_ab", "gen_ba"):
            if name in files:
                nets[name], specs[name] = load_official_generator(files[name])
        if not nets:
            raise CheckpointError(f"{path} holds no official generator (latest_net_G_A.pth / latest_net_G_B.pth)")
        spec = specs.get("gen_ab") or specs["gen_ba"]
        channels_a, channels_b = ((spec.in_channels, spec.out_channels) if "gen_ab" in specs
                                  else (spec.out_channels, spec.in_channels))
        config = ModelConfig(gen_arch=spec.arch, ngf=spec.ngf, norm=spec.norm, dropout=spec.dropout,
                             channels_a=channels_a, channels_b=channels_b, lambda_identity=0.0)
        logger.info("loaded official weights %s (%s, ngf=%d, norm=%s)", path, spec.arch, spec.ngf, spec.norm)
        return cls(nets.get("gen_ab"), nets.get("gen_ba"), config, device)

    @classmethod
    def from_config(cls, config: Config, device: str = "cpu") -> Translator:
        """Untrained generators for `config` (a baseline to compare a trained model against)."""
        generators = build_generators(config.model)
        return cls(generators["gen_ab"], generators.get("gen_ba"), config.model, select_device(device))

    def source_channels(self, direction: str) -> int:
        return self.config.channels_a if direction == "AtoB" else self.config.channels_b

    @torch.inference_mode()
    def translate_tensor(self, batch: torch.Tensor, direction: str = "AtoB") -> torch.Tensor:
        """Translate an NCHW (or CHW) batch in [-1, 1] of any size; returns the same shape, on the input's device."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction={direction!r}; use AtoB or BtoA")
        if direction not in self.generators:
            raise ValueError(f"this model has no {direction} generator (a pix2pix model or an official "
                             f"single-generator file translates {', '.join(self.generators)} only)")
        generator = self.generators[direction]
        single = batch.dim() == 3
        batch = batch.unsqueeze(0) if single else batch
        expected = self.source_channels(direction)
        if batch.shape[1] != expected:
            raise ValueError(f"the {direction} generator takes {expected}-channel images, got {batch.shape[1]}")
        padded, (height, width) = pad_to_multiple(batch.to(self.device, torch.float32), generator.size_multiple,
                                                  generator.min_size)
        output = generator(padded)[..., :height, :width].to(batch.device)
        return output[0] if single else output

    def __call__(self, images: Image.Image | Sequence[Image.Image] | torch.Tensor, direction: str = "AtoB",
                 resize: int | None = None, batch_size: int | None = None
                 ) -> Image.Image | list[Image.Image] | torch.Tensor:
        """Translate a PIL image, a list of them, or a tensor; returns the same kind. batch_size: images per
        generator call (default: `default_batch_size`)."""
        if isinstance(images, torch.Tensor):
            return self.translate_tensor(images, direction)
        single = isinstance(images, Image.Image)
        outputs = self.translate_images([images] if single else list(images), direction, resize, batch_size)
        return outputs[0] if single else outputs

    def translate_images(self, images: list[Image.Image], direction: str = "AtoB", resize: int | None = None,
                         batch_size: int | None = None) -> list[Image.Image]:
        """Translate PIL images, batching those of equal size; the outputs keep the inputs' order."""
        channels = self.source_channels(direction)
        batch_size = batch_size or self.default_batch_size
        tensors = [image_to_tensor(_prepare(image, channels, resize)) for image in images]
        outputs: list[Image.Image | None] = [None] * len(tensors)
        for indices in _batches_by_size(tensors, batch_size):
            translated = self.translate_tensor(torch.stack([tensors[i] for i in indices]), direction)
            for index, tensor in zip(indices, translated, strict=True):
                outputs[index] = tensor_to_image(tensor.cpu())
        return outputs  # type: ignore[return-value]

    def translate_files(self, paths: Sequence[Path], out_dir: Path, direction: str = "AtoB",
                        resize: int | None = None, batch_size: int | None = None, show_progress: bool = True,
                        names: Sequence[str] | None = None) -> list[tuple[Path, Path]]:
        """Translate image files into `out_dir` as PNG (names keep their stems); returns (input, output) pairs."""
        out_dir = Path(out_dir)
        names = list(names) if names is not None else _unique_names(paths)
        batch_size = batch_size or self.default_batch_size
        pairs = []
        bar = progress_bar(total=len(paths), description=f"translating {direction}", unit="img",
                           enabled=show_progress)
        for start in range(0, len(paths), batch_size):
            chunk = list(paths[start:start + batch_size])
            channels = self.source_channels(direction)
            images = [load_image(path, channels) for path in chunk]
            for path, name, output in zip(chunk, names[start:start + batch_size],
                                          self.translate_images(images, direction, resize, batch_size),
                                          strict=True):
                target = out_dir / name
                save_image(output, target)
                pairs.append((Path(path), target))
            bar.update(len(chunk))
        bar.close()
        return pairs


def _prepare(image: Image.Image, channels: int, resize: int | None) -> Image.Image:
    """Match the generator's channels; with `resize`, scale the shorter side to that many pixels."""
    image = image.convert("L" if channels == 1 else "RGB")
    if resize:
        scale = resize / min(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.BICUBIC)
    return image


def _batches_by_size(tensors: list[torch.Tensor], batch_size: int) -> list[list[int]]:
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for index, tensor in enumerate(tensors):
        groups[tuple(tensor.shape)].append(index)
    return [indices[i:i + batch_size] for indices in groups.values() for i in range(0, len(indices), batch_size)]


def _unique_names(paths: Sequence[Path]) -> list[str]:
    """Output file names: the input's stem as .png, numbered when two inputs share a stem."""
    seen: dict[str, int] = {}
    names = []
    for path in paths:
        stem = Path(path).stem
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        names.append(f"{stem}.png" if count == 0 else f"{stem}_{count}.png")
    return names


def load(path: str | Path, device: str = "auto") -> Translator:
    """Load a trained model for translation: `cyclegan.load("runs/my_run")("photo.jpg" as PIL image)`."""
    return Translator.load(path, device)
