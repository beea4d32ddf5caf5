"""Configuration as data: one frozen dataclass per concern.

Defaults are the paper's (Zhu et al. 2017, Sec. 4 and appendix 7) and the official code's. Every field carries its
help text in `metadata`, so the command line, config files and the run folder all describe the same thing. A config
is validated once, when it is built, and saved into the run folder and into every checkpoint (config_files.py reads
and writes the files).

A config is the model's name, its networks (`NetworksConfig`: all a checkpoint needs to rebuild them and all
translation needs), the model's training options (a dataclass beside the model, which its registry entry names),
the data and the training. The networks' and training's field defaults are CycleGAN's; another model replaces some
of them with its own (`model_defaults`, e.g. pix2pix's U-Net and batch norm) and brings its options' defaults;
`config_from_layers` applies those before the config file and the flags, so anything the person sets still wins.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .model_registry import model_entry, model_names
from .nets.sizes import DCGAN_SIZES, latent_image_size, size_multiple, smallest_input


class ConfigError(ValueError):
    """A configuration value or file that cannot be used; the message says which and what to do."""


def option(default: Any, help: str, choices: tuple | Callable[[], tuple] | None = None) -> Any:
    """A dataclass field with the help text (and allowed values) the CLI shows."""
    return field(default=default, metadata={"help": help, "choices": choices})


def with_default(cls: type, name: str, default: Any) -> Any:
    """The option `name` of the dataclass `cls` with another default, for a subclass to restate it: the help and
    the choices stay one definition."""
    spec = next(f for f in dataclasses.fields(cls) if f.name == name)
    return field(default=default, metadata=spec.metadata)


IMAGE_GENERATORS = ("resnet_9blocks", "resnet_6blocks", "unet_128", "unet_256")
LATENT_GENERATORS = tuple(DCGAN_SIZES)  # latent-to-image (CoGAN's, nets/cogan.py); for --model cogan only
GENERATORS = IMAGE_GENERATORS + LATENT_GENERATORS
DISCRIMINATORS = ("basic", "n_layers", "pixel")
NORMS = ("instance", "batch", "none")
INITS = ("normal", "xavier", "kaiming", "orthogonal")
PRECISIONS = ("float32", "bf16", "fp16")
PREPROCESS = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
DIRECTIONS = ("AtoB", "BtoA")
LR_POLICIES = ("linear", "step", "cosine")


def check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(map(str, choices))}")


def check_positive(name: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name}={value!r} must be {'>= 0' if allow_zero else '> 0'}")


def check_range(name: str, value: float, low: float, high: float, high_inclusive: bool = True) -> None:
    if not (low <= value <= high) or (value == high and not high_inclusive):
        raise ConfigError(f"{name}={value!r} must be between {low} and {high}"
                          f"{'' if high_inclusive else ' (exclusive)'}")


# Widths beyond this are far past any published CycleGAN/pix2pix (64) and only end in an allocation failure.
MAX_WIDTH = 4096
MAX_N_LAYERS_D = 10  # the n_layers PatchGAN then needs crops of at least 3 * 2**10 = 3072 pixels
MAX_SEED = 2**64 - 1  # torch.manual_seed's limit
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:(0|[1-9][0-9]*))?")


@dataclass(frozen=True)
class NetworksConfig:
    """The networks' architecture: all that rebuilds a checkpoint's networks and all that translation needs. Paper
    notation: G: A->B is gen_ab, F: B->A is gen_ba, D_B judges domain B. How the networks are trained is the model's
    (its options dataclass, `model_registry.ModelEntry.options`)."""

    gen_arch: str = option("resnet_9blocks", "Generator: resnet_9blocks (paper, 256px and up), resnet_6blocks "
                           "(paper, 128px), unet_128, unet_256 (pix2pix); for --model cogan the latent-to-image "
                           "dcgan_32, dcgan_64, dcgan_128 (DCGAN, images of that side).", GENERATORS)
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

    def __post_init__(self) -> None:
        validate_fields(self)
        for name in ("ngf", "ndf"):
            check_range(name, getattr(self, name), 1, MAX_WIDTH)
        check_range("n_layers_d", self.n_layers_d, 1, MAX_N_LAYERS_D)
        check_positive("init_gain", self.init_gain, allow_zero=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> NetworksConfig:
        """From a mapping that may hold more than the networks' options (the config of an exported file written
        before the networks had their own section also held the loss weights): those others are left out."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{name: value for name, value in values.items() if name in names})


@dataclass(frozen=True)
class ModelOptions:
    """The base of a model's training options: its own dataclass, beside the model, named by its registry entry
    (`ModelEntry.options`). Each field is an `option`, so flags, config-file sections and help come from it.

    latent_generators: whether the model's generators draw images from a latent code (gen_arch dcgan_*, CoGAN)
    rather than translate images (every other gen_arch); the config refuses the other kind."""

    latent_generators: ClassVar[bool] = False

    def __post_init__(self) -> None:
        validate_fields(self)

    def check_networks(self, networks: NetworksConfig) -> None:
        """Raise ConfigError if these options cannot train `networks` (e.g. a term that compares an image of one
        domain with one of the other needs equal channels). Nothing by default."""


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
        validate_fields(self)
        for name in ("load_size", "crop_size", "builtin_size", "builtin_count"):
            check_positive(name, getattr(self, name))
        check_positive("num_workers", self.num_workers, allow_zero=True)
        if self.max_dataset_size is not None:
            check_positive("max_dataset_size", self.max_dataset_size)
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
                                       "(torch.autocast) in bf16, or fp16 with a gradient scaler. bf16 is the fast "
                                       "path on GPUs (tensor cores) and on CPUs with native bfloat16: AMX or "
                                       "AVX512-BF16 (README, Speed: 1.7-2.5x per 128 px step); without them it is "
                                       "emulated. fp16 is for GPUs.",
                            PRECISIONS)
    cudnn_benchmark: bool = option(True, "On CUDA, let cuDNN time its convolution algorithms on the first steps and "
                                         "keep the fastest (training images have one size). Off with deterministic.")
    save_every: int = option(5, "Keep a checkpoint every this many epochs (latest is always kept).")
    skip_nonfinite_steps: bool = option(False, "Skip an update whose gradients hold NaN or infinity instead of "
                                               "stopping the run (it stops anyway after 100 such steps in a row).")
    num_samples: int = option(4, "Fixed test images shown in the sample grids after each epoch.")

    def __post_init__(self) -> None:
        validate_fields(self)
        for name in ("batch_size", "lr", "save_every", "lr_decay_epochs"):
            check_positive(name, getattr(self, name))
        for name in ("beta1", "beta2"):  # Adam's moment decay rates: torch.optim.Adam refuses others
            check_range(name, getattr(self, name), 0.0, 1.0, high_inclusive=False)
        check_range("seed", self.seed, 0, MAX_SEED)
        if not _DEVICE.fullmatch(self.device):
            raise ConfigError(f"device={self.device!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
        for name in ("n_epochs", "n_epochs_decay", "pool_size", "num_samples"):
            check_positive(name, getattr(self, name), allow_zero=True)
        if self.n_epochs + self.n_epochs_decay == 0:
            raise ConfigError("n_epochs + n_epochs_decay must be at least 1")

    @property
    def total_epochs(self) -> int:
        return self.n_epochs + self.n_epochs_decay


def crop_multiple(networks: NetworksConfig) -> int:
    """The multiple of which the generator of `networks` needs its input sides (`nets.sizes.size_multiple`)."""
    return size_multiple(networks.gen_arch)


def smallest_crop(networks: NetworksConfig) -> int:
    """The smallest square training image `networks` accept (`nets.sizes.smallest_input`)."""
    return smallest_input(networks.gen_arch, networks.disc_arch, networks.n_layers_d)


_CROPPING = ("resize_and_crop", "crop", "scale_width_and_crop")


def _check_generator_kind(model: str, options: ModelOptions, networks: NetworksConfig) -> None:
    latent = networks.gen_arch in LATENT_GENERATORS
    if latent and not options.latent_generators:
        raise ConfigError(f"gen_arch={networks.gen_arch} draws images from a latent code (for --model cogan); model "
                          f"{model!r} translates images: use one of {', '.join(IMAGE_GENERATORS)}")
    if options.latent_generators and not latent:
        raise ConfigError(f"model {model!r} draws images from a latent code: gen_arch={networks.gen_arch} is an "
                          f"image-to-image generator; use one of {', '.join(LATENT_GENERATORS)}")


def _check_latent_crop(networks: NetworksConfig, data: DataConfig, side: int) -> None:
    """A latent-to-image generator makes images of one side: the training images must be cropped to it."""
    if data.preprocess not in _CROPPING:
        raise ConfigError(f"gen_arch={networks.gen_arch} makes {side}x{side} images, so its training images must be "
                          f"cropped to that size: preprocess={data.preprocess} keeps the files' sizes; use one of "
                          f"{', '.join(_CROPPING)} with crop_size={side}")
    if data.crop_size != side:
        raise ConfigError(f"crop_size={data.crop_size}, but gen_arch={networks.gen_arch} makes {side}x{side} images; "
                          f"use crop_size={side} (and load_size >= {side}), or the dcgan_* of that size")


def _check_crop_size(networks: NetworksConfig, data: DataConfig) -> None:
    side = latent_image_size(networks.gen_arch)
    if side is not None:
        return _check_latent_crop(networks, data, side)
    if data.preprocess not in _CROPPING:
        return  # the image sizes come from the files (`none`) or their aspect ratio (`scale_width`)
    smallest, multiple = smallest_crop(networks), crop_multiple(networks)
    described = f"gen_arch={networks.gen_arch} with disc_arch={networks.disc_arch}" + (
        f" and n_layers_d={networks.n_layers_d}" if networks.disc_arch == "n_layers" else "")
    if data.crop_size < smallest:
        raise ConfigError(f"crop_size={data.crop_size} is too small for {described}: they need crops of at least "
                          f"{smallest} pixels; use crop_size >= {smallest}")
    if data.crop_size % multiple:
        lower = data.crop_size // multiple * multiple
        sizes = f"{lower} or {lower + multiple}" if lower >= smallest else str(lower + multiple)
        raise ConfigError(f"crop_size={data.crop_size} is not a multiple of {multiple}, which the "
                          f"{networks.gen_arch} generator needs to give back images of the input's size; use {sizes}")


DEFAULT_MODEL = "cyclegan"


def options_class(model: str) -> type[ModelOptions]:
    """The options dataclass of the registered model `model` (ConfigError naming the choices if there is none)."""
    check_choice("model", model, model_names())
    return model_entry(model).load_options()


@dataclass(frozen=True)
class Config:
    """Everything a run needs; saved as config.yaml in the run folder and inside every checkpoint.

    model: the registered model's name. networks: the architecture. options: the model's training options, an
    instance of its registry entry's dataclass (the model's defaults when not given). In a file, the options are
    the section named after the model (`cyclegan:`, `pix2pix:`)."""

    model: str = DEFAULT_MODEL
    networks: NetworksConfig = field(default_factory=NetworksConfig)
    options: ModelOptions | None = None
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        wanted = options_class(self.model)
        if self.options is None:
            object.__setattr__(self, "options", wanted())
        elif type(self.options) is not wanted:
            raise ConfigError(f"model {self.model!r} takes {wanted.__name__} options, not "
                              f"{type(self.options).__name__}")
        _check_generator_kind(self.model, self.options, self.networks)
        self.options.check_networks(self.networks)
        _check_crop_size(self.networks, self.data)

    def to_dict(self) -> dict[str, Any]:
        """{'model': name, 'networks': {...}, <model name>: {...its options}, 'data': {...}, 'train': {...}}."""
        return {"model": self.model, "networks": dataclasses.asdict(self.networks),
                self.model: dataclasses.asdict(self.options), "data": dataclasses.asdict(self.data),
                "train": dataclasses.asdict(self.train)}

    def flat(self) -> dict[str, Any]:
        """Every option by its name: the model's name, the networks, the model's options, data and training."""
        return flat_options(self.to_dict())

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """Build from a sectioned (`to_dict`), flat or mixed mapping; the model named there brings its defaults for
        every option `values` leaves out (see `model_defaults`). The layout written before the networks and the
        model's options had sections of their own ({'model': {'model': ..., 'gen_arch': ..., 'lambda_a': ...}})
        is read too: of the options it held for every model, those of the named model are kept."""
        return config_from_layers(values)

    @classmethod
    def for_model(cls, model: str) -> Config:
        """The defaults for `model`: its options' defaults, and `model_defaults(model)` over the other fields
        (applied at once: a model's networks may not fit the field defaults, CoGAN's dcgan_* generators)."""
        return _updated(cls(), _sectioned(model_defaults(model), model), model)

    def replace(self, **sections: Any) -> Config:
        return dataclasses.replace(self, **sections)


# The sections every model has; a model's options are the section named after it (`option_sections`).
SECTIONS: dict[str, type] = {"networks": NetworksConfig, "data": DataConfig, "train": TrainConfig}
_FIXED_FIELDS = {f.name: section for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)}


def option_sections() -> dict[str, type[ModelOptions]]:
    """Each registered model's options dataclass, by model name."""
    return {name: options_class(name) for name in model_names()}


def models_with_option(name: str) -> list[str]:
    """The registered models whose options have a field `name`."""
    return [model for model, cls in option_sections().items() if name in {f.name for f in dataclasses.fields(cls)}]


def validate_fields(obj: Any) -> None:
    """Checks every field needs: one of its choices, if it has them; a finite number, if it is a float."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        choices = field_choices(f)
        if choices is not None:
            check_choice(f.name, value, choices)
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


def _section_of(name: str, model: str) -> str:
    """The section that holds option `name` when `model` is trained: a fixed one, or 'options'."""
    if name in _FIXED_FIELDS:
        return _FIXED_FIELDS[name]
    if name in {f.name for f in dataclasses.fields(options_class(model))}:
        return "options"
    owners = models_with_option(name)
    if owners:
        raise ConfigError(f"{name} is an option of {' and '.join(owners)}, not of model {model!r}; leave it out "
                          f"or choose --model {owners[0]}")
    known = sorted({*_FIXED_FIELDS, *(f.name for cls in option_sections().values() for f in dataclasses.fields(cls))})
    raise ConfigError(f"unknown option {name!r}; known options: model, {', '.join(known)}")


def _legacy_section(values: dict[str, Any], model: str, updates: dict[str, dict[str, Any]]) -> None:
    """The 'model' section of configs written before the networks and the model's options had sections of their
    own: it held the model's name, the networks and every model's options. Other models' options never applied to
    `model`, so they are left out."""
    for name, value in values.items():
        owners = models_with_option(name)
        if name == "model" or (name not in _FIXED_FIELDS and owners and model not in owners):
            continue
        section = _section_of(name, model)
        if section not in ("networks", "options"):
            raise ConfigError(f"option {name!r} does not belong in section 'model'")
        updates[section][name] = value


def _sectioned(values: dict[str, Any], model: str, updates: dict[str, dict[str, Any]] | None = None
               ) -> dict[str, dict[str, Any]]:
    """`values` (sectioned, flat or mixed) for `model`, as {'networks': {...}, 'options': {...}, 'data': {...},
    'train': {...}}, added to `updates`."""
    updates = updates if updates is not None else {s: {} for s in (*SECTIONS, "options")}
    for key, value in values.items():
        if key == "model" and isinstance(value, dict):
            _legacy_section(value, model, updates)
        elif key == "model":
            continue  # the model's name: `model_named_in` took it
        elif (key in SECTIONS or key in model_names()) and isinstance(value, dict):
            if key in model_names() and key != model:
                raise ConfigError(f"section {key!r} holds options of model {key}, but the model is {model!r}; set "
                                  f"model: {key}, or remove the section")
            section = key if key in SECTIONS else "options"
            for name, inner in value.items():
                if _section_of(name, model) != section:
                    raise ConfigError(f"option {name!r} does not belong in section {key!r}")
                updates[section][name] = inner
        else:
            updates[_section_of(key, model)][key] = value
    return updates


def flat_options(values: dict[str, Any]) -> dict[str, Any]:
    """Options by name, from a sectioned ({'train': {...}}), flat or mixed mapping (a config file, flags); the
    model's name, if `values` names one, under 'model'."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and (key in SECTIONS or key in model_names() or key == "model"):
            flat.update(value)
        else:
            flat[key] = value
    named = model_named_in(values)
    flat.pop("model", None)
    return {"model": named, **flat} if named else flat


def _updated(config: Config, updates: dict[str, dict[str, Any]], model: str | None = None) -> Config:
    """`config` with `updates` (from `_sectioned`, for `model`, by default `config.model`) converted to the fields'
    types and applied at once, so that checks across options see the final values, not a half-applied mix. Another
    `model` brings its options, at their defaults, under the updates."""
    model = model or config.model
    options = config.options if model == config.model else options_class(model)()
    sections: dict[str, Any] = {}
    for name, current in (*((section, getattr(config, section)) for section in SECTIONS), ("options", options)):
        coerced = {k: _coerce(type(current), k, v) for k, v in updates[name].items()}
        sections[name] = dataclasses.replace(current, **coerced)
    return dataclasses.replace(config, model=model, **sections)


def apply_overrides(config: Config, values: dict[str, Any]) -> Config:
    """Return `config` with `values` applied; `values` is sectioned ({'networks': {...}}) or flat ({'ngf': 32}).
    Naming another model gives `config` that model's options, at their defaults, before `values` apply."""
    model = model_named_in(values) or config.model
    return _updated(config, _sectioned(values, model), model)


def model_defaults(model: str) -> dict[str, Any]:
    """Options (flat names) besides the model's own whose default differs for `model` from the field defaults:
    those its registry entry gives (pix2pix: the official code's pix2pix_model.py defaults)."""
    check_choice("model", model, model_names())
    return dict(model_entry(model).defaults)


def model_named_in(values: dict[str, Any]) -> str | None:
    """The model a layer of options names: {'model': 'pix2pix'}, or {'model': {'model': 'pix2pix'}} in the layout
    of older configs; None if it names none."""
    named = values.get("model")
    if isinstance(named, dict):
        named = named.get("model")
    if named is not None and not isinstance(named, str):
        raise ConfigError(f"model={named!r} is not a model name; use one of {', '.join(model_names())}")
    return named


def networks_from_dict(values: dict[str, Any]) -> tuple[str, NetworksConfig]:
    """The model's name and its networks from a stored config (`Config.to_dict`'s layout, or the older one with
    one 'model' section), without the model's options: all that translation needs, read without importing the
    model's training code."""
    model = model_named_in(values) or DEFAULT_MODEL
    check_choice("model", model, model_names())
    names = {f.name for f in dataclasses.fields(NetworksConfig)}
    section = values.get("networks")
    if section is None and isinstance(values.get("model"), dict):  # the older layout: every model's options too
        section = {name: value for name, value in values["model"].items() if name in names}
    if not isinstance(section, dict):
        raise ConfigError("the config has no 'networks' section")
    unknown = sorted(set(section) - names)
    if unknown:
        raise ConfigError(f"option {unknown[0]!r} does not belong in section 'networks'")
    return model, NetworksConfig(**{name: _coerce(NetworksConfig, name, value) for name, value in section.items()})


def config_from_layers(*layers: dict[str, Any]) -> Config:
    """Build a config from option layers applied in order (e.g. a config file, then command-line flags), on top
    of the defaults of the model the last layer naming one chooses (`Config.for_model`)."""
    model = DEFAULT_MODEL
    for layer in layers:
        model = model_named_in(layer) or model
    merged: dict[str, dict[str, Any]] = {s: {} for s in (*SECTIONS, "options")}
    for layer in layers:
        _sectioned(layer, model, merged)
    return _updated(Config.for_model(model), merged)
