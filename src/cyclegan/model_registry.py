"""The registry of models: one `ModelEntry` per model names all that the rest of the package needs to know about it.

Adding a model is one file (a `models.base.TranslationModel` subclass and its options dataclass, a
`config.ModelOptions`) and one `register_model` call. The config validates `--model` against the names here and
takes the model's options from its dataclass: its flags, its config-file section (named after the model), their
help and their checks. The entry is plain data: the class and the options are named by their import path
("package.module:Class") and imported when first needed (`load_class`, `load_options`); a plug-in may give the
classes themselves instead.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

DATA_KINDS = ("unaligned", "aligned")
# A config file's sections besides the model's own (config.SECTIONS, and "model" for its name): no model's name.
RESERVED_NAMES = ("model", "networks", "data", "train")

# Every column a model may show in its sample grid: (title, key of the image in `TranslationModel.sample`).
CYCLEGAN_COLUMNS = (("real A", "real_a"), ("G(A)", "fake_b"), ("F(G(A))", "rec_a"), ("F(A) identity", "idt_a"),
                    ("real B", "real_b"), ("F(B)", "fake_a"), ("G(F(B))", "rec_b"), ("G(B) identity", "idt_b"))


@dataclass(frozen=True)
class ModelEntry:
    """What the package knows of one model besides its code.

    name: the value of `--model` (`Config.model`) and of its options' section in a config file.
    summary: what the model is, for the help of `--model` (e.g. "unpaired, Zhu et al. 2017").
    model_class: the TranslationModel subclass, or its import path "package.module:Class".
    options: its training options, a `config.ModelOptions` dataclass, or its import path.
    data_kind: "unaligned" (two folders of unpaired images) or "aligned" (side-by-side A|B pairs).
    generators: each generator's checkpoint name and the domains it maps between, e.g. ("gen_ab", "a", "b").
    sample_columns: the sample grid's columns, (title, key in `sample`'s images); keys the step does not return
        (an identity image with lambda_identity=0) are left out.
    official_names: our network name -> the name in the official implementation's files (latest_net_<name>.pth).
    defaults: network, data or training options (flat names) whose default for this model differs from the field
        defaults (CycleGAN's). The model's own options take their defaults from its dataclass.
    generator_builder: for a model whose generators are not image-to-image networks (CoGAN's latent search), the
        function `build(networks) -> {checkpoint name: nn.Module}` that builds and initialises them in place of
        `nets.generators.build_generator`, or its import path; it must live where translation may import it
        (under cyclegan.nets, not models/). None: one image-to-image generator per entry of `generators`.
    """

    name: str
    summary: str
    model_class: type | str
    options: type | str
    data_kind: str
    generators: tuple[tuple[str, str, str], ...]
    sample_columns: tuple[tuple[str, str], ...]
    official_names: Mapping[str, str]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    generator_builder: Callable[[Any], dict[str, Any]] | str | None = None

    def __post_init__(self) -> None:
        if self.name in RESERVED_NAMES:
            raise ValueError(f"a model cannot be named {self.name!r}: config files use that name for a section of "
                             f"their own ({', '.join(RESERVED_NAMES)})")
        if self.data_kind not in DATA_KINDS:
            raise ValueError(f"model {self.name!r}: data_kind={self.data_kind!r} is not one of {', '.join(DATA_KINDS)}")
        object.__setattr__(self, "official_names", MappingProxyType(dict(self.official_names)))
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))

    @property
    def paired(self) -> bool:
        """Whether the model learns from aligned pairs."""
        return self.data_kind == "aligned"

    def load_class(self) -> type:
        """The model's class, imported on first use when the entry names it by path."""
        return _loaded(self.model_class)

    def load_options(self) -> type:
        """The model's options dataclass, imported on first use when the entry names it by path."""
        return _loaded(self.options)

    def load_generator_builder(self) -> Callable[[Any], dict[str, Any]] | None:
        """The function that builds the generators (`generator_builder`), imported on first use; None if none."""
        return None if self.generator_builder is None else _loaded(self.generator_builder)


def _loaded(target: Any) -> Any:
    if not isinstance(target, str):
        return target
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


_MODELS: dict[str, ModelEntry] = {}


def register_model(entry: ModelEntry) -> ModelEntry:
    """Add `entry` to the models `--model` accepts; a name already taken is refused (ValueError)."""
    if entry.name in _MODELS:
        raise ValueError(f"a model named {entry.name!r} is already registered; choose another name")
    _MODELS[entry.name] = entry
    return entry


def unregister_model(name: str) -> None:
    """Remove the model `name` (a plug-in's tests clean up with this)."""
    del _MODELS[name]


def model_names() -> tuple[str, ...]:
    """The registered models' names, in registration order: the choices of `--model`."""
    return tuple(_MODELS)


def model_entry(name: str) -> ModelEntry:
    """The entry of model `name` (KeyError if none is registered under it)."""
    return _MODELS[name]


register_model(ModelEntry(
    name="cyclegan", summary="unpaired, Zhu et al. 2017", model_class="cyclegan.models.cyclegan:CycleGAN",
    options="cyclegan.models.cyclegan:CycleGANOptions", data_kind="unaligned",
    generators=(("gen_ab", "a", "b"), ("gen_ba", "b", "a")), sample_columns=CYCLEGAN_COLUMNS,
    # The official D_A judges domain B (it is trained against G_A's outputs), so it is our disc_b.
    official_names={"gen_ab": "G_A", "gen_ba": "G_B", "disc_b": "D_A", "disc_a": "D_B"}))

register_model(ModelEntry(
    name="pix2pix", summary="paired, Isola et al. 2017", model_class="cyclegan.models.pix2pix:Pix2Pix",
    options="cyclegan.models.pix2pix:Pix2PixOptions", data_kind="aligned",
    generators=(("gen_ab", "a", "b"),),
    sample_columns=(("real A", "real_a"), ("G(A)", "fake_b"), ("real B", "real_b")),
    official_names={"gen_ab": "G", "disc_b": "D"},  # the official pix2pix_model.py saves net_G and net_D
    # The official pix2pix_model.py's defaults (Isola et al. 2017): U-Net-256 with dropout (Sec. 3.2.1, the noise
    # z), batch norm, no image pool. Its GAN and L1 weight are Pix2PixOptions' defaults; direction AtoB is already
    # the field default.
    defaults={"gen_arch": "unet_256", "norm": "batch", "dropout": True, "pool_size": 0}))

register_model(ModelEntry(
    name="feature_gan", summary="unpaired baseline, SimGAN's L1 on VGG-16 relu4_2 features (CycleGAN paper Sec. 5.1.3)",
    model_class="cyclegan.models.feature_gan:FeatureGAN", options="cyclegan.models.feature_gan:FeatureGANOptions",
    data_kind="unaligned", generators=(("gen_ab", "a", "b"), ("gen_ba", "b", "a")),
    # No cycle and no identity term, so neither reconstructions nor identities to show.
    sample_columns=(("real A", "real_a"), ("G(A)", "fake_b"), ("real B", "real_b"), ("F(B)", "fake_a")),
    official_names={}))  # not a model of the official code

register_model(ModelEntry(
    name="bigan", summary="unpaired BiGAN/ALI baseline, Donahue et al. 2017 and Dumoulin et al. 2017",
    model_class="cyclegan.models.bigan:BiGAN",
    options="cyclegan.models.bigan:BiGANOptions", data_kind="unaligned",
    generators=(("gen_ab", "a", "b"), ("gen_ba", "b", "a")),
    sample_columns=(("real A", "real_a"), ("G(A)", "fake_b"), ("real B", "real_b"), ("F(B)", "fake_a")),
    official_names={}))  # the official code has no such model: export as safetensors

register_model(ModelEntry(
    name="cogan", summary="coupled GANs, Liu & Tuzel 2016: translates by latent search",
    model_class="cyclegan.models.cogan:CoGAN", options="cyclegan.models.cogan:CoGANOptions", data_kind="unaligned",
    generators=(("gen_ab", "a", "b"), ("gen_ba", "b", "a")),
    sample_columns=(("real A", "real_a"), ("G_B(z*) of A", "fake_b"), ("real B", "real_b"),
                    ("G_A(z*) of B", "fake_a"), ("G_A(z)", "pair_a"), ("G_B(z)", "pair_b")),
    official_names={},  # the official CycleGAN code has no CoGAN; the CoGAN authors' code is another format
    # DCGAN at the paper tables' small preset (64 px), batch norm as DCGAN and CoGAN; CoGAN has no image pool.
    # load_size / crop_size keep the paper's 286 / 256 ratio at 64 px.
    defaults={"gen_arch": "dcgan_64", "norm": "batch", "pool_size": 0, "load_size": 72, "crop_size": 64},
    generator_builder="cyclegan.nets.cogan:build_generators"))
