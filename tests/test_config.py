import argparse
import dataclasses

import pytest

from cyclegan.cli.options import add_config_options, given_options
from cyclegan.config import (
    SECTIONS,
    Config,
    ConfigError,
    ModelConfig,
    apply_overrides,
    config_from_json,
    config_to_json,
    config_to_yaml,
    load_config_file,
)


def test_defaults_are_the_papers():
    config = Config()
    assert (config.model.gan_mode, config.model.lambda_a, config.model.lambda_b) == ("lsgan", 10.0, 10.0)
    assert config.model.lambda_identity == 0.5 and config.model.norm == "instance"
    assert (config.train.lr, config.train.beta1, config.train.batch_size) == (2e-4, 0.5, 1)
    assert (config.train.n_epochs, config.train.n_epochs_decay, config.train.pool_size) == (100, 100, 50)
    assert (config.data.load_size, config.data.crop_size) == (286, 256)


def test_every_option_has_help():
    for cls in SECTIONS.values():
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
    assert (config.model.ngf, config.model.gen_arch, config.train.n_epochs) == (16, "unet_128", 7)


@pytest.mark.parametrize("values,message", [
    ({"gan_mode": "hinge"}, "gan_mode='hinge'"),
    ({"ngf": 0}, "ngf=0"),
    ({"ngf": "wide"}, "ngf='wide' is not a valid int"),
    ({"lambda_identity": 0.5, "channels_a": 1}, "identity loss"),
    ({"crop_size": 300}, "crop_size=300"),
    ({"dir_a": "only-one"}, "both dir_a and dir_b"),
    ({"nonsense": 1}, "unknown option 'nonsense'"),
    ({"model": {"lr": 1}}, "does not belong in section 'model'"),
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
    assert given == {"model": {"ngf": 32, "lambda_a": 5.0}, "data": {"flip": False, "max_dataset_size": 10},
                     "train": {"lr_policy": "cosine"}}
    config = apply_overrides(Config(), given)
    assert config.model.ngf == 32 and config.data.flip is False and config.train.lr_policy == "cosine"
    with pytest.raises(SystemExit):
        parser.parse_args(["--gen-arch", "transformer"])


def test_ablation_switches():
    assert ModelConfig(objective="gan_forward").uses_forward_cycle
    assert not ModelConfig(objective="gan_forward").uses_backward_cycle
    assert not ModelConfig(objective="cycle_only").uses_gan
    assert not ModelConfig(objective="gan_only").uses_forward_cycle


def test_readme_documents_every_option():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for cls in SECTIONS.values():
        for spec in dataclasses.fields(cls):
            assert f"`--{spec.name.replace('_', '-')}`" in readme, spec.name
