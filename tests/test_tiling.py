"""Exact tiled translation (cyclegan.tiling): halos derived from the layers, tiled == whole-image translation for
every generator kind and both map stores, refusal of the U-Net with instance norm, scratch files removed on
interrupts, a clear error when the disk is too small, and the CLI's --max-memory / --tile / --max-pixels.

Tolerances. In float64 the tiled and whole-image paths differ only in the order of float summations (convolutions
on crops, statistics merged band by band): each layer's relative rounding is at most fan-in * 2**-53 (~3e-14
for these widths), and ~30 layers keep the outputs (tanh, in [-1, 1]) within 1e-12 of each other, while one
missing halo row or a wrong statistic moves them by more than 1e-3. In float32 (what users run) random-signed
rounding grows as sqrt(fan-in) * 2**-24 ~ 1e-6 per layer, ~3e-5 over the network: 1e-4, the issue's bound.
"""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import cyclegan.tiling.store as store_module
from cyclegan.cli.main import main
from cyclegan.cli.translate import parse_size
from cyclegan.config import NetworksConfig
from cyclegan.io.images import load_image, save_image
from cyclegan.nets.generators import build_generator
from cyclegan.nets.layers import init_weights
from cyclegan.nets.speed import speed_up
from cyclegan.tiling import estimate_whole_image_bytes, translate_tiled, wants_tiling
from cyclegan.tiling.geometry import needed_rows
from cyclegan.tiling.plan import map_shapes, split_stages
from cyclegan.translate import TranslationError, Translator, pad_to_multiple

FLOAT64_TOLERANCE = 1e-12
FLOAT32_TOLERANCE = 1e-4


def _generator(arch="resnet_6blocks", norm="instance", channels=(3, 3), ngf=8, dtype=torch.float64, gain=0.5):
    """Random weights; gain 0.5 (not the paper's 0.02) so that far rows still move the outputs measurably."""
    torch.manual_seed(0)
    net = init_weights(build_generator(arch, channels[0], channels[1], ngf, norm, dropout=False), gain=gain)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):  # running statistics far from 0 and 1, so eval mode matters
            module.running_mean.normal_(0.0, 0.5)
            module.running_var.uniform_(0.3, 3.0)
    speed_up(net, lean=False, fast_convolutions=False)
    return net.eval().to(dtype)


def _whole(net, image: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        padded, (height, width) = pad_to_multiple(image[None], net.size_multiple, net.min_size)
        return net(padded)[0, :, :height, :width]


def _image(channels, height, width, dtype=torch.float64, seed=1):
    return torch.rand(channels, height, width, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 2 - 1


@pytest.mark.parametrize("arch, norm, band", [("resnet_6blocks", "instance", 0), ("resnet_6blocks", "instance", 2),
                                               ("resnet_6blocks", "instance", 4), ("resnet_6blocks", "instance", -1),
                                               ("resnet_6blocks", "batch", 0), ("unet_128", "batch", 0)])
def test_the_computed_halo_is_exactly_the_rows_an_interior_band_depends_on(arch, norm, band):
    """Perturbing an input row just outside the computed rows leaves the band's outputs as they are; perturbing
    the first or last row inside changes them: the halo is enough, and one row less is not.

    The activations are made the identity first: the edge rows reach the band through the kernels' corner taps
    alone, a single path that ReLUs close at random, so they matter for some inputs only; the rows the layers
    connect are the same."""
    net = _generator(arch, norm, channels=(1, 1), ngf=4)
    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, (torch.nn.ReLU, torch.nn.LeakyReLU, torch.nn.Tanh)):
                setattr(module, name, torch.nn.Identity())
    stages = split_stages(net)
    stage = stages[band]
    height, width = {"instance": (192, 8), "batch": (640, 128) if arch == "unet_128" else (256, 8)}[norm]
    shapes = map_shapes(stages, 1, height, width)
    source = shapes[stage.terms[0].map]
    layers = stage.modules
    inputs = torch.randn(1, source.channels, source.height, source.width, dtype=torch.float64)
    out_height = shapes[stage.output].height
    start, stop = out_height // 2 - 2, out_height // 2 + 2
    lo, hi = needed_rows(layers, start, stop)
    assert 0 < lo < hi < source.height, "the band must be interior for this test"
    with torch.inference_mode():
        reference = layers(inputs)[:, :, start:stop]
        for row, matters in ((lo - 1, False), (lo, True), (hi - 1, True), (hi, False)):
            perturbed = inputs.clone()
            perturbed[:, :, row] += 10.0
            change = (layers(perturbed)[:, :, start:stop] - reference).abs().max().item()
            assert (change > 1e-9) if matters else (change < FLOAT64_TOLERANCE), (row, lo, hi, change)


CASES = [("resnet_6blocks", "instance", (3, 3)), ("resnet_9blocks", "instance", (3, 3)),
         ("resnet_6blocks", "instance", (1, 1)), ("resnet_6blocks", "instance", (1, 3)),
         ("resnet_6blocks", "batch", (3, 3)), ("resnet_6blocks", "none", (3, 3))]


@pytest.mark.parametrize("arch, norm, channels", CASES)
def test_tiled_translation_equals_whole_image_translation(arch, norm, channels):
    """101 x 75 needs padding to 104 x 76; bands of 16 output rows give 4-7 bands per stage."""
    net = _generator(arch, norm, channels)
    image = _image(channels[0], 101, 75)
    tiled = translate_tiled(net, image, tile=16)
    assert tiled.shape == (channels[1], 101, 75) and tiled.dtype == torch.float64
    assert (tiled - _whole(net, image)).abs().max().item() < FLOAT64_TOLERANCE


def test_unet_with_batch_norm_is_tiled_as_one_local_network():
    net = _generator("unet_128", "batch", (3, 3), ngf=4)
    image = _image(3, 300, 100)  # padded to 384 x 128: crops must start on multiples of 128
    tiled = translate_tiled(net, image, tile=96)
    assert (tiled - _whole(net, image)).abs().max().item() < FLOAT64_TOLERANCE


@pytest.mark.parametrize("storage", ["ram", "file"])
def test_both_map_stores_give_the_same_result(storage, tmp_path):
    net = _generator("resnet_9blocks", "instance")
    image = _image(3, 37, 54)
    tiled = translate_tiled(net, image, tile=8, storage=storage, scratch_dir=tmp_path)
    assert (tiled - _whole(net, image)).abs().max().item() < FLOAT64_TOLERANCE
    assert list(tmp_path.iterdir()) == []  # the scratch folder is gone


def test_a_small_memory_budget_picks_files_and_small_bands(tmp_path, caplog):
    net = _generator("resnet_6blocks", "instance")
    image = _image(3, 64, 48)
    with caplog.at_level("INFO", logger="cyclegan.tiling"):
        tiled = translate_tiled(net, image, max_memory=200_000, scratch_dir=tmp_path)
    assert "kept in files" in caplog.text
    assert (tiled - _whole(net, image)).abs().max().item() < FLOAT64_TOLERANCE


def test_float32_uint8_tiling_through_the_translator_matches_whole_image_translation():
    """What users run: uint8 in and out, float32, the paper's initialisation. With exact convolutions 8-bit
    pixels may differ only at rounding ties, by one step; NNPACK's coarser rounding (`nets.convolutions.conv2d`) adds
    its own error on each side, measured as the whole image's distance to exact convolutions."""
    config = NetworksConfig(gen_arch="resnet_6blocks", ngf=8, norm="instance")
    translator = Translator(_generator(dtype=torch.float32, gain=0.02), None, config, "cpu")
    array = np.random.default_rng(0).integers(0, 256, (90, 70, 3), dtype=np.uint8)
    photo, tensor = Image.fromarray(array), torch.from_numpy(array).permute(2, 0, 1).float() / 127.5 - 1
    whole = translator.set_fast_convolutions(False)(tensor)
    assert (translator(tensor, tile=16) - whole).abs().max().item() < FLOAT32_TOLERANCE
    _assert_equal_but_for_ties(np.asarray(translator(photo, tile=16)), np.asarray(translator(photo)), whole)
    whole_fast = translator.set_fast_convolutions(True)(tensor)
    nnpack_error = (whole_fast - whole).abs().max().item()
    assert (translator(tensor, tile=16) - whole_fast).abs().max().item() < FLOAT32_TOLERANCE + 2 * nnpack_error


def _assert_equal_but_for_ties(tiled: np.ndarray, reference: np.ndarray, whole: torch.Tensor) -> None:
    differ = tiled != reference
    assert np.abs(tiled.astype(int) - reference).max() <= 1
    steps = ((whole.clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).numpy()
    assert np.all(np.abs(steps[differ] % 1 - 0.5) < FLOAT32_TOLERANCE * 127.5)


def test_unet_with_instance_norm_is_refused_with_what_to_do():
    net = _generator("unet_128", "instance", ngf=4)
    with pytest.raises(TranslationError, match="whole image.*--resize"):
        translate_tiled(net, _image(3, 128, 128), tile=64)


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, RuntimeError])
def test_an_interrupt_mid_run_leaves_no_scratch_files(interrupt, tmp_path):
    net = _generator()
    seen = []

    def stop_in_stage_five(done):
        seen.append(sorted(path.name for path in tmp_path.rglob("*")))
        if done.stage == 5 and done.band == 2:
            raise interrupt("stop")

    with pytest.raises(interrupt):
        translate_tiled(net, _image(3, 40, 40), tile=8, storage="file", scratch_dir=tmp_path,
                        on_band=stop_in_stage_five)
    assert any(len(names) >= 3 for names in seen)  # scratch maps did exist
    assert list(tmp_path.iterdir()) == []


def test_a_disk_too_small_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    net = _generator()
    monkeypatch.setattr(store_module.shutil, "disk_usage",
                        lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 4096, 4096))
    with pytest.raises(TranslationError) as caught:
        translate_tiled(net, _image(3, 40, 40), tile=8, storage="file", scratch_dir=tmp_path)
    message = str(caught.value)
    assert str(tmp_path) in message and "--scratch-dir" in message and "4096 bytes" in message
    assert list(tmp_path.iterdir()) == []


def test_tiling_is_chosen_when_the_whole_image_estimate_exceeds_the_budget():
    net = _generator(dtype=torch.float32)
    small, large = (estimate_whole_image_bytes(net, 3, side, side) for side in (256, 512))
    assert 3.9 < large / small < 4.1  # the feature maps grow with the pixels
    assert wants_tiling(net, 3, 512, 512, large - 1, None) and not wants_tiling(net, 3, 512, 512, large, None)
    assert wants_tiling(net, 3, 8, 8, None, 64) and not wants_tiling(net, 3, 4096, 4096, None, None)


def test_sizes_are_parsed_with_units_and_bad_text_is_refused():
    assert parse_size("2GB") == 2 * 10**9 and parse_size("512MiB") == 512 * 2**20 and parse_size("3G") == 3 * 2**30
    assert parse_size("1.5g") == 3 * 2**29 and parse_size("1000") == 1000 and parse_size(" 64 kb ") == 64_000
    for bad in ("", "2 GBs", "-1G", "lots", "0", "1e9"):
        with pytest.raises(Exception, match="is not a size"):
            parse_size(bad)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from cyclegan.config import Config, apply_overrides
    from cyclegan.io.checkpoints import save_checkpoint

    config = apply_overrides(Config(), {"gen_arch": "resnet_6blocks", "ngf": 8})
    gen_ab = _generator(dtype=torch.float32, gain=0.02)
    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    return save_checkpoint(path, config, {"nets": {"gen_ab": gen_ab.state_dict(), "gen_ba": gen_ab.state_dict()}})


def test_cli_tile_and_max_memory_give_the_untiled_output(model_file, tmp_path, capsys):
    array = np.random.default_rng(3).integers(0, 256, (70, 51, 3), dtype=np.uint8)
    save_image(Image.fromarray(array), tmp_path / "in" / "photo.png")
    runs = {"whole": [], "tile": ["--tile", "16"], "memory": ["--max-memory", "300KB",
                                                              "--scratch-dir", str(tmp_path / "scratch")]}
    (tmp_path / "scratch").mkdir()
    outputs = {}
    for name, options in runs.items():
        assert main(["translate", str(model_file), str(tmp_path / "in"), "--out", str(tmp_path / name), "--quiet",
                     "--device", "cpu", "--exact-convolutions", *options]) == 0
        outputs[name] = np.asarray(load_image(tmp_path / name / "photo.png"))
    assert list((tmp_path / "scratch").iterdir()) == []
    translator = Translator.load(model_file, "cpu").set_fast_convolutions(False)
    whole = translator(torch.from_numpy(array).permute(2, 0, 1).float() / 127.5 - 1)
    for name in ("tile", "memory"):
        _assert_equal_but_for_ties(outputs[name], outputs["whole"], whole)
    with pytest.raises(SystemExit, match="2"):
        main(["translate", str(model_file), str(tmp_path / "in"), "--max-memory", "2 lots"])
    assert "'2 lots' is not a size" in capsys.readouterr().err


def test_cli_max_pixels_raises_the_decompression_bomb_guard_for_the_run(model_file, tmp_path, monkeypatch, capsys):
    save_image(Image.new("RGB", (40, 30), "green"), tmp_path / "in" / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # 1200 pixels: over twice the guard, so refused
    command = ["translate", str(model_file), str(tmp_path / "in"), "--quiet", "--device", "cpu"]
    assert main([*command, "--out", str(tmp_path / "refused")]) == 1
    assert "--max-pixels" in capsys.readouterr().err
    assert main([*command, "--out", str(tmp_path / "allowed"), "--max-pixels", "1200"]) == 0
    assert (tmp_path / "allowed" / "big.png").is_file() and Image.MAX_IMAGE_PIXELS == 500  # restored


def test_the_progress_bar_shows_stages_and_bands(capsys):
    net = _generator()
    translate_tiled(net, _image(3, 40, 40), tile=16, show_progress=True)
    assert f"stage {len(split_stages(net))}/{len(split_stages(net))}, band 3/3" in capsys.readouterr().err
