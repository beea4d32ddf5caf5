"""Translator: a trained model's generators, ready to translate PIL images, tensors, files and folders.

    translator = cyclegan.load("runs/horse2zebra")
    zebra = translator(Image.open("horse.jpg"))            # A -> B; direction="BtoA" for the other way

Any size and aspect ratio works: images are padded (by reflection, or by replication where reflection cannot
reach) to the multiple of 4 (ResNet) or 2**depth (U-Net) the generator needs, and to its smallest size (8 for the
ResNet), and cropped back afterwards.

`translate_each` is the file-level seam the CLI (and a server) builds on: it checks the direction, names every
output uniquely and refuses to write over an input before writing anything, then yields one `FileOutcome` per
input, collecting unreadable files instead of stopping at them unless `strict`.

Layers over it live beside it: engines.py (what runs a generator: PyTorch or onnxruntime) and tiling/ (exact tiled
translation of images larger than memory, which every method reaches through `max_memory` / `tile`).
"""

from __future__ import annotations

import logging
import numbers
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch
import torch.nn.functional as functional
from PIL import Image
from torch import nn

from .config import DIRECTIONS, PRECISIONS, Config, NetworksConfig
from .engines import DEFAULT_ENGINE, Engine, OnnxRuntimeEngine, choose_engine, engines_for, exportable
from .generators import build_generators, load_generators
from .io.checkpoints import CheckpointError, find_checkpoint, load_networks
from .io.images import ImageError, convert_mode, image_to_tensor, load_image, output_paths, save_image, tensor_to_image
from .io.official import load_official_generator, official_checkpoint_files
from .nets.speed import speed_up
from .progress import progress_bar

logger = logging.getLogger(__name__)

# onnxruntime's whole-image peak over PyTorch's, ResNet-9 at 2048x2048: 9.2 against 4.2 GiB (benchmarks/results/
# tiled_translation_onnxruntime.json and tiled_translation.json); the whole-image estimate is PyTorch's.
ONNXRUNTIME_MEMORY_FACTOR = 2.2
# Autocast's types by the names training uses (config.PRECISIONS).
AUTOCAST_TYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_bfloat16() -> bool:
    """Whether oneDNN finds native bfloat16 arithmetic on this CPU (AVX512-BF16 or AMX)."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


class TranslationError(ValueError):
    """A request this model cannot serve (a direction it lacks, images of the wrong channels) or bad settings
    (batch size, resize); the message says what the model supports."""


@dataclass(frozen=True)
class FileOutcome:
    """One input file of `translate_each`: the output written for it, or (output None) why there is none."""

    source: Path
    output: Path | None
    error: str | None = None


def pad_to_multiple(batch: torch.Tensor, multiple: int, min_size: int = 1
                    ) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad an NCHW batch on the bottom and right to sides divisible by `multiple` and at least `min_size`; returns
    it and the old size.

    Reflection keeps the border statistics natural; where the padding is not smaller than the side (reflection's
    limit: a 1x1 or 3x200 image) the border pixels are replicated instead.
    """
    height, width = batch.shape[-2:]
    pad_h, pad_w, mode = padding(height, width, multiple, min_size)
    if pad_h == 0 and pad_w == 0:
        return batch, (height, width)
    return functional.pad(batch, (0, pad_w, 0, pad_h), mode=mode), (height, width)


def padding(height: int, width: int, multiple: int, min_size: int = 1) -> tuple[int, int, str]:
    """The rows and columns `pad_to_multiple` adds at the bottom and right, and its mode (reflect or replicate)."""
    def padded(side: int) -> int:
        side = max(side, min_size)
        return side + (-side) % multiple

    pad_h, pad_w = padded(height) - height, padded(width) - width
    return pad_h, pad_w, "reflect" if pad_h < height and pad_w < width else "replicate"


class Translator:
    """The generators of a trained model in eval mode: both of a CycleGAN, or one (gen_ab) of a pix2pix model or
    an official single-generator file (or an exported .onnx file). `engine` runs them (engines.py): torch, the
    networks themselves; onnxruntime, their ONNX export (on the CPU); auto (the default), the fastest of the two
    that stays within one 8-bit step of exact (onnxruntime on AVX-512 CPUs where installed)."""

    def __init__(self, gen_ab: nn.Module | Engine | None, gen_ba: nn.Module | Engine | None, config: NetworksConfig,
                 device: torch.device | str = "cpu", engine: str = DEFAULT_ENGINE) -> None:
        self.config = config
        self.engine_asked = engine
        self.engine, self.device = choose_engine(engine, device)
        generators = {direction: net.to(self.device).eval() if isinstance(net, nn.Module) else net
                      for direction, net in (("AtoB", gen_ab), ("BtoA", gen_ba)) if net is not None}
        if engine == "auto" and not all(exportable(net) for net in generators.values()):
            self.engine = "torch"  # a latent search (CoGAN) has no graph for onnxruntime to run
        self.generators = engines_for(generators, config, self.engine)
        # The PyTorch networks behind the engines (none for an .onnx file): tiled translation runs them stage by
        # stage whatever the engine.
        self.networks = {direction: net for direction, net in generators.items() if isinstance(net, nn.Module)}
        self.precision = "float32"
        self.set_fast_convolutions(True)
        # On the CPU one image at a time is fastest (batch 4: ~15% slower per image at 256x256; a GPU wants
        # batches: benchmarks/translate_speed.py).
        self.default_batch_size = 1 if self.device.type == "cpu" else 4

    def set_fast_convolutions(self, enabled: bool) -> Translator:
        """The fastest convolutions on the CPU (`nets.convolutions.fast_kernel`; on by default): NNPACK's on CPUs
        without AVX-512, oneDNN's direct ones with it, where they are faster. NNPACK's outputs equal oneDNN's up to
        float rounding, far below an 8-bit image's step. Off: oneDNN's direct convolutions only. In float32 only
        (`set_precision`)."""
        self.fast_convolutions = enabled
        for net in self.networks.values():
            speed_up(net, lean=False, fast_convolutions=enabled and self.precision == "float32")
        return self

    def set_precision(self, precision: str) -> Translator:
        """float32 (the default: exact), or bf16 / fp16 autocast (the names training uses): faster where the
        hardware has the type (bfloat16 on CPUs with AVX512-BF16 or AMX and on recent GPUs; float16 on GPUs), with
        outputs a few 8-bit steps off float32 (README, "Speed"). Autocast runs oneDNN's or cuDNN's kernels, never
        NNPACK's."""
        if precision not in PRECISIONS:
            raise TranslationError(f"precision={precision!r}; use one of {', '.join(PRECISIONS)}")
        if precision != "float32" and self.engine != "torch" and self.engine_asked == "auto" \
                and set(self.networks) == set(self.generators):
            self.generators, self.engine = dict(self.networks), "torch"  # autocast is PyTorch's
        if precision != "float32" and self.engine != "torch":
            raise TranslationError(f"precision {precision} is PyTorch autocast; the {self.engine} engine runs "
                                   "float32 only: use --engine torch for it")
        if precision == "fp16" and self.device.type == "cpu":
            raise TranslationError("fp16 is for GPUs; on the CPU use bf16 (fast where the CPU has AVX512-BF16 or AMX) "
                                   "or float32")
        if precision == "bf16" and self.device.type == "cpu" and not cpu_has_bfloat16():
            logger.warning("this CPU has no native bfloat16 (AVX512-BF16 or AMX): bfloat16 is emulated and slower "
                           "than float32 here")
        self.precision = precision
        return self.set_fast_convolutions(self.fast_convolutions)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", engine: str = DEFAULT_ENGINE) -> Translator:
        """Load a model; no architecture flags needed. `path` is one of: a run folder (its latest checkpoint), a
        checkpoint or model file of ours (.safetensors; a pix2pix model translates A->B only), an official generator
        file (.pth: A->B only), an official checkpoint folder (CycleGAN's latest_net_G_A.pth and latest_net_G_B.pth,
        or pix2pix's latest_net_G.pth), or a generator exported by `cyclegan export --format onnx` (.onnx: its one
        direction, always on onnxruntime)."""
        path = Path(path)
        if path.suffix == ".onnx":
            exported = OnnxRuntimeEngine(path)
            pair = (exported, None) if exported.direction == "AtoB" else (None, exported)
            return cls(*pair, exported.networks_config(), device, "onnxruntime")
        if path.suffix == ".pth" or (path.is_dir() and official_checkpoint_files(path)):
            return cls._load_official(path, device, engine)
        checkpoint = find_checkpoint(path)
        model, networks, state = load_networks(checkpoint, device="cpu")
        generators = load_generators(model, networks, state["nets"], checkpoint)  # checked against the config
        logger.info("loaded %s (%s, %s, ngf=%d)", checkpoint, model, networks.gen_arch, networks.ngf)
        return cls(generators["gen_ab"], generators.get("gen_ba"), networks, device, engine)

    @classmethod
    def from_pretrained(cls, name: str, base_url: str | None = None, device: str = "auto",
                        show_progress: bool = True, engine: str = DEFAULT_ENGINE) -> Translator:
        """An official pretrained generator (`cyclegan pretrained list`), downloaded into the cache once."""
        from .pretrained import pretrained_file  # the downloader is needed only here

        return cls._load_official(pretrained_file(name, base_url, show_progress=show_progress), device, engine)

    @classmethod
    def _load_official(cls, path: Path, device: str, engine: str) -> Translator:
        files = {"gen_ab": path} if path.is_file() or path.suffix == ".pth" else official_checkpoint_files(path)
        nets, specs = {}, {}
        for name in ("gen_ab", "gen_ba"):
            if name in files:
                nets[name], specs[name] = load_official_generator(files[name])
        if not nets:
            raise CheckpointError(f"{path} holds no official generator (CycleGAN's latest_net_G_A.pth / "
                                  "latest_net_G_B.pth, or pix2pix's latest_net_G.pth)")
        spec = specs.get("gen_ab") or specs["gen_ba"]
        channels_a, channels_b = ((spec.in_channels, spec.out_channels) if "gen_ab" in specs
                                  else (spec.out_channels, spec.in_channels))
        config = NetworksConfig(gen_arch=spec.arch, ngf=spec.ngf, norm=spec.norm, dropout=spec.dropout,
                                channels_a=channels_a, channels_b=channels_b)
        logger.info("loaded official weights %s (%s, ngf=%d, norm=%s)", path, spec.arch, spec.ngf, spec.norm)
        return cls(nets.get("gen_ab"), nets.get("gen_ba"), config, device, engine)

    @classmethod
    def from_config(cls, config: Config, device: str = "cpu", engine: str = DEFAULT_ENGINE) -> Translator:
        """Untrained generators for `config` (a baseline to compare a trained model against)."""
        generators = build_generators(config.model, config.networks)
        return cls(generators["gen_ab"], generators.get("gen_ba"), config.networks, device, engine)

    def check_direction(self, direction: str) -> str:
        """`direction` if this model has its generator; otherwise a TranslationError saying what it has."""
        if direction not in DIRECTIONS:
            raise TranslationError(f"direction={direction!r}; use AtoB or BtoA")
        if direction not in self.generators:
            supported = " and ".join(self.generators)
            raise TranslationError(
                f"this model has no {direction} generator: it translates {supported} only (a pix2pix model, "
                f"an official single-generator file and an exported .onnx file have one direction); use direction "
                f"{supported}")
        return direction

    def check_settings(self, resize: int | None, batch_size: int | None) -> int:
        """Refuse a resize or batch size below 1 (None: keep the size; the default batch); returns the batch."""
        for name, value in (("resize", resize), ("batch_size", batch_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
                raise TranslationError(f"{name}={value!r}; give a whole number of at least 1 (or None for the "
                                       "default)")
        return batch_size or self.default_batch_size

    def source_channels(self, direction: str) -> int:
        return self.config.channels_a if direction == "AtoB" else self.config.channels_b

    @torch.inference_mode()
    def translate_tensor(self, batch: torch.Tensor, direction: str = "AtoB") -> torch.Tensor:
        """Translate an NCHW (or CHW) batch in [-1, 1] of any size; returns the same shape, on the input's device."""
        generator = self.generators[self.check_direction(direction)]
        single = batch.dim() == 3
        batch = batch.unsqueeze(0) if single else batch
        expected = self.source_channels(direction)
        if batch.shape[1] != expected:
            raise TranslationError(f"the {direction} generator takes {expected}-channel images, got "
                                   f"{batch.shape[1]}")
        padded, (height, width) = pad_to_multiple(batch.to(self.device, torch.float32), generator.size_multiple,
                                                  generator.min_size)
        with torch.autocast(self.device.type, dtype=AUTOCAST_TYPES.get(self.precision),
                            enabled=self.precision != "float32"):
            output = generator(padded)
        output = output[..., :height, :width].to(batch.device, torch.float32)
        return output[0] if single else output

    def __call__(self, images: Image.Image | Sequence[Image.Image] | torch.Tensor, direction: str = "AtoB",
                 resize: int | None = None, batch_size: int | None = None, *, max_memory: int | None = None,
                 tile: int | None = None, scratch_dir: str | Path | None = None
                 ) -> Image.Image | list[Image.Image] | torch.Tensor:
        """Translate a PIL image, a list of them, or a tensor; returns the same kind. batch_size: images per
        generator call (default: `default_batch_size`). max_memory (bytes) / tile (rows): translate an image in
        exact tiles when whole-image translation would need more, or always with `tile` (`translate_tiled`)."""
        if isinstance(images, torch.Tensor):
            if not self._wants_tiling(direction, images.shape[-3], *images.shape[-2:], max_memory, tile):
                return self.translate_tensor(images, direction)
            single = images.dim() == 3
            outputs = [self.translate_tiled(image, direction, max_memory=max_memory, tile=tile,
                                            scratch_dir=scratch_dir) for image in (images[None] if single else images)]
            return outputs[0] if single else torch.stack(outputs)
        single = isinstance(images, Image.Image)
        outputs = self.translate_images([images] if single else list(images), direction, resize, batch_size,
                                        max_memory=max_memory, tile=tile, scratch_dir=scratch_dir)
        return outputs[0] if single else outputs

    def translate_images(self, images: list[Image.Image], direction: str = "AtoB", resize: int | None = None,
                         batch_size: int | None = None, *, max_memory: int | None = None, tile: int | None = None,
                         scratch_dir: str | Path | None = None, show_progress: bool = False) -> list[Image.Image]:
        """Translate PIL images, batching those of equal size; the outputs keep the inputs' order. An image whose
        whole-image translation is estimated to need more than `max_memory` bytes, or every image when `tile` is
        given, is translated in exact tiles instead (`translate_tiled`; `show_progress`: its stages and bands)."""
        channels = self.source_channels(self.check_direction(direction))
        batch_size = self.check_settings(resize, batch_size)
        prepared = [_prepare(image, channels, resize) for image in images]
        outputs: list[Image.Image | None] = [None] * len(prepared)
        whole = []
        for index, image in enumerate(prepared):
            if self._wants_tiling(direction, channels, image.height, image.width, max_memory, tile):
                outputs[index] = self.translate_tiled(image, direction, max_memory=max_memory, tile=tile,
                                                      scratch_dir=scratch_dir, show_progress=show_progress)
            else:
                whole.append(index)
        tensors = [image_to_tensor(prepared[index]) for index in whole]
        for indices in _batches_by_size(tensors, batch_size):
            translated = self.translate_tensor(torch.stack([tensors[i] for i in indices]), direction)
            for index, tensor in zip(indices, translated, strict=True):
                outputs[whole[index]] = tensor_to_image(tensor.cpu())
        return outputs  # type: ignore[return-value]

    def _tiling_network(self, direction: str) -> nn.Module:
        """The PyTorch network that tiled translation runs for `direction`, stage by stage."""
        network = self.networks.get(self.check_direction(direction))
        if network is not None and not exportable(network):
            raise TranslationError(f"tiled translation runs a network stage by stage, and this model's {direction} "
                                   f"generator ({type(network).__name__}) is an optimisation per image; translate "
                                   "without --tile")
        if network is None:
            raise TranslationError("tiled translation runs the PyTorch network stage by stage, and an exported "
                                   ".onnx file has none: translate large images with the model it was exported from "
                                   "(a run folder, checkpoint or official file), or lower the image's size")
        return network

    def _wants_tiling(self, direction: str, channels: int, height: int, width: int, max_memory: int | None,
                      tile: int | None) -> bool:
        """Whether an image goes through tiled translation: `tile` given, or its whole-image estimate over
        `max_memory`. An .onnx file's network, or a latent search (CoGAN: not `exportable`), cannot be estimated: it is
        translated whole unless `tile` is given, which it refuses."""
        from .tiling import wants_tiling

        if direction not in self.networks or not exportable(self.networks[direction]):
            if tile is not None:
                self._tiling_network(direction)  # raises the reason
            return False
        if max_memory is not None and self.engine == "onnxruntime":  # its whole image takes more than PyTorch's
            max_memory = int(max_memory / ONNXRUNTIME_MEMORY_FACTOR)
        return wants_tiling(self.networks[direction], channels, height, width, max_memory, tile)

    def translate_tiled(self, image: Image.Image | torch.Tensor, direction: str = "AtoB", *,
                        max_memory: int | None = None, tile: int | None = None,
                        scratch_dir: str | Path | None = None, show_progress: bool = False
                        ) -> Image.Image | torch.Tensor:
        """Translate one PIL image (or C x H x W tensor in [-1, 1]) in exact tiles: band by band, with the whole
        image's instance-norm statistics, so the result equals whole-image translation up to float rounding, in
        about `max_memory` bytes (see `tiling.translate_tiled`; scratch files go under `scratch_dir`)."""
        from .tiling import translate_tiled

        generator = self._tiling_network(direction)
        channels = self.source_channels(direction)
        if isinstance(image, torch.Tensor):
            if image.dim() != 3 or image.shape[0] != channels:
                raise TranslationError(f"the {direction} generator takes {channels} x H x W tensors, got shape "
                                       f"{tuple(image.shape)}")
            return translate_tiled(generator, image.to(self.device), max_memory=max_memory, tile=tile,
                                   scratch_dir=scratch_dir, show_progress=show_progress).to(image.device)
        array = np.asarray(_prepare(image, channels, None), dtype=np.uint8)
        result = translate_tiled(generator, array, max_memory=max_memory, tile=tile, scratch_dir=scratch_dir,
                                 show_progress=show_progress, description=f"translating {direction} in tiles")
        return Image.fromarray(result)

    def translate_files(self, paths: Sequence[Path], out_dir: Path, direction: str = "AtoB",
                        resize: int | None = None, batch_size: int | None = None, show_progress: bool = True,
                        names: Sequence[str | PurePath] | None = None, *, max_memory: int | None = None,
                        tile: int | None = None, scratch_dir: str | Path | None = None) -> list[tuple[Path, Path]]:
        """Translate image files into `out_dir` as PNG (names keep their stems); returns (input, output) pairs.
        The first unreadable file raises ImageError; `translate_each` collects them instead. max_memory, tile,
        scratch_dir: as for `translate_images`."""
        outcomes = self.translate_each(paths, out_dir, direction, resize, batch_size, show_progress, names,
                                       strict=True, max_memory=max_memory, tile=tile, scratch_dir=scratch_dir)
        return [(outcome.source, outcome.output) for outcome in outcomes if outcome.output is not None]

    def translate_each(self, paths: Sequence[Path], out_dir: Path, direction: str = "AtoB",
                       resize: int | None = None, batch_size: int | None = None, show_progress: bool = True,
                       names: Sequence[str | PurePath] | None = None, strict: bool = False, *,
                       max_memory: int | None = None, tile: int | None = None,
                       scratch_dir: str | Path | None = None) -> Iterator[FileOutcome]:
        """Translate image files into `out_dir` as PNG, yielding one FileOutcome per input in input order.

        `names`: each output's path below `out_dir` (default: the input's file name); the suffix becomes .png and
        collisions are numbered (`io.images.output_paths`). Before anything is written this checks the direction
        and settings (TranslationError) and that no output would overwrite an input (ImageError). A file that
        cannot be read or written is yielded with its error and the rest go on; with `strict` that outcome is the
        last one yielded and its ImageError is raised after it. Progress shows on one bar (`show_progress`).
        max_memory, tile, scratch_dir: exact tiled translation of large images, as for `translate_images`.
        """
        self.check_direction(direction)
        batch_size = self.check_settings(resize, batch_size)
        paths = [Path(path) for path in paths]
        names = list(names) if names is not None else [path.name for path in paths]
        outputs = output_paths(paths, names, Path(out_dir))
        tiling = {"max_memory": max_memory, "tile": tile, "scratch_dir": scratch_dir, "show_progress": show_progress}
        return self._translate_planned(paths, outputs, direction, resize, batch_size, show_progress, strict, tiling)

    def _translate_planned(self, paths: list[Path], outputs: list[Path], direction: str, resize: int | None,
                           batch_size: int, show_progress: bool, strict: bool, tiling: dict[str, Any]
                           ) -> Iterator[FileOutcome]:
        channels = self.source_channels(direction)
        bar = progress_bar(total=len(paths), description=f"translating {direction}", unit="img",
                           enabled=show_progress)
        try:
            for start in range(0, len(paths), batch_size):
                chunk = range(start, min(start + batch_size, len(paths)))
                outcomes: dict[int, FileOutcome] = {}
                loaded: dict[int, Image.Image] = {}
                stop: ImageError | None = None
                for index in chunk:
                    try:
                        loaded[index] = load_image(paths[index], channels)
                    except ImageError as error:
                        outcomes[index] = FileOutcome(paths[index], None, str(error))
                        if strict:  # the files before this one are still translated
                            stop = error
                            break
                translated = self.translate_images(list(loaded.values()), direction, resize, batch_size, **tiling)
                for index, image in zip(loaded, translated, strict=True):
                    try:
                        save_image(image, outputs[index])
                        outcomes[index] = FileOutcome(paths[index], outputs[index])
                    except ImageError as error:
                        outcomes[index] = FileOutcome(paths[index], None, str(error))
                        stop = stop or (error if strict else None)
                bar.update(len(outcomes))
                yield from (outcomes[index] for index in sorted(outcomes))
                if stop is not None:  # strict: the failure was yielded too, then the job stops
                    raise stop
        finally:
            bar.close()


def _prepare(image: Image.Image, channels: int, resize: int | None) -> Image.Image:
    """Match the generator's channels as `load_image` does (alpha over white, 16-bit scaled); with `resize`, scale
    the shorter side to that many pixels."""
    image = convert_mode(image, channels)
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


def load(path: str | Path, device: str = "auto", engine: str = DEFAULT_ENGINE) -> Translator:
    """Load a trained model for translation: `cyclegan.load("runs/my_run")("photo.jpg" as PIL image)`; `engine`:
    torch, onnxruntime or auto (engines.py)."""
    return Translator.load(path, device, engine)
