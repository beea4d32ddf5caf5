"""The image sizes the networks accept, by arithmetic over their layers (checked against the networks in
tests/test_config.py), so a configuration is refused before anything is built or written."""

from __future__ import annotations

UNET_LEVELS = {"unet_128": 7, "unet_256": 8}  # as generators.build_generator builds them
# The latent-to-image generators of CoGAN (nets/cogan.py): each makes square images of exactly this side.
DCGAN_SIZES = {"dcgan_32": 32, "dcgan_64": 64, "dcgan_128": 128}


def latent_image_size(gen_arch: str) -> int | None:
    """The side of the images a latent-to-image generator makes (dcgan_*), or None for an image-to-image one."""
    return DCGAN_SIZES.get(gen_arch)


def size_multiple(gen_arch: str) -> int:
    """The multiple of which the generator needs its input sides: it halves them twice (ResNet) or once per
    U-Net level, and the upsampling must give back the input's size exactly. A dcgan_* generator makes images of
    one side only, which is its multiple (the config asks for exactly that side)."""
    if gen_arch in DCGAN_SIZES:
        return DCGAN_SIZES[gen_arch]
    return 2 ** UNET_LEVELS[gen_arch] if gen_arch in UNET_LEVELS else 4


def smallest_input(gen_arch: str, disc_arch: str, n_layers_d: int) -> int:
    """The smallest square training image the generator and the discriminator both accept.

    ResNet generator: its residual blocks reflect-pad by 1, which needs maps of at least 2 pixels after the two
    stride-2 convolutions: 8. U-Net: n levels halve the image down to 1 pixel at the innermost one: 2**n.
    PatchGAN with n layers: n stride-2 4x4 convolutions (padding 1) take s to floor(s / 2**n), and the two stride-1
    4x4 ones remove a pixel each, so one score needs floor(s / 2**n) >= 3: s >= 3 * 2**n (24 for the 70x70 one).
    PixelGAN: its norm needs more than one pixel: 2. The result is rounded up to `size_multiple`. A dcgan_*
    generator (CoGAN) and its own discriminators take their one size.
    """
    multiple = size_multiple(gen_arch)
    if gen_arch in DCGAN_SIZES:  # its own discriminators take exactly its images
        return multiple
    generator = multiple if gen_arch in UNET_LEVELS else 8
    n_layers = 3 if disc_arch == "basic" else n_layers_d
    discriminator = 2 if disc_arch == "pixel" else 3 * 2**n_layers
    return -(-max(generator, discriminator) // multiple) * multiple
