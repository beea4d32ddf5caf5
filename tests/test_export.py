"""`cyclegan export --format onnx|pt2`: every generator we build exports, reloads (onnxruntime; torch.export.load)
and equals eager PyTorch at three sizes; the metadata reads back; official weights and --pretrained export; bad
requests get clear errors."""

import copy
import json
import sys

import numpy as np
import onnxruntime
import pytest
import torch

from cyclegan.cli.main import main
from cyclegan.config import ConfigError, NetworksConfig
from cyclegan.export import export_model
from cyclegan.io.exported import METADATA_KEYS, export_generators, read_pt2_metadata
from cyclegan.io.official import load_official_generator
from cyclegan.nets.generators import build_generator

from .helpers import SHARED, with_random_statistics
from .test_download import FixtureServer

OFFICIAL = SHARED / "fixtures" / "official"
# The bound (max abs, [-1, 1] scale). Exporter and runtime only reorder float32 sums (fused or re-blocked
# convolutions, another variance formula): a few float32 ulps (1.2e-7) of each pre-activation, times the depth and
# the sqrt of a fan-in of at most 9 * 64 products for these ngf-8 networks, ends far below it on any x86-64 CPU.
TOLERANCE = 1e-4

# Every generator, every norm, 1 and 3 channels in and out, dropout (off in eval) with batch norm in a ResNet; the
# U-Net with batch norm and dropout: the official one (test_official_weights_export_and_reproduce_the_official_output).
CASES = [
    ("resnet_9blocks", "instance", 3, 3, False),
    ("resnet_6blocks", "batch", 1, 3, True),
    ("unet_128", "none", 3, 1, False),
    ("unet_256", "instance", 1, 1, False),
]
# (batch, height, width) per size multiple: the smallest input, one not square (batch 2), a larger square.
SIZES = {4: [(1, 8, 8), (2, 36, 52), (1, 64, 64)], 128: [(1, 128, 128), (2, 128, 256), (1, 256, 256)],
         256: [(1, 256, 256), (2, 256, 512), (1, 512, 512)]}


def _model(arch, norm, channels_in, channels_out, dropout):
    config = NetworksConfig(gen_arch=arch, norm=norm, ngf=8, dropout=dropout, channels_a=channels_in,
                            channels_b=channels_out)
    net = with_random_statistics(build_generator(arch, channels_in, channels_out, 8, norm, dropout))
    return net, config


def _inputs(net, channels):
    generator = torch.Generator().manual_seed(1)
    return [torch.rand(batch, channels, height, width, generator=generator) * 2 - 1
            for batch, height, width in SIZES[net.size_multiple]]


def _check_metadata(metadata, net, config, direction="AtoB"):
    assert set(metadata) >= set(METADATA_KEYS)
    assert metadata["direction"] == direction
    assert (int(metadata["channels_in"]), int(metadata["channels_out"])) == (config.channels_a, config.channels_b)
    assert (int(metadata["size_multiple"]), int(metadata["min_size"])) == (net.size_multiple, net.min_size)
    assert json.loads(metadata["value_range"]) == [-1, 1]
    assert metadata["input_layout"] == metadata["output_layout"] == "NCHW"
    assert NetworksConfig(**json.loads(metadata["config"])) == config


def _check_exports(onnx_path, pt2_path, net, config, inputs):
    """Both files reload with the metadata of `net` (the AtoB generator of `config`) and equal it on `inputs`."""
    with torch.no_grad():
        expected = [net(x) for x in inputs]
        if config.norm == "batch" or config.dropout:  # an export in train mode would be caught: it differs
            assert (copy.deepcopy(net).train()(inputs[1]) - expected[1]).abs().max() > 100 * TOLERANCE
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    _check_metadata(session.get_modelmeta().custom_metadata_map, net, config)
    dims = session.get_inputs()[0].shape
    assert dims[1] == config.channels_a and all(isinstance(dim, str) for dim in (dims[0], dims[2], dims[3]))
    program, metadata = read_pt2_metadata(pt2_path)
    _check_metadata(metadata, net, config)
    module = program.module()
    for x, want in zip(inputs, expected, strict=True):
        (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        assert got.shape == tuple(want.shape)
        assert np.abs(got - want.numpy()).max() <= TOLERANCE
        with torch.no_grad():
            assert (module(x) - want).abs().max().item() <= TOLERANCE
    return session, module


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda case: "-".join(map(str, case)))
def test_every_generator_exports_and_matches_eager_pytorch(tmp_path, case):
    net, config = _model(*case)
    (onnx_path,) = export_generators({"AtoB": net}, config, tmp_path, "onnx")
    (pt2_path,) = export_generators({"AtoB": net}, config, tmp_path, "pt2")
    assert (onnx_path.name, pt2_path.name) == ("gen_ab.onnx", "gen_ab.pt2")
    _check_exports(onnx_path, pt2_path, net, config, _inputs(net, config.channels_a))


@pytest.mark.slow
def test_official_weights_export_and_reproduce_the_official_output(tmp_path):
    name = "G_unet128_bn_dropout_ngf8"  # batch norm with the official run's statistics, and dropout
    for fmt in ("onnx", "pt2"):
        assert main(["export", str(OFFICIAL / f"{name}.pth"), "--format", fmt, "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen_ab.onnx", "gen_ab.pt2"]  # one direction
    net, spec = load_official_generator(OFFICIAL / f"{name}.pth")
    config = NetworksConfig(gen_arch=spec.arch, ngf=spec.ngf, norm=spec.norm, dropout=spec.dropout)
    session, module = _check_exports(tmp_path / "gen_ab.onnx", tmp_path / "gen_ab.pt2", net.eval(), config,
                                     _inputs(net, 3))
    official_input, official_output = (np.load(OFFICIAL / f"{name}.{part}.npy") for part in ("input", "output"))
    assert np.abs(session.run(None, {"x": official_input})[0] - official_output).max() <= TOLERANCE
    with torch.no_grad():
        assert np.abs(module(torch.from_numpy(official_input)).numpy() - official_output).max() <= TOLERANCE


def test_pretrained_model_exports_from_a_local_server(tmp_path, monkeypatch, capsys):
    name = "G_resnet9_none_ngf8_gray"
    monkeypatch.setenv("CYCLEGAN_CACHE", str(tmp_path / "cache"))
    server = FixtureServer()
    try:
        server.files["/horse2zebra.pth"] = (OFFICIAL / f"{name}.pth").read_bytes()
        code = main(["export", "--pretrained", "horse2zebra", "--base-url", server.url, "--format", "pt2",
                     "--out", str(tmp_path / "out")])
    finally:
        server.close()
    assert code == 0 and capsys.readouterr().out.split() == [str(tmp_path / "out" / "gen_ab.pt2")]
    program, metadata = read_pt2_metadata(tmp_path / "out" / "gen_ab.pt2")
    assert (metadata["channels_in"], metadata["size_multiple"], metadata["min_size"]) == ("1", "4", "8")
    with torch.no_grad():
        got = program.module()(torch.from_numpy(np.load(OFFICIAL / f"{name}.input.npy")))
    assert np.abs(got.numpy() - np.load(OFFICIAL / f"{name}.output.npy")).max() <= TOLERANCE


def test_bad_export_requests_are_refused_clearly(tmp_path, capsys):
    weights = str(OFFICIAL / "G_resnet9_none_ngf8_gray.pth")
    (tmp_path / "file").write_text("keep me")
    assert main(["export", weights, "--format", "onnx", "--out", str(tmp_path / "file")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert (tmp_path / "file").read_text() == "keep me"
    with pytest.raises(ConfigError, match="format='tflite'; use one of safetensors, official, onnx, pt2"):
        export_model(weights, tmp_path / "out", "tflite")
    with pytest.raises(ConfigError, match="either a model .* or --pretrained"):
        export_model(None, tmp_path / "out", "onnx")
    with pytest.raises(ConfigError, match="--pretrained models export as onnx or pt2"):
        export_model(None, tmp_path / "out", "safetensors", pretrained="horse2zebra")
    (tmp_path / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="already an exported ONNX file"):
        export_model(tmp_path / "model.onnx", tmp_path / "out", "onnx")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("missing", ["onnx", "onnxscript"])
def test_a_missing_exporter_package_names_the_extra(tmp_path, monkeypatch, capsys, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # import then raises ImportError
    weights = str(OFFICIAL / "G_resnet9_none_ngf8_gray.pth")
    assert main(["export", weights, "--format", "onnx", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert f"({missing} is missing" in error and 'pip install "cyclegan[onnx]"' in error
    assert list(tmp_path.iterdir()) == []
