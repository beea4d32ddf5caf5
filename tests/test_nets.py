import pytest
import torch

from cyclegan.nets.convolutions import FastConv2d
from cyclegan.nets.discriminators import PatchDiscriminator, PixelDiscriminator, build_discriminator
from cyclegan.nets.generators import ResnetGenerator, UnetGenerator, build_generator
from cyclegan.nets.layers import count_parameters, init_weights
from cyclegan.nets.lean_block import LeanInstanceNorm2d, LeanResidualBlock
from cyclegan.nets.speed import speed_layers, speed_up


def test_parameter_counts_equal_the_official_models():
    # Official resnet_9blocks generator and basic PatchGAN with default widths (instance norm).
    assert count_parameters(build_generator("resnet_9blocks", 3, 3, 64, "instance", False)) == 11_378_179
    assert count_parameters(build_discriminator("basic", 3, 64, 3, "instance")) == 2_764_737
    assert count_parameters(build_generator("resnet_6blocks", 3, 3, 64, "instance", False)) == 7_837_699


@pytest.mark.parametrize("arch,size", [("resnet_9blocks", 64), ("resnet_6blocks", 36), ("unet_128", 128),
                                       ("unet_256", 256)])
def test_generator_keeps_the_image_shape(arch, size):
    net = build_generator(arch, 3, 1, 8, "instance", True)
    out = net(torch.randn(2, 3, size, size))
    assert out.shape == (2, 1, size, size)
    assert out.abs().max() <= 1.0  # tanh output


def test_resnet_generator_layout_follows_the_paper():
    net = ResnetGenerator(3, 3, ngf=64, n_blocks=9)
    convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    # c7s1-64, d128, d256, 9 x R256 (2 convs each), u128, u64, c7s1-3
    shapes = [(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0]) for m in convs]
    assert shapes[:3] == [(3, 64, 7, 1), (64, 128, 3, 2), (128, 256, 3, 2)]
    assert shapes[3:21] == [(256, 256, 3, 1)] * 18
    assert shapes[21:] == [(256, 128, 3, 2), (128, 64, 3, 2), (64, 3, 7, 1)]
    assert sum(isinstance(m, torch.nn.ReflectionPad2d) for m in net.modules()) == 2 + 18
    assert sum(isinstance(m, torch.nn.InstanceNorm2d) for m in net.modules()) == 1 + 2 + 18 + 2  # c7s1, d, R, u


def test_patchgan_has_a_70_pixel_receptive_field():
    net = PatchDiscriminator(3, 8, 3, "instance")
    assert net(torch.randn(1, 3, 256, 256)).shape == (1, 1, 30, 30)  # 70x70 patches with stride 8
    net = PatchDiscriminator(3, 8, 3, "none")  # instance norm would spread every pixel over the whole map
    x = torch.zeros(1, 3, 140, 140, requires_grad=True)
    net(x)[0, 0, 5, 5].backward()
    rows = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 3)))
    assert rows.max() - rows.min() + 1 == 70
    # no norm on the first layer: the first module after the first conv is the activation
    assert isinstance(net.model[1], torch.nn.LeakyReLU)


def test_pixel_discriminator_judges_every_pixel():
    assert PixelDiscriminator(1, 8, "batch")(torch.randn(2, 1, 9, 7)).shape == (2, 1, 9, 7)


def test_unet_size_multiple_and_batch_norm():
    net = UnetGenerator(3, 3, n_downs=7, ngf=4, norm="batch")
    assert net.size_multiple == 128
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


@pytest.mark.parametrize("init_type", ["normal", "xavier", "kaiming", "orthogonal"])
def test_init_weights(init_type):
    net = init_weights(PatchDiscriminator(3, 16, 3, "batch"), init_type, 0.02)
    conv = net.model[2]
    assert torch.all(net.model[0].bias == 0)
    std = conv.weight.std().item()
    if init_type == "normal":
        assert 0.017 < std < 0.023
    elif init_type == "kaiming":
        assert std > 0.03  # sqrt(2 / fan_in) with fan_in = 256
    bn = net.model[3]
    assert 0.9 < bn.weight.mean().item() < 1.1 and torch.all(bn.bias == 0)


def test_init_rejects_unknown_type():
    with pytest.raises(ValueError, match="unknown init_type"):
        init_weights(PixelDiscriminator(), "bogus")


def _lean(net, enabled):
    speed_up(net, lean=enabled, fast_convolutions=False)
    assert bool(speed_layers(net)) == enabled  # the lean path is really taken (or really left)
    return net


def _outputs_and_gradients(net, inputs, grad):
    inputs = inputs.detach().requires_grad_()
    net.zero_grad(set_to_none=True)
    output = net(inputs)
    output.backward(grad)
    return [output.detach(), inputs.grad] + [parameter.grad for parameter in net.parameters()]


@pytest.mark.parametrize("arch", ["resnet_6blocks", "unet_128"])
def test_lean_layers_compute_the_plain_modules_function_and_gradients(arch):
    """The memory-lean residual block and instance norm (float64, so rounding cannot hide a wrong term), through
    the whole generator, against the same network on nn's module path; and the discriminator's norms."""
    torch.manual_seed(0)
    norm = "instance"
    net = build_generator(arch, 3, 3, 4, norm, False).double()
    for parameter in net.parameters():  # non-zero biases, so that a bias the lean path dropped would show
        torch.nn.init.normal_(parameter, std=0.3)
    size = 32 if arch == "resnet_6blocks" else 128
    inputs, grad = torch.randn(2, 3, size, size, dtype=torch.float64), torch.randn(2, 3, size, size,
                                                                                  dtype=torch.float64)
    lean = _outputs_and_gradients(_lean(net, True), inputs, grad)
    plain = _outputs_and_gradients(_lean(net, False), inputs, grad)
    for lean_tensor, plain_tensor in zip(lean, plain, strict=True):
        torch.testing.assert_close(lean_tensor, plain_tensor, rtol=1e-9, atol=1e-11)
    disc = build_discriminator("basic", 3, 4, 3, norm).double()
    scores = disc(inputs).shape
    lean = _outputs_and_gradients(_lean(disc, True), inputs, torch.ones(scores, dtype=torch.float64))
    plain = _outputs_and_gradients(_lean(disc, False), inputs, torch.ones(scores, dtype=torch.float64))
    for lean_tensor, plain_tensor in zip(lean, plain, strict=True):
        torch.testing.assert_close(lean_tensor, plain_tensor, rtol=1e-9, atol=1e-11)


def test_lean_residual_block_passes_gradcheck_and_is_used_only_where_exact():
    torch.manual_seed(0)
    block = _lean(build_generator("resnet_6blocks", 3, 3, 2, "instance", False), True).model[10].double()
    inputs = torch.randn(1, 8, 5, 6, dtype=torch.float64, requires_grad=True)
    assert isinstance(block, LeanResidualBlock)
    assert type(block(inputs).grad_fn).__name__ == "LeanResidualFunctionBackward"
    assert torch.autograd.gradcheck(block, (inputs,))
    norm = LeanInstanceNorm2d(8).double()
    assert type(norm(inputs).grad_fn).__name__ == "LeanInstanceNormFunctionBackward"
    assert torch.autograd.gradcheck(lambda maps: torch.relu_(norm(maps)), (inputs,))  # in place after the norm
    for dropout, norm_kind in ((True, "instance"), (False, "batch")):  # not the same function: the module path
        other = speed_up(build_generator("resnet_6blocks", 3, 3, 2, norm_kind, dropout), lean=True,
                         fast_convolutions=False).model[10]
        assert not isinstance(other, LeanResidualBlock)
        assert type(other(inputs.float()).grad_fn).__name__ == "AddBackward0"


def test_networks_are_built_plain_and_speed_up_swaps_layers_keeping_every_parameter_and_key():
    """`speed_up` is the one switch: a built network has no faster layers; with them it holds the same parameter
    objects under the same state-dict keys (official weights, checkpoints and optimisers see no change), and
    switched off it is the plain network again."""
    net = build_generator("resnet_6blocks", 3, 3, 4, "instance", False)
    assert speed_layers(net) == []
    keys, parameters = list(net.state_dict()), [id(p) for p in net.parameters()]
    speed_up(net, lean=True, fast_convolutions=True)
    assert list(net.state_dict()) == keys and [id(p) for p in net.parameters()] == parameters
    assert sum(isinstance(m, LeanResidualBlock) for m in net.modules()) == 6
    assert sum(isinstance(m, FastConv2d) for m in net.modules()) == 6 * 2 + 1  # the blocks' and the output's
    assert not isinstance(net.model[1], FastConv2d)  # c7s1-64 keeps oneDNN's kernel, as it always did
    assert sum(isinstance(m, LeanInstanceNorm2d) for m in net.modules()) == 1 + 2 + 12 + 2
    speed_up(net, lean=False, fast_convolutions=False)
    assert speed_layers(net) == [] and list(net.state_dict()) == keys
    assert all(type(m).__module__.startswith("torch.nn") or type(m).__module__ == "cyclegan.nets.generators"
               for m in net.modules())
    disc = speed_up(build_discriminator("pixel", 3, 4, 3, "instance"), lean=True, fast_convolutions=True)
    assert not any(isinstance(m, FastConv2d) for m in disc.modules())  # 1x1 convolutions keep oneDNN's
