import argparse
import dataclasses

import pytest
import torch

from cyclegan.cli.options import add_config_options, given_options
from cyclegan.config import (
    IMAGE_GENERATORS,
    NORMS,
    SECTIONS,
    Config,
    ConfigError,
    NetworksConfig,
    apply_overrides,
    config_from_layers,
    crop_multiple,
    field_types,
    option_sections,
    smallest_crop,
)
from cyclegan.config_files import config_from_json, config_to_json, config_to_yaml, load_config_file
from cyclegan.model_registry import model_names
from cyclegan.models.cyclegan import CycleGANOptions
from cyclegan.nets.discriminators import build_discriminator
from cyclegan.nets.generators import build_generator


def test_defaults_are_the_papers():
    config = Config()
    assert (config.options.gan_mode, config.options.lambda_a, config.options.lambda_b) == ("lsgan", 10.0, 10.0)
    assert config.options.lambda_identity == 0.5 and config.networks.norm == "instance"
    assert (config.train.lr, config.train.beta1, config.train.batch_size) == (2e-4, 0.5, 1)
    assert (config.train.n_epochs, config.train.n_epochs_decay, config.train.pool_size) == (100, 100, 50)
    assert (config.data.load_size, config.data.crop_size) == (286, 256)


ALL_SECTIONS = {**SECTIONS, **option_sections()}  # networks, data, train and each model's options


def test_every_option_has_help():
    assert set(ALL_SECTIONS) >= {"networks", "data", "train", "cyclegan", "pix2pix"}
    for cls in ALL_SECTIONS.values():
        for spec in dataclasses.fields(cls):
            assert len(spec.metadata.get("help", "")) > 10, spec.name


def test_json_and_yaml_round_trip(tmp_path):
    config = apply_overrides(Config(), {"ngf": 32, "gan_mode": "wgangp", "dir_a": "x", "dir_b": "y", "seed": 3})
    assert config_from_json(config_to_json(config)) == config
    path = tmp_path / "c.yaml"
    path.write_text(config_to_yaml(config))
    assert Config.from_dict(load_config_file(path)) == config


def test_toml_file_with_sections_and_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[model]\nngf = 16\ngen_arch = "unet_128"\n[train]\nn_epochs = 3\n')
    config = apply_overrides(Config(), load_config_file(path))
    config = apply_overrides(config, {"train": {"n_epochs": 7}})
    assert (config.networks.ngf, config.networks.gen_arch, config.train.n_epochs) == (16, "unet_128", 7)
    path.write_text('model = "cyclegan"\n[networks]\nngf = 16\n[cyclegan]\nlambda_a = 3.0\n[train]\nn_epochs = 3\n')
    config = apply_overrides(Config(), load_config_file(path))
    assert (config.networks.ngf, config.options.lambda_a, config.train.n_epochs) == (16, 3.0, 3)


def test_a_config_of_the_layout_before_the_networks_section_reads_the_same():
    """{'model': {'model': ..., networks and every model's options}}, as checkpoints and run folders hold it."""
    old = {"model": {"model": "pix2pix", "gen_arch": "unet_128", "ngf": 8, "gan_mode": "lsgan", "lambda_l1": 50.0,
                     "lambda_a": 10.0, "lambda_identity": 0.0, "objective": "full"},
           "data": {"crop_size": 128, "load_size": 128}, "train": {"pool_size": 3}}
    config = Config.from_dict(old)
    assert (config.model, config.networks.gen_arch, config.networks.ngf) == ("pix2pix", "unet_128", 8)
    assert (config.options.gan_mode, config.options.lambda_l1, config.train.pool_size) == ("lsgan", 50.0, 3)
    assert Config.from_dict(config.to_dict()) == config
    assert set(config.to_dict()) == {"model", "networks", "pix2pix", "data", "train"}


@pytest.mark.parametrize("values,message", [
    ({"gan_mode": "hinge"}, "gan_mode='hinge'"),
    ({"ngf": 0}, "ngf=0"),
    ({"ngf": "wide"}, "ngf='wide' is not a valid int"),
    ({"lambda_identity": 0.5, "channels_a": 1}, "identity loss"),
    ({"crop_size": 300}, "crop_size=300"),
    ({"dir_a": "only-one"}, "both dir_a and dir_b"),
    ({"nonsense": 1}, "unknown option 'nonsense'"),
    ({"model": {"lr": 1}}, "does not belong in section 'model'"),
    ({"networks": {"lambda_a": 1}}, "does not belong in section 'networks'"),
    ({"pix2pix": {"lambda_l1": 1}}, "section 'pix2pix' holds options of model pix2pix, but the model is 'cyclegan'"),
    ({"lambda_l1": 5}, "lambda_l1 is an option of pix2pix, not of model 'cyclegan'; leave it out or choose --model "
                       "pix2pix"),
    ({"model": "nonesuch"}, "model='nonesuch' is not one of cyclegan, pix2pix"),
])
def test_bad_values_are_refused_with_the_name(values, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Config(), values)


def test_bad_config_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="cannot be parsed"):
        load_config_file(broken)


def test_cli_flags_map_onto_the_dataclasses():
    parser = argparse.ArgumentParser()
    add_config_options(parser)
    args = parser.parse_args(["--ngf", "32", "--no-flip", "--lambda_a", "5", "--max-dataset-size", "10",
                              "--lr-policy", "cosine"])
    given = given_options(args)
    assert given == {"networks": {"ngf": 32}, "lambda_a": 5.0, "data": {"flip": False, "max_dataset_size": 10},
                     "train": {"lr_policy": "cosine"}}
    config = apply_overrides(Config(), given)
    assert config.networks.ngf == 32 and config.data.flip is False and config.train.lr_policy == "cosine"
    with pytest.raises(SystemExit):
        parser.parse_args(["--gen-arch", "transformer"])
    given = given_options(parser.parse_args(["--model", "pix2pix", "--lambda-l1", "50", "--gan-mode", "lsgan"]))
    assert given == {"model": "pix2pix", "lambda_l1": 50.0, "gan_mode": "lsgan"}
    assert config_from_layers(given).options.lambda_l1 == 50.0


def test_ablation_switches():
    assert CycleGANOptions(objective="gan_forward").uses_forward_cycle
    assert not CycleGANOptions(objective="gan_forward").uses_backward_cycle
    assert not CycleGANOptions(objective="cycle_only").uses_gan
    assert not CycleGANOptions(objective="gan_only").uses_forward_cycle


def test_readme_documents_every_option():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "`--model`" in readme
    for cls in ALL_SECTIONS.values():
        for spec in dataclasses.fields(cls):
            assert f"`--{spec.name.replace('_', '-')}`" in readme, spec.name


FLOAT_OPTIONS = [(section, spec.name) for section, cls in ALL_SECTIONS.items() for spec in dataclasses.fields(cls)
                 if field_types(cls)[spec.name] is float]


@pytest.mark.parametrize("section,name", FLOAT_OPTIONS)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), "nan", "-inf"])
def test_every_float_option_refuses_nan_and_infinity(section, name, value):
    assert len(FLOAT_OPTIONS) >= 11  # six lambdas of cyclegan, two of pix2pix, init_gain, lr, beta1, beta2
    model = {"model": section} if section in model_names() else {}
    with pytest.raises(ConfigError, match=rf"^{name}=-?(nan|inf) must be a finite number"):
        config_from_layers({**model, section: {name: value}})


def _accepts(net, size, generator):
    try:
        out = net(torch.zeros(1, 3, size, size))
    except (RuntimeError, ValueError):  # too small to pad, convolve or normalise
        return False
    return out.shape[-2:] == (size, size) if generator else out.numel() > 0


@pytest.mark.parametrize("gen_arch", IMAGE_GENERATORS)
@pytest.mark.parametrize("disc_arch,n_layers_d", [("basic", 3), ("n_layers", 1), ("n_layers", 4), ("pixel", 3)])
def test_the_smallest_crop_is_what_the_networks_accept(gen_arch, disc_arch, n_layers_d):
    """The arithmetic of `smallest_crop` against the networks themselves, for every norm, in training mode."""
    model = NetworksConfig(gen_arch=gen_arch, disc_arch=disc_arch, n_layers_d=n_layers_d)
    smallest, multiple = smallest_crop(model), crop_multiple(model)
    if multiple == 4:  # every size up to two multiples past the smallest, and twice the smallest
        sizes = [*range(1, smallest + 9), 2 * smallest]
    else:  # a U-Net's multiple is its smallest size: the sizes around it and around twice it
        sizes = (smallest // 2, smallest - 4, smallest - 1, smallest, smallest + 1, smallest + 4, 2 * smallest)
    for norm in NORMS:
        gen = build_generator(gen_arch, 3, 3, 1, norm, False).train()
        disc = build_discriminator(disc_arch, 3, 1, n_layers_d, norm).train()
        accepted = [size for size in sizes if _accepts(gen, size, True) and _accepts(disc, size, False)]
        assert accepted == [size for size in sizes if size >= smallest and size % multiple == 0], norm


def test_crop_size_is_checked_against_the_networks_with_the_minimum_named():
    with pytest.raises(ConfigError, match=r"crop_size=64 is too small for gen_arch=unet_128 .* at least 128"):
        apply_overrides(Config(), {"gen_arch": "unet_128", "crop_size": 64, "load_size": 64})
    with pytest.raises(ConfigError, match=r"n_layers_d=5: they need crops of at least 96 pixels"):
        apply_overrides(Config(), {"disc_arch": "n_layers", "n_layers_d": 5, "crop_size": 64})
    with pytest.raises(ConfigError, match=r"crop_size=26 is not a multiple of 4.*use 24 or 28"):
        apply_overrides(Config(), {"crop_size": 26})
    assert apply_overrides(Config(), {"crop_size": 24, "load_size": 24}).data.crop_size == 24
    # sizes that come from the files are not the config's to check
    assert apply_overrides(Config(), {"crop_size": 2, "preprocess": "none"}).data.crop_size == 2


def test_a_config_file_and_flags_are_checked_together(tmp_path):
    """pix2pix's U-Net-256 and a 128-pixel crop from the file, the 128-pixel U-Net from the flags: valid together."""
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  model: pix2pix\ndata:\n  crop_size: 128\n  load_size: 144\n")
    config = config_from_layers(load_config_file(path), {"model": {"gen_arch": "unet_128"}})
    assert (config.networks.gen_arch, config.data.crop_size) == ("unet_128", 128)
    with pytest.raises(ConfigError, match="crop_size=128 is too small for gen_arch=unet_256"):
        config_from_layers(load_config_file(path))


@pytest.mark.parametrize("values,message", [
    ({"n_layers_d": 11}, "n_layers_d=11 must be between 1 and 10"),
    ({"device": "cuda:01"}, "device='cuda:01' is not a device"),
    ({"device": "gpu"}, "device='gpu' is not a device"),
    ({"seed": -3}, "seed=-3 must be between 0 and 18446744073709551615"),
])
def test_more_bad_values_are_refused_with_the_name(values, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Config(), values)


def test_the_largest_seed_and_width_are_accepted():
    config = apply_overrides(Config(), {"seed": 2**64 - 1, "ngf": 4096, "ndf": 4096, "device": "cuda:12"})
    assert (config.train.seed, config.networks.ngf, config.train.device) == (2**64 - 1, 4096, "cuda:12")


@pytest.mark.parametrize("name,text,message", [
    ("sections.yaml", "model:\n  ngf: 8\n  ndf: 4\n  ngf: 16\n", r"'ngf' is given twice \(line 2 and line 4\)"),
    ("flat.yml", "ngf: 8\nlr: 0.1\nngf: 9\n", r"'ngf' is given twice \(line 1 and line 3\)"),
    ("twice.yaml", "model:\n  ngf: 8\nmodel:\n  ndf: 8\n", r"'model' is given twice \(line 1 and line 3\)"),
    ("flat.json", '{"ngf": 8, "ngf": 9}', r"'ngf' is given twice \(line 1, columns 2 and 12\)"),
])
def test_a_key_given_twice_is_refused_with_its_lines(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"^config file {path}: {message}; keep one$"):
        load_config_file(path)


def test_a_config_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("ngf: 8\n# café\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"config file {path} is not UTF-8 text \(byte 12 .*save it as UTF-8"):
        load_config_file(path)
    path.write_bytes("ngf: 8\n# café\n".encode())
    assert load_config_file(path) == {"ngf": 8}
