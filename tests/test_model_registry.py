"""The model registry (model_registry.py): a model from outside the package is one class, its options dataclass and
one entry, and trains through `cyclegan train` with its own flags; names are unique; each built-in entry's data
kind and official names are used."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cyclegan import losses
from cyclegan.cli.main import main
from cyclegan.config import Config, ConfigError, ModelOptions, NetworksConfig, TrainConfig, config_from_layers, option
from cyclegan.export import export_model
from cyclegan.generators import build_generators
from cyclegan.io.checkpoints import load_checkpoint, save_checkpoint
from cyclegan.io.run_folder import RunFolder
from cyclegan.model_registry import ModelEntry, model_entry, model_names, register_model, unregister_model
from cyclegan.models import build_model
from cyclegan.models.base import TranslationModel, adam, loss_values
from cyclegan.translate import Translator

from .helpers import tiny_dataset


@dataclass(frozen=True)
class CopyOptions(ModelOptions):
    copy_weight: float = option(1.0, "Weight of the L1 distance between the input and its copy.")


class CopyModel(TranslationModel):
    """One generator trained to reproduce its input (L1 only): the smallest model the loop can run."""

    def __init__(self, networks: NetworksConfig, options: CopyOptions, train: TrainConfig) -> None:
        super().__init__(networks, options, train.precision)
        self.gen_ab = self.generators_for(networks)["gen_ab"]
        self.optimizers = {"gen": adam(self.gen_ab.parameters(), train)}

    @staticmethod
    def generators_for(networks: NetworksConfig) -> dict[str, nn.Module]:
        return build_generators("copy", networks)

    def networks(self) -> dict[str, nn.Module]:
        return {"gen_ab": self.gen_ab}

    def training_step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, float]:
        self.optimizers["gen"].zero_grad(set_to_none=True)
        terms = {"copy": losses.paired_l1_loss(self.gen_ab(real_a), real_a, self.options.copy_weight)}
        self.backward(sum(terms.values()))
        self.optimizer_step("gen")
        self.end_step()
        return loss_values(terms)

    def sample(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        with self.evaluating():
            return {"real_a": real_a, "fake_b": self.gen_ab(real_a)}


COPY = ModelEntry(name="copy", summary="copies its input", model_class=CopyModel, options=CopyOptions,
                  data_kind="unaligned", generators=(("gen_ab", "a", "b"),),
                  sample_columns=(("input", "real_a"), ("copy", "fake_b")), official_names={"gen_ab": "G"})


@pytest.fixture
def copy_model():
    register_model(COPY)
    try:
        yield COPY
    finally:
        unregister_model(COPY.name)


def test_a_model_registered_from_outside_trains_through_the_cli(tmp_path, copy_model, capsys):
    data, run = tiny_dataset(tmp_path / "data", count_a=1, count_b=1), tmp_path / "run"
    assert main(["train", "--model", "copy", "--dataroot", str(data), "--run-dir", str(run), "--ngf", "4",
                 "--gen-arch", "resnet_6blocks", "--load-size", "32", "--crop-size", "32", "--n-epochs", "1",
                 "--n-epochs-decay", "0", "--num-workers", "0", "--device", "cpu", "--num-samples", "1",
                 "--copy-weight", "2.5", "--quiet"]) == 0
    assert "finished after 1 epoch(s), 1 step(s)" in capsys.readouterr().out
    config, state = load_checkpoint(RunFolder(run).latest_checkpoint)
    assert config.model == "copy" and set(state["nets"]) == {"gen_ab"}
    assert config.options == CopyOptions(copy_weight=2.5)
    assert "copy_weight: 2.5" in RunFolder(run).config_file.read_text()  # its own section of the config file
    sample = RunFolder(run).sample_file(1)
    assert sample.is_file()
    with Image.open(sample) as grid:  # the entry's two columns, not CycleGAN's
        assert grid.width < 3 * 128


def test_a_taken_name_is_refused_and_an_unknown_one_is_a_config_error(copy_model):
    for name in ("cyclegan", "copy"):
        with pytest.raises(ValueError, match=f"a model named '{name}' is already registered"):
            register_model(ModelEntry(name=name, summary="", model_class=CopyModel, options=CopyOptions,
                                      data_kind="unaligned", generators=(),
                                      sample_columns=(), official_names={}))
    assert model_entry("copy") is COPY and model_names()[:2] == ("cyclegan", "pix2pix")
    with pytest.raises(ConfigError, match="model='nonesuch' is not one of cyclegan, pix2pix, (.+, )?copy$"):
        Config(model="nonesuch")
    with pytest.raises(ValueError, match="data_kind='paired' is not one of unaligned, aligned"):
        ModelEntry(name="x", summary="", model_class=CopyModel, options=CopyOptions, data_kind="paired",
                   generators=(), sample_columns=(), official_names={})
    with pytest.raises(ValueError, match="a model cannot be named 'data'"):
        ModelEntry(name="data", summary="", model_class=CopyModel, options=CopyOptions, data_kind="unaligned",
                   generators=(), sample_columns=(), official_names={})


def test_unregistered_model_is_gone_from_the_choices():
    assert "copy" not in model_names()
    with pytest.raises(ConfigError, match=r"model='copy' is not one of cyclegan, pix2pix(, (?!copy\b)\w+)*$"):
        Config(model="copy")


def test_pix2pix_exports_the_file_names_the_official_pix2pix_code_loads(tmp_path):
    config = config_from_layers({"model": "pix2pix", "ngf": 4, "ndf": 4, "gen_arch": "unet_128",
                                 "crop_size": 128, "load_size": 128})
    nets = build_model(config).network_state()
    checkpoint = save_checkpoint(tmp_path / "model.safetensors", config, {"nets": nets})
    written = export_model(checkpoint, tmp_path / "official", fmt="official")
    assert sorted(path.name for path in written) == ["latest_net_D.pth", "latest_net_G.pth"]
    assert model_entry("pix2pix").data_kind == "aligned" and model_entry("cyclegan").data_kind == "unaligned"


def test_an_official_pix2pix_checkpoint_folder_translates_as_the_model_it_came_from(tmp_path):
    """The folder the official pix2pix code writes (latest_net_G.pth, latest_net_D.pth) loads as a one-way
    model, by the registry's official names, and gives the pixels of the checkpoint it was exported from."""
    config = config_from_layers({"model": "pix2pix", "ngf": 4, "ndf": 4, "gen_arch": "unet_128",
                                 "crop_size": 128, "load_size": 128})
    torch.manual_seed(0)
    model = build_model(config)
    for module in model.gen_ab.modules():  # running statistics that are not the initial ones
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    checkpoint = save_checkpoint(tmp_path / "model.safetensors", config, {"nets": model.network_state()})
    export_model(checkpoint, tmp_path / "official", fmt="official")
    official, ours = Translator.load(tmp_path / "official", device="cpu"), Translator.load(checkpoint, device="cpu")
    assert set(official.generators) == {"AtoB"} and official.config.norm == "batch"
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (128, 160, 3), dtype=np.uint8))
    assert official(image).tobytes() == ours(image).tobytes()
