"""CoGAN's networks (Liu & Tuzel, "Coupled Generative Adversarial Networks", NIPS 2016) and the latent search by
which the CycleGAN paper translates with it (Zhu et al. 2017, Sec. 5.1.3).

Two GANs, one per domain, draw their images from ONE latent code z; weight sharing makes one z render as a
corresponding pair (G_A(z), G_B(z)). The CoGAN paper shares the layers that decode high-level structure: the
generators' first layers and the discriminators' last ones (its Sec. 3). Ours are DCGAN networks (Radford et al.
2016) for square images of side S = 32, 64 or 128 (gen_arch dcgan_32 / dcgan_64 / dcgan_128), with that pattern:

    generator      z (100) -> ConvT 4x4 to a 4x4 map, norm, ReLU
                   -> [ConvT 4x4 stride 2, norm, ReLU] doubling the side up to S/2        SHARED (`trunk`)
                   -> ConvT 4x4 stride 2 to S x S x channels, tanh                          per domain (`heads`)
    discriminator  Conv 4x4 stride 2 (S -> S/2), LeakyReLU 0.2                             per domain (`first`)
                   -> [Conv 4x4 stride 2, norm, LeakyReLU 0.2] halving the side down to 4
                   -> Conv 4x4 to one score                                                SHARED (`trunk`)

Only the last generator layer and the first discriminator layer are each domain's own: the CoGAN paper's
experiments share every generator layer but the last and every discriminator layer but the first. Widths follow
DCGAN: ngf * min(S / (2 s), 8) channels at side s in the generator, ndf doubling per halving (at most ndf * 8) in the
discriminator; norm is NetworksConfig.norm (cogan's default: batch, as DCGAN and CoGAN).

Translation X -> Y (the CycleGAN paper's protocol for CoGAN): find the latent whose G_X image is x, then render
G_Y of it. `LatentSearch` does that as a fixed, seeded optimisation, so it is deterministic: from z0 ~ N(0, I) drawn
by a torch.Generator seeded with SEARCH_SEED (the same start for every image), SEARCH_STEPS Adam steps (lr
SEARCH_LR) on z minimising the mean L1 distance |G_X(z) - x| (`reconstruction_error`), with the generator in eval
mode and its weights untouched. These three numbers are ours: neither paper states them.

Translation must not import the training code (losses.py included), so the search's loss lives here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as functional
from torch import nn

from .layers import conv_bias, init_weights, norm_layer
from .sizes import latent_image_size

if TYPE_CHECKING:
    from ..config import NetworksConfig

LATENT_SIZE = 100  # DCGAN (Radford et al. 2016) and CoGAN draw z from 100 dimensions
SEARCH_STEPS = 200  # Adam steps of the latent search (read at each call, so a test may lower it)
SEARCH_LR = 0.05  # z ~ N(0, I): Adam moves each coordinate by about lr per step, so 200 steps can cross the prior
SEARCH_SEED = 0  # of the search's starting latent
DOMAINS = ("a", "b")


def _doublings(image_size: int) -> int:
    """How many stride-2 layers take a 4x4 map to `image_size` (a power of two, at least 8)."""
    count = (image_size // 4).bit_length() - 1
    if image_size < 8 or 4 * 2**count != image_size:
        raise ValueError(f"image_size={image_size}: a DCGAN network needs a power of two of at least 8")
    return count


class CoupledGenerator(nn.Module):
    """G_A and G_B from one latent: the shared `trunk` (z to S/2 x S/2 features) and one output layer per domain
    (`heads["a"]`, `heads["b"]`). forward(z) gives both images of z; `render(z, domain)` one of them."""

    def __init__(self, image_size: int, channels_a: int = 3, channels_b: int = 3, ngf: int = 64,
                 norm: str = "batch", latent_size: int = LATENT_SIZE) -> None:
        super().__init__()
        self.image_size, self.latent_size = image_size, latent_size
        bias = conv_bias(norm)

        def width(side: int) -> int:
            return ngf * min(image_size // (2 * side), 8)

        layers: list[nn.Module] = [nn.ConvTranspose2d(latent_size, width(4), 4, stride=1, padding=0, bias=bias),
                                   norm_layer(norm, width(4)), nn.ReLU(True)]
        side = 4
        for _ in range(_doublings(image_size) - 1):
            layers += [nn.ConvTranspose2d(width(side), width(2 * side), 4, stride=2, padding=1, bias=bias),
                       norm_layer(norm, width(2 * side)), nn.ReLU(True)]
            side *= 2
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.ModuleDict({
            domain: nn.Sequential(nn.ConvTranspose2d(width(side), channels, 4, stride=2, padding=1), nn.Tanh())
            for domain, channels in zip(DOMAINS, (channels_a, channels_b), strict=True)})

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(G_A(z), G_B(z)) for a batch of latents (N x latent_size): one pass through the shared trunk."""
        features = self.trunk(z[:, :, None, None])
        return self.heads["a"](features), self.heads["b"](features)

    def render(self, z: torch.Tensor, domain: str) -> torch.Tensor:
        """G_A(z) (domain "a") or G_B(z) ("b")."""
        return self.heads[domain](self.trunk(z[:, :, None, None]))


class DomainDiscriminator(nn.Module):
    """One domain's discriminator: its own `first` layer, then the `trunk` it shares with the other domain's."""

    def __init__(self, first: nn.Module, trunk: nn.Module) -> None:
        super().__init__()
        self.first, self.trunk = first, trunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.first(x))  # N x 1 x 1 x 1 raw scores


def coupled_discriminators(image_size: int, channels_a: int = 3, channels_b: int = 3, ndf: int = 64,
                           norm: str = "batch") -> tuple[DomainDiscriminator, DomainDiscriminator]:
    """D_A and D_B: a first layer each (no norm, as DCGAN's) and one shared trunk, the same module in both."""
    bias = conv_bias(norm)
    layers: list[nn.Module] = []
    channels, side = ndf, image_size // 2
    while side > 4:
        out = min(2 * channels, ndf * 8)
        layers += [nn.Conv2d(channels, out, 4, stride=2, padding=1, bias=bias), norm_layer(norm, out),
                   nn.LeakyReLU(0.2, True)]
        channels, side = out, side // 2
    _doublings(image_size)  # refuses sizes the layers above do not take down to 4 x 4
    trunk = nn.Sequential(*layers, nn.Conv2d(channels, 1, 4, stride=1, padding=0))

    def first(in_channels: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True))

    return DomainDiscriminator(first(channels_a), trunk), DomainDiscriminator(first(channels_b), trunk)


def reconstruction_error(rendered: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The latent search's loss, one value per image: mean over pixels of |G_X(z) - x| (L1, as the CycleGAN paper
    allows; an outlier pixel pulls z less than under L2)."""
    return (rendered - target).abs().flatten(1).mean(1)


def _resized(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if images.shape[-2:] == (height, width):
        return images
    return functional.interpolate(images, size=(height, width), mode="bilinear", align_corners=False, antialias=True)


@contextmanager
def _in_eval_mode(net: nn.Module) -> Iterator[None]:
    """Batch norm with its running statistics (nothing updated, every image on its own), mode restored after."""
    was_training = net.training
    net.eval()
    try:
        yield
    finally:
        net.train(was_training)


class LatentSearch(nn.Module):
    """A CoGAN translator X -> Y that the Translator runs like any generator: resize x to the model's side S
    (bilinear, antialiased), search the latent whose G_X image is x (module docstring: SEARCH_STEPS seeded Adam
    steps on the mean L1), render G_Y of it and resize back to x's size. Any input size works, so no padding is
    needed (size_multiple = min_size = 1). Gradients are enabled for the search even inside no_grad or inference
    mode; only z is differentiated, so the generator's weights and gradients stay as they were.

    It is an optimisation, not a fixed graph: it cannot be exported to ONNX or .pt2, run by onnxruntime or
    translated in tiles (`exportable = False`, which export, engines and the Translator check). `steps`: the
    number of Adam steps (default: SEARCH_STEPS at each call)."""

    exportable = False
    size_multiple = 1
    min_size = 1

    def __init__(self, generator: CoupledGenerator, source: str, target: str, steps: int | None = None) -> None:
        super().__init__()
        if source not in DOMAINS or target not in DOMAINS:
            raise ValueError(f"domains must be a or b, not {source!r} and {target!r}")
        self.generator, self.source, self.target, self.steps = generator, source, target, steps

    def start(self, count: int, device: torch.device) -> torch.Tensor:
        """The seeded starting latents: one draw from N(0, I), the same for each of `count` images."""
        seeded = torch.Generator().manual_seed(SEARCH_SEED)
        first = torch.randn(1, self.generator.latent_size, generator=seeded)
        return first.expand(count, -1).to(device)

    def search(self, images: torch.Tensor) -> torch.Tensor:
        """The latents (N x latent_size) whose G_X images are closest to `images` (N x C x S x S) after the fixed
        number of steps. The images' errors are summed, so each latent follows its own image's gradient alone."""
        steps = SEARCH_STEPS if self.steps is None else self.steps
        with torch.inference_mode(False), torch.enable_grad(), _in_eval_mode(self.generator):
            target = images.detach().clone()  # a normal tensor even when given one made in inference mode
            z = self.start(len(target), target.device).clone().requires_grad_(True)
            optimizer = torch.optim.Adam([z], lr=SEARCH_LR)
            for _ in range(steps):
                error = reconstruction_error(self.generator.render(z, self.source), target).sum()
                (z.grad,) = torch.autograd.grad(error, z)
                optimizer.step()
            return z.detach()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        side = self.generator.image_size
        z = self.search(_resized(images, side, side))
        with torch.no_grad(), _in_eval_mode(self.generator):
            return _resized(self.generator.render(z, self.target), height, width)


def build_generators(networks: NetworksConfig) -> dict[str, nn.Module]:
    """CoGAN's translators by checkpoint name (gen_ab: A -> B, gen_ba: B -> A), initialised: two LatentSearch
    modules around ONE coupled generator, so each one's state holds the whole coupled generator under the same
    names (generator.trunk..., generator.heads.a..., generator.heads.b...). The registry's hook for models whose
    generators are not image-to-image networks (`ModelEntry.generator_builder`)."""
    n = networks
    size = latent_image_size(n.gen_arch)
    if size is None:
        raise ValueError(f"gen_arch={n.gen_arch!r} is not a latent-to-image generator; use dcgan_32, dcgan_64 or "
                         "dcgan_128")
    generator = CoupledGenerator(size, n.channels_a, n.channels_b, n.ngf, n.norm)
    init_weights(generator, n.init_type, n.init_gain)
    return {"gen_ab": LatentSearch(generator, "a", "b"), "gen_ba": LatentSearch(generator, "b", "a")}


def build_discriminators(networks: NetworksConfig) -> tuple[DomainDiscriminator, DomainDiscriminator]:
    """disc_a (D_A) and disc_b (D_B), sharing their trunk, initialised."""
    n = networks
    disc_a, disc_b = coupled_discriminators(latent_image_size(n.gen_arch), n.channels_a, n.channels_b, n.ndf, n.norm)
    init_weights(disc_a, n.init_type, n.init_gain)  # the trunk once, through disc_a
    init_weights(disc_b.first, n.init_type, n.init_gain)
    return disc_a, disc_b
