"""Configuration as data: one frozen dataclass per concern.

Defaults are the paper's (Zhu et al. 2017, Sec. 4 and appendix 7) and the official code's. Every field carries its
help text in `metadata`, so the command line, config files and the run folder all describe the same thing. A config
is validated once, when it is built, and saved into the run folder and into every checkpoint.

The field defaults are CycleGAN's. Another model replaces some of them with its own (`model_defaults`, e.g.
pix2pix's U-Net and batch norm); `config_from_layers` applies those before the config file and the flags, so
anything the person sets still wins.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .model_registry import model_entry, model_names
from .nets.sizes import size_multiple, smallest_input

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class ConfigError(ValueError):
    """A configuration value or file that cannot be used; the message says which and what to do."""


def option(default: Any, help: str, choices: tuple | Callable[[], tuple] | None = None) -> Any:
    """A dataclass field with the help text (and allowed values) the CLI shows."""
    return field(default=default, metadata={"help": help, "choices": choices})


GENERATORS = ("resnet_9blocks", "resnet_6blocks", "unet_128", "unet_256")
DISCRIMINATORS = ("basic", "n_layers", "pixel")
NORMS = ("instance", "batch", "none")
INITS = ("normal", "xavier", "kaiming", "orthogonal")
GAN_MODES = ("lsgan", "vanilla", "wgangp")
# The paper's ablations (Sec. 5.1.4, Tables 4-5): which terms of the full objective (Eq. 3) are trained; and its
# SimGAN baseline (Sec. 5.1.3; Shrivastava et al. 2017): adversarial loss plus lambda * |x - G(x)|_1, no cycle.
OBJECTIVES = ("full", "gan_only", "cycle_only", "gan_forward", "gan_backward", "simgan")
PRECISIONS = ("float32", "bf16", "fp16")
PREPROCESS = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
DIRECTIONS = ("AtoB", "BtoA")
LR_POLICIES = ("linear", "step", "cosine")


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(map(str, choices))}")


def _check_positive(name: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name}={value!r} must be {'>= 0' if allow_zero else '> 0'}")


def _check_range(name: str, value: float, low: float, high: float, high_inclusive: bool = True) -> None:
    if not (low <= value <= high) or (value == high and not high_inclusive):
        raise ConfigError(f"{name}={value!r} must be between {low} and {high}"
                          f"{'' if high_inclusive else ' (exclusive)'}")


# Widths beyond this are far past any published CycleGAN/pix2pix (64) and only end in an allocation failure.
MAX_WIDTH = 4096
MAX_N_LAYERS_D = 10  # the n_layers PatchGAN then needs crops of at least 3 * 2**10 = 3072 pixels
MAX_SEED = 2**64 - 1  # torch.manual_seed's limit
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:(0|[1-9][0-9]*))?")


@dataclass(frozen=True)
class ModelConfig:
    """Networks and objective. Paper notation: G: A->B is gen_ab, F: B->A is gen_ba, D_B judges domain B."""

    model: str = option("cyclegan", "Model to train: cyclegan (unpaired, Zhu et al. 2017) or pix2pix (paired, "
                        "Isola et al. 2017; unset options take the official pix2pix defaults: unet_256, batch norm, "
                        "dropout, vanilla GAN, pool_size 0, no identity loss).", model_names)
    gen_arch: str = option("resnet_9blocks", "Generator: resnet_9blocks (paper, 256px and up), resnet_6blocks "
                           "(paper, 128px), unet_128, unet_256 (pix2pix).", GENERATORS)
    disc_arch: str = option("basic", "Discriminator: basic (70x70 PatchGAN), n_layers (PatchGAN with --n-layers-d), "
                            "pixel (1x1 PixelGAN).", DISCRIMINATORS)
    n_layers_d: int = option(3, "Downsampling layers of the n_layers PatchGAN (3 gives the 70x70 basic one; "
                             f"1 to {MAX_N_LAYERS_D}).")
    ngf: int = option(64, f"Generator width: filters in the first convolution (1 to {MAX_WIDTH}).")
    ndf: int = option(64, f"Discriminator width: filters in the first convolution (1 to {MAX_WIDTH}).")
    norm: str = option("instance", "Normalisation layer in both networks (paper: instance).", NORMS)
    dropout: bool = option(False, "Dropout 0.5 in the generator's residual / U-Net blocks.")
    init_type: str = option("normal", "Weight initialisation (paper: Gaussian N(0, 0.02)).", INITS)
    init_gain: float = option(0.02, "Scale of the weight initialisation.")
    channels_a: int = option(3, "Channels of domain A images (1 = grayscale, 3 = RGB).", (1, 3))
    channels_b: int = option(3, "Channels of domain B images (1 = grayscale, 3 = RGB).", (1, 3))
    gan_mode: str = option("lsgan", "Adversarial loss: lsgan (paper Sec. 4), vanilla (log-likelihood, Eq. 1), "
                           "wgangp (Wasserstein with gradient penalty).", GAN_MODES)
    lambda_a: float = option(10.0, "Weight of the forward cycle loss |F(G(a)) - a| (paper: 10).")
    lambda_b: float = option(10.0, "Weight of the backward cycle loss |G(F(b)) - b| (paper: 10).")
    lambda_identity: float = option(0.5, "Identity loss weight, as a fraction of lambda_a/b (paper Sec. 5.2: 0.5; "
                                    "0 disables it).")
    lambda_gp: float = option(10.0, "Gradient penalty weight for wgangp (Gulrajani et al.: 10).")
    objective: str = option("full", "Terms of the CycleGAN objective: full, a paper ablation (gan_only, "
                            "cycle_only, gan_forward, gan_backward), or simgan: GAN + lambda_self_reg * "
                            "|x - G(x)| instead of the cycle (paper Sec. 5.1.3).", OBJECTIVES)
    lambda_self_reg: float = option(10.0, "Weight of the simgan objective's self-regularisation |a - G(a)| and "
                                    "|b - F(b)| (Shrivastava et al. 2017). 10, the cycle loss's weight, because the "
                                    "term takes the cycle's place and is the same mean L1 over pixels.")
    lambda_l1: float = option(100.0, "Weight of pix2pix's L1 loss |G(a) - b| (Isola et al. 2017, Sec. 4: 100).")

    def __post_init__(self) -> None:
        _validate_fields(self)
        for name in ("ngf", "ndf"):
            _check_range(name, getattr(self, name), 1, MAX_WIDTH)
        _check_range("n_layers_d", self.n_layers_d, 1, MAX_N_LAYERS_D)
        for name in ("lambda_a", "lambda_b", "lambda_identity", "lambda_gp", "init_gain", "lambda_self_reg",
                     "lambda_l1"):
            _check_positive(name, getattr(self, name), allow_zero=True)
        if self.model == "pix2pix":
            if self.objective != "full":
                raise ConfigError(f"objective={self.objective!r} selects terms of the CycleGAN objective; pix2pix "
                                  "has one objective (GAN + lambda_l1 * L1): leave objective=full")
            return  # pix2pix has no identity or self-regularisation term, so A and B may differ in channels
        if self.lambda_identity > 0 and self.channels_a != self.channels_b:
            raise ConfigError(
                f"the identity loss needs domains with equal channels (channels_a={self.channels_a}, "
                f"channels_b={self.channels_b}); set lambda_identity=0")
        if self.objective == "simgan" and self.channels_a != self.channels_b:
            raise ConfigError(
                f"the simgan objective compares |x - G(x)|, which needs domains with equal channels "
                f"(channels_a={self.channels_a}, channels_b={self.channels_b})")

    @property
    def uses_gan(self) -> bool:
        return self.objective != "cycle_only"

    @property
    def uses_forward_cycle(self) -> bool:
        return self.objective in ("full", "cycle_only", "gan_forward")

    @property
    def uses_backward_cycle(self) -> bool:
        return self.objective in ("full", "cycle_only", "gan_backward")

    @property
    def uses_self_regularization(self) -> bool:
        return self.objective == "simgan"


@dataclass(frozen=True)
class DataConfig:
    """Where images come from and how they are preprocessed (official code's options)."""

    dataroot: str = option("builtin", "Data set folder in the official layout (trainA, trainB, testA, testB), or "
                           "'builtin' for the procedural labels<->photos street scenes.")
    dir_a: str | None = option(None, "Folder of domain A training images (instead of --dataroot).")
    dir_b: str | None = option(None, "Folder of domain B training images (instead of --dataroot).")
    builtin_size: int = option(128, "Image size of the built-in data set, in pixels.")
    builtin_count: int = option(200, "Training scenes per domain of the built-in data set.")
    direction: str = option("AtoB", "AtoB trains A as the source domain; BtoA swaps the folders.", DIRECTIONS)
    preprocess: str = option("resize_and_crop", "Preprocessing: resize_and_crop, crop, scale_width, "
                             "scale_width_and_crop, none (sizes rounded to a multiple of 4).", PREPROCESS)
    load_size: int = option(286, "Images are first scaled to this size (paper: 286).")
    crop_size: int = option(256, "Then randomly cropped to this size (paper: 256).")
    flip: bool = option(True, "Random horizontal flips during training.")
    max_dataset_size: int | None = option(None, "Use at most this many images per domain (default: all).")
    serial_batches: bool = option(False, "Pair B images in order instead of sampling B at random each step.")
    num_workers: int = option(2, "Processes that load images in the background (0 loads in the main process).")

    def __post_init__(self) -> None:
        _validate_fields(self)
        for name in ("load_size", "crop_size", "builtin_size", "builtin_count"):
            _check_positive(name, getattr(self, name))
        _check_positive("num_workers", self.num_workers, allow_zero=True)
        if self.max_dataset_size is not None:
            _check_positive("max_dataset_size", self.max_dataset_size)
        if (self.dir_a is None) != (self.dir_b is None):
            raise ConfigError("give both dir_a and dir_b, or neither (and --dataroot)")
        if self.preprocess in ("resize_and_crop", "scale_width_and_crop") and self.crop_size > self.load_size:
            raise ConfigError(f"crop_size={self.crop_size} is larger than load_size={self.load_size}; "
                              "make load_size >= crop_size")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, schedule, logging and checkpoints (paper Sec. 4)."""

    run_dir: str = option("runs/cyclegan", "Run folder: config, checkpoints, log, samples and report.")
    n_epochs: int = option(100, "Epochs at the initial learning rate (paper: 100).")
    n_epochs_decay: int = option(100, "Epochs over which the learning rate decays to zero (paper: 100).")
    batch_size: int = option(1, "Images per step and domain (paper: 1); under torchrun, per process: a step then "
                             "trains on batch_size x processes images.")
    lr: float = option(2e-4, "Adam learning rate (paper: 0.0002).")
    beta1: float = option(0.5, "Adam beta1 (paper: 0.5).")
    beta2: float = option(0.999, "Adam beta2.")
    lr_policy: str = option("linear", "Learning-rate schedule: linear (paper), step, cosine.", LR_POLICIES)
    lr_decay_epochs: int = option(50, "With lr_policy=step: multiply the rate by 0.1 every this many epochs.")
    pool_size: int = option(50, "Generated images the discriminators remember (Shrivastava et al.: 50; 0 = off).")
    seed: int = option(0, "Random seed for initialisation, data order, augmentation and the image pools "
                       "(0 to 2**64 - 1).")
    deterministic: bool = option(False, "Use deterministic algorithms only (bit-exact resume; slower on GPU).")
    device: str = option("auto", "Device: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")
    fast_convolutions: bool = option(False, "On the CPU, run the ResNet generator's stride-1 convolutions "
                                            "(forward) through NNPACK's Winograd/FFT kernels: about 2x faster for "
                                            "them, but their rounding puts gradients ~5e-3 (relative) off the "
                                            "float64 ones where direct float32 convolution is usually ~5e-6 off (up "
                                            "to ~1e-3 when rounding moves a ReLU or L1 kink, with any kernel). Off "
                                            "by default.")
    precision: str = option("float32", "Arithmetic of the forward passes: float32, or automatic mixed precision "
                                       "(torch.autocast) in bf16, or fp16 with a gradient scaler. Mixed "
                                       "precision is for GPUs (tensor cores); on the CPU it runs but is not faster.",
                            PRECISIONS)
    cudnn_benchmark: bool = option(True, "On CUDA, let cuDNN time its convolution algorithms on the first steps and "
                                         "keep the fastest (training images have one size). Off with deterministic.")
    save_every: int = option(5, "Keep a checkpoint every this many epochs (latest is always kept).")
    skip_nonfinite_steps: bool = option(False, "Skip an update whose gradients hold NaN or infinity instead of "
                                               "stopping the run (it stops anyway after 100 such steps in a row).")
    num_samples: int = option(4, "Fixed test images shown in the sample grids after each epoch.")

    def __post_init__(self) -> None:
        _validate_fields(self)
        for name in ("batch_size", "lr", "save_every", "lr_decay_epochs"):
            _check_positive(name, getattr(self, name))
        for name in ("beta1", "beta2"):  # Adam's moment decay rates: torch.optim.Adam refuses others
            _check_range(name, getattr(self, name), 0.0, 1.0, high_inclusive=False)
        _check_range("seed", self.seed, 0, MAX_SEED)
        if not _DEVICE.fullmatch(self.device):
            raise ConfigError(f"device={self.device!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
        for name in ("n_epochs", "n_epochs_decay", "pool_size", "num_samples"):
            _check_positive(name, getattr(self, name), allow_zero=True)
        if self.n_epochs + self.n_epochs_decay == 0:
            raise ConfigError("n_epochs + n_epochs_decay must be at least 1")

    @property
    def total_epochs(self) -> int:
        return self.n_epochs + self.n_epochs_decay


def crop_multiple(model: ModelConfig) -> int:
    """The multiple of which `model`'s generator needs its input sides (`nets.sizes.size_multiple`)."""
    return size_multiple(model.gen_arch)


def smallest_crop(model: ModelConfig) -> int:
    """The smallest square training image `model`'s networks accept (`nets.sizes.smallest_input`)."""
    return smallest_input(model.gen_arch, model.disc_arch, model.n_layers_d)


_CROPPING = ("resize_and_crop", "crop", "scale_width_and_crop")


def _check_crop_size(model: ModelConfig, data: DataConfig) -> None:
    if data.preprocess not in _CROPPING:
        return  # the image sizes come from the files (`none`) or their aspect ratio (`scale_width`)
    smallest, multiple = smallest_crop(model), crop_multiple(model)
    networks = f"gen_arch={model.gen_arch} with disc_arch={model.disc_arch}" + (
        f" and n_layers_d={model.n_layers_d}" if model.disc_arch == "n_layers" else "")
    if data.crop_size < smallest:
        raise ConfigError(f"crop_size={data.crop_size} is too small for {networks}: they need crops of at least "
                          f"{smallest} pixels; use crop_size >= {smallest}")
    if data.crop_size % multiple:
        lower = data.crop_size // multiple * multiple
        sizes = f"{lower} or {lower + multiple}" if lower >= smallest else str(lower + multiple)
        raise ConfigError(f"crop_size={data.crop_size} is not a multiple of {multiple}, which the {model.gen_arch} "
                          f"generator needs to give back images of the input's size; use {sizes}")


@dataclass(frozen=True)
class Config:
    """Everything a run needs; saved as config.yaml in the run folder and inside every checkpoint."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        _check_crop_size(self.model, self.data)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """Build from {'model': {...}, 'data': {...}, 'train': {...}} or from flat field names; the model named
        there brings its defaults for every option `values` leaves out (see `model_defaults`)."""
        return config_from_layers(values)

    @classmethod
    def for_model(cls, model: str) -> Config:
        """The defaults for `model`: the field defaults with `model_defaults(model)` applied."""
        return apply_overrides(cls(), {"model": model, **model_defaults(model)})

    def replace(self, **sections: Any) -> Config:
        return dataclasses.replace(self, **sections)


SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


def _validate_fields(obj: Any) -> None:
    """Checks every field needs: one of its choices, if it has them; a finite number, if it is a float."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        choices = field_choices(f)
        if choices is not None:
            _check_choice(f.name, value, choices)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{f.name}={value!r} must be a finite number")


def field_choices(spec: dataclasses.Field) -> tuple | None:
    """The values a field allows, or None; a callable (the registered models) is asked each time."""
    choices = spec.metadata.get("choices")
    return choices() if callable(choices) else choices


def field_types(section: type) -> dict[str, Any]:
    """Resolved type hints of a config dataclass (field name -> type)."""
    return typing.get_type_hints(section)


def _coerce(section: type, name: str, value: Any) -> Any:
    """Convert a value read from a file or the command line to the field's type."""
    hint = field_types(section)[name]
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null", "")):
        if optional:
            return None
        raise ConfigError(f"{name} cannot be empty")
    try:
        if base is bool:
            if isinstance(value, str):
                lowered = value.lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return lowered in ("true", "1", "yes")
            return bool(value)
        if base is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return base(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} is not a valid {base.__name__}") from None


def _section_of(name: str) -> str:
    owners = [s for s, cls in SECTIONS.items() if name in {f.name for f in dataclasses.fields(cls)}]
    if not owners:
        known = sorted(f.name for cls in SECTIONS.values() for f in dataclasses.fields(cls))
        raise ConfigError(f"unknown option {name!r}; known options: {', '.join(known)}")
    return owners[0]


def _sectioned(values: dict[str, Any], updates: dict[str, dict[str, Any]] | None = None
               ) -> dict[str, dict[str, Any]]:
    """`values`, sectioned or flat, as {'model': {...}, 'data': {...}, 'train': {...}}, added to `updates`."""
    updates = updates if updates is not None else {s: {} for s in SECTIONS}
    for key, value in values.items():
        if key in SECTIONS and isinstance(value, dict):
            for name, inner in value.items():
                if _section_of(name) != key:
                    raise ConfigError(f"option {name!r} does not belong in section {key!r}")
                updates[key][name] = inner
        else:
            updates[_section_of(key)][key] = value
    return updates


def flat_options(values: dict[str, Any]) -> dict[str, Any]:
    """Options by name, from a sectioned ({'train': {...}}), flat or mixed mapping (a config file, flags)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if key in SECTIONS and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat


def apply_overrides(config: Config, values: dict[str, Any]) -> Config:
    """Return `config` with `values` applied; `values` is sectioned ({'model': {...}}) or flat ({'ngf': 32})."""
    updates = _sectioned(values)
    sections = {}
    for name, cls in SECTIONS.items():
        coerced = {k: _coerce(cls, k, v) for k, v in updates[name].items()}
        sections[name] = dataclasses.replace(getattr(config, name), **coerced)
    return dataclasses.replace(config, **sections)


def model_defaults(model: str) -> dict[str, Any]:
    """Options (flat names) whose default differs for `model` from the field defaults, which are CycleGAN's: those
    its registry entry gives (pix2pix: the official code's pix2pix_model.py defaults)."""
    _check_choice("model", model, model_names())
    return dict(model_entry(model).defaults)


def _model_named_in(values: dict[str, Any]) -> str | None:
    section = values.get("model")
    if isinstance(section, dict):  # sectioned: {'model': {'model': 'pix2pix', ...}}
        return section.get("model")
    return section  # flat: {'model': 'pix2pix'}


def config_from_layers(*layers: dict[str, Any]) -> Config:
    """Build a config from option layers applied in order (e.g. a config file, then command-line flags), on top
    of the defaults of the model the last layer naming one chooses (`Config.for_model`)."""
    model = Config().model.model
    merged: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for layer in layers:
        model = _model_named_in(layer) or model
        _sectioned(layer, merged)
    # Applied at once, so that checks across options see the final values, not a half-applied mix of layers.
    return apply_overrides(Config.for_model(model), merged)


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:
                continue  # an unhashable key: SafeLoader refuses it below
            if first is not key_node.start_mark:
                again = key_node.start_mark
                where = (f"line {first.line + 1} and line {again.line + 1}" if first.line != again.line else
                         f"line {again.line + 1}, columns {first.column + 1} and {again.column + 1}")
                raise ConfigError(f"config file {again.name}: {key!r} is given twice ({where}); keep one")
        return super().construct_mapping(node, deep)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (.yaml/.yml), JSON or TOML (.toml) config file into a dict (not yet validated)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    if path.suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise ConfigError(f"config file {path}: use a .yaml, .yml, .toml or .json file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {error.start} cannot be decoded); save it "
                          "as UTF-8") from None
    try:
        if path.suffix == ".toml":
            values = tomllib.loads(text)
        else:
            loader = _UniqueKeyLoader(text)
            loader.name = str(path)  # named in the marks of errors
            try:
                values = loader.get_single_data() or {}
            finally:
                loader.dispose()
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"config file {path} cannot be parsed: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of options")
    return values


def config_to_yaml(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def config_to_json(config: Config) -> str:
    return json.dumps(config.to_dict(), sort_keys=True)


def config_from_json(text: str) -> Config:
    return Config.from_dict(json.loads(text))
