import subprocess
import sys

import pytest
import torch
from PIL import Image

from cyclegan.config import apply_overrides
from cyclegan.generators import build_generators
from cyclegan.io.checkpoints import save_checkpoint
from cyclegan.io.images import ImageError, load_image, save_image
from cyclegan.nets.convolutions import FastConv2d
from cyclegan.nets.generators import build_generator
from cyclegan.nets.sizes import smallest_input
from cyclegan.translate import TranslationError, Translator, pad_to_multiple

from .helpers import tiny_config, tiny_dataset


def test_pad_to_multiple_pads_bottom_right_only_when_needed():
    batch = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).reshape(2, 3, 5, 6)
    padded, size = pad_to_multiple(batch, 4)
    assert padded.shape == (2, 3, 8, 8) and size == (5, 6)
    assert torch.equal(padded[..., :5, :6], batch)
    same, _ = pad_to_multiple(torch.zeros(1, 3, 8, 12), 4)
    assert same.shape == (1, 3, 8, 12)
    tiny, _ = pad_to_multiple(torch.zeros(1, 1, 2, 3), 128)  # too small to reflect: replicated
    assert tiny.shape == (1, 1, 128, 128)


@pytest.fixture(scope="module")
def translator():
    config = tiny_config("unused", "unused", ngf=4)
    torch.manual_seed(0)
    return Translator.from_config(config)


@pytest.mark.parametrize("height,width", [(37, 53), (64, 64), (5, 130)])
def test_any_size_comes_back_the_same_size(translator, height, width):
    out = translator(torch.rand(2, 3, height, width) * 2 - 1)
    assert out.shape == (2, 3, height, width) and out.abs().max() <= 1


def test_padding_does_not_change_what_a_multiple_of_4_gets(translator):
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        direct = translator.generators["AtoB"](image)
    assert torch.allclose(translator(image), direct, atol=1e-6)


def test_pil_lists_keep_order_and_sizes_across_size_groups(translator):
    images = [Image.new("RGB", (40, 30), "red"), Image.new("RGB", (17, 23), "blue"), Image.new("RGB", (40, 30))]
    outputs = translator(images, batch_size=2)
    assert [o.size for o in outputs] == [(40, 30), (17, 23), (40, 30)]
    single = translator(images[1])
    assert single.size == (17, 23)
    assert single.tobytes() == outputs[1].tobytes()
    resized = translator(Image.new("L", (100, 50)), resize=20)  # grayscale input, shorter side to 20
    assert resized.size == (40, 20) and resized.mode == "RGB"


def test_wrong_direction_or_channels_are_refused(translator):
    with pytest.raises(ValueError, match="direction"):
        translator(torch.zeros(1, 3, 8, 8), direction="sideways")
    with pytest.raises(ValueError, match="3-channel"):
        translator(torch.zeros(1, 1, 8, 8))


def test_grayscale_domain_and_unet_multiple():
    config = apply_overrides(tiny_config("u", "u"), {"channels_a": 1, "lambda_identity": 0.0, "gen_arch": "unet_128",
                                                     "load_size": 128, "crop_size": 128})
    translator = Translator.from_config(config)
    out = translator(Image.new("L", (50, 70), 128))
    assert out.size == (50, 70) and out.mode == "RGB"
    back = translator(Image.new("RGB", (50, 70)), direction="BtoA")
    assert back.mode == "L"


def test_load_rebuilds_the_trained_model_with_no_flags(tmp_path):
    from cyclegan.training.loop import train

    dataroot = tiny_dataset(tmp_path / "data")
    train(tiny_config(tmp_path / "run", dataroot, ngf=8, n_epochs=1, n_epochs_decay=0), show_progress=False)
    import cyclegan

    loaded = cyclegan.load(tmp_path / "run", device="cpu")
    assert loaded.config.ngf == 8
    image = Image.open(next((dataroot / "testA").iterdir()))
    assert loaded(image).size == image.size
    by_file = cyclegan.load(tmp_path / "run" / "checkpoints" / "epoch_0001.safetensors", device="cpu")
    assert torch.equal(by_file(torch.zeros(1, 3, 16, 16)), loaded(torch.zeros(1, 3, 16, 16)))


def test_cpu_translation_uses_nnpack_by_default_and_exact_convolutions_on_request(translator):
    """NNPACK's Winograd/FFT convolutions (default on the CPU) give the direct ones' outputs within 1e-4: no 8-bit
    pixel moves by more than one step. One image per call is the CPU default."""
    if translator.device.type != "cpu":
        pytest.skip("NNPACK is a CPU path")
    assert translator.default_batch_size == 1
    net = translator.generators["AtoB"]
    images = torch.rand(2, 3, 40, 36) * 2 - 1
    fast = translator.translate_tensor(images)
    assert sum(isinstance(module, FastConv2d) for module in net.modules()) == 6 * 2 + 1  # blocks', output's
    exact = translator.set_fast_convolutions(False).translate_tensor(images)
    assert not any(isinstance(module, FastConv2d) for module in net.modules())
    translator.set_fast_convolutions(True)
    torch.testing.assert_close(fast, exact, rtol=0, atol=1e-4)
    fast_calls = []
    handle = net.model[-2].register_forward_hook(
        lambda module, args, out: fast_calls.append(isinstance(module, FastConv2d)))
    translator.translate_tensor(images)
    handle.remove()
    assert fast_calls == [True]


def test_pad_to_multiple_reaches_a_smallest_size_by_replication():
    batch = torch.arange(7, dtype=torch.float32).reshape(1, 1, 1, 7)
    padded, size = pad_to_multiple(batch, 4, min_size=8)
    assert padded.shape == (1, 1, 8, 8) and size == (1, 7)
    assert torch.equal(padded[..., :1, :7], batch)
    assert torch.equal(padded[..., 7], torch.full((1, 1, 8), 6.0))  # the last column, replicated
    assert torch.equal(padded[0, 0, 5, :7], batch[0, 0, 0])  # the one row, replicated down
    assert pad_to_multiple(torch.zeros(1, 1, 9, 12), 4, min_size=8)[0].shape == (1, 1, 12, 12)


def test_the_resnet_smallest_size_is_the_smallest_that_runs():
    """min_size 8 is derived (two halvings must leave 2 pixels for ReflectionPad2d(1)); one multiple less fails."""
    net = build_generator("resnet_6blocks", 3, 3, 2, "instance", False).eval()
    assert (net.size_multiple, net.min_size) == (4, 8)
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 8, 8)).shape == (1, 3, 8, 8)
        with pytest.raises((RuntimeError, ValueError)):
            net(torch.zeros(1, 3, 4, 4))
    unet = build_generator("unet_128", 3, 3, 2, "batch", False)
    assert unet.min_size == unet.size_multiple == 128
    for arch in ("resnet_6blocks", "resnet_9blocks", "unet_128", "unet_256"):  # as the config's check derives it
        net = build_generator(arch, 3, 3, 1, "instance", False)
        assert net.min_size == smallest_input(arch, "pixel", 1)  # a PixelGAN needs only 2: the generator decides


@pytest.mark.parametrize("arch", ["resnet_6blocks", "resnet_9blocks", "unet_128"])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_images_of_a_few_pixels_translate_at_their_size(arch, mode):
    channels = 3 if mode == "RGB" else 1
    config = apply_overrides(tiny_config("u", "u"), {"gen_arch": arch, "ngf": 2, "channels_a": channels,
                                                     "channels_b": channels, "load_size": 128, "crop_size": 128})
    torch.manual_seed(0)
    translator = Translator.from_config(config)
    sizes = [(1, 1), (1, 7), (7, 1), (3, 3), (4, 4), (3, 200)]
    images = [Image.new(mode, size, 90) for size in sizes]
    outputs = translator(images)
    assert [(o.size, o.mode) for o in outputs] == [(size, mode) for size in sizes]
    back = translator(images[0], direction="BtoA")
    assert back.size == (1, 1)


def test_batch_size_and_resize_below_one_are_refused(translator):
    images = [Image.new("RGB", (8, 8))]
    for value in (0, -1):
        with pytest.raises(ValueError, match=f"batch_size={value}"):
            translator(images, batch_size=value)
    for value in (0, -5):
        with pytest.raises(ValueError, match=f"resize={value}"):
            translator(images, resize=value)
    with pytest.raises(TranslationError, match="batch_size=0"):
        translator.translate_each([], "unused", batch_size=0)


def test_a_missing_direction_says_what_the_model_has():
    config = tiny_config("u", "u")
    net = build_generator("resnet_6blocks", 3, 3, 2, "instance", False)
    one_way = Translator(net, None, config.networks)
    for call in (lambda: one_way(Image.new("RGB", (8, 8)), direction="BtoA"),
                 lambda: one_way.translate_each([], "unused", direction="BtoA")):
        with pytest.raises(TranslationError, match="no BtoA generator: it translates AtoB only"):
            call()


def test_translate_each_goes_past_bad_files_and_strict_stops_at_the_first(translator, tmp_path):
    good = [tmp_path / "in" / f"{name}.png" for name in ("a", "c", "e")]
    for index, path in enumerate(good):
        save_image(Image.new("RGB", (6 + index, 5), "red"), path)
    text, truncated = tmp_path / "in" / "b.png", tmp_path / "in" / "d.png"
    text.write_text("not an image")
    save_image(torch.rand(3, 32, 32) * 2 - 1, truncated)  # noise: the cut falls inside the pixel data
    truncated.write_bytes(truncated.read_bytes()[:200])
    paths = [good[0], text, good[1], truncated, good[2]]
    outcomes = list(translator.translate_each(paths, tmp_path / "out", batch_size=2, show_progress=False))
    assert [o.source for o in outcomes] == paths  # input order, across batches
    assert [o.output.name if o.output else None for o in outcomes] == ["a.png", None, "c.png", None, "e.png"]
    assert "b.png" in outcomes[1].error and "d.png" in outcomes[3].error
    assert Image.open(tmp_path / "out" / "e.png").size == (8, 5)

    strict = translator.translate_each(paths, tmp_path / "strict", batch_size=2, show_progress=False, strict=True)
    seen = []
    with pytest.raises(ImageError, match="b.png"):
        for outcome in strict:
            seen.append(outcome)
    assert [o.output is not None for o in seen] == [True, False]
    assert sorted(p.name for p in (tmp_path / "strict").iterdir()) == ["a.png"]
    with pytest.raises(ImageError, match="b.png"):  # translate_files: strict, as it always was
        translator.translate_files(paths, tmp_path / "files", show_progress=False)


def test_the_api_converts_images_as_files_are_loaded(translator, tmp_path):
    """An RGBA image given to the API is composited on white, as `load_image` (the CLI's reader) does, not
    translated with the colours hidden under its transparent pixels."""
    rgba = Image.new("RGBA", (24, 16), (0, 0, 0, 0))
    rgba.paste((200, 30, 90, 255), (0, 0, 12, 16))
    path = tmp_path / "rgba.png"
    rgba.save(path)
    from_file = translator(load_image(path))
    assert translator(rgba).tobytes() == from_file.tobytes()
    assert translator(rgba).tobytes() != translator(rgba.convert("RGB")).tobytes()  # alpha was not just dropped


def test_loading_a_model_to_translate_imports_no_training_code(tmp_path):
    config = tiny_config(tmp_path / "run", tmp_path / "data", ngf=4)
    model = tmp_path / "model.safetensors"
    save_checkpoint(model, config, {"nets": {name: net.state_dict()
                                             for name, net in build_generators(config.model, config.networks).items()}})
    script = (f"import sys, cyclegan; cyclegan.load({str(model)!r}, device='cpu'); "
              "print(' '.join(sorted(name for name in sys.modules if name.startswith('cyclegan'))))")
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert "cyclegan.translate" in loaded
    training = [name for name in loaded if name.startswith(("cyclegan.training", "cyclegan.models", "cyclegan.losses",
                                                             "cyclegan.data", "cyclegan.metrics"))]
    assert training == []


def test_bfloat16_autocast_is_opt_in_and_never_runs_nnpack():
    torch.manual_seed(0)
    translator = Translator.from_config(tiny_config("unused", "unused", ngf=8))
    image = torch.rand(1, 3, 32, 48) * 2 - 1
    exact = translator(image)
    fast_layers = [module for net in translator.generators.values() for module in net.modules()
                   if isinstance(module, FastConv2d)]
    assert fast_layers  # NNPACK by default in float32
    low = translator.set_precision("bf16")(image)
    assert not any(isinstance(module, FastConv2d) for module in fast_layers)
    assert low.dtype == torch.float32 and low.shape == exact.shape
    difference = (low - exact).abs()
    # bfloat16 keeps 8 significant bits: the outputs move, but stay the same picture.
    assert 0 < difference.mean() < 0.1
    assert torch.equal(translator.set_precision("float32")(image), exact)
    assert all(isinstance(module, FastConv2d) for module in fast_layers)
    with pytest.raises(TranslationError, match="fp16 is for GPUs"):
        translator.set_precision("fp16")
    with pytest.raises(TranslationError, match="precision='double'"):
        translator.set_precision("double")
