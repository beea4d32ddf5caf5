"""The official pretrained CycleGAN generators (Zhu et al.'s model zoo), fetched into the local cache.

Each official file is a bare generator state dict: resnet_9blocks, instance norm, ngf 64, no dropout, as written by
the official `torch.save(net.state_dict())`. Only its weights are loaded (`io/pth.py`: `weights_only=True`), never
its code.
"""

from __future__ import annotations

import os
from pathlib import Path

from .io.download import cache_dir, check_name, download
from .io.pth import read_state_dict

DEFAULT_PRETRAINED_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models"
PRETRAINED_URL_VARIABLE = "CYCLEGAN_PRETRAINED_URL"

# The names of the official download_cyclegan_model.sh; each file is one direction of one model, where G maps the
# data set's domain A (trainA) to B and F maps B to A.
PRETRAINED: dict[str, str] = {
    "apple2orange": "apples to oranges (G of the apple2orange model, ImageNet)",
    "orange2apple": "oranges to apples (F of the apple2orange model, ImageNet)",
    "summer2winter_yosemite": "summer to winter Yosemite photos (G of the summer2winter_yosemite model, Flickr)",
    "winter2summer_yosemite": "winter to summer Yosemite photos (F of the summer2winter_yosemite model, Flickr)",
    "horse2zebra": "horses to zebras (G of the horse2zebra model, ImageNet)",
    "zebra2horse": "zebras to horses (F of the horse2zebra model, ImageNet)",
    "monet2photo": "Monet paintings to photos (G of the monet2photo model)",
    "style_monet": "photos to paintings in the style of Claude Monet (F of the monet2photo model)",
    "style_cezanne": "photos to paintings in the style of Paul Cezanne (F of the cezanne2photo model)",
    "style_ukiyoe": "photos to Ukiyo-e prints (F of the ukiyoe2photo model)",
    "style_vangogh": "photos to paintings in the style of Vincent van Gogh (F of the vangogh2photo model)",
    "sat2map": "aerial photos to Google Maps renderings (maps model)",
    "map2sat": "Google Maps renderings to aerial photos (maps model, reverse direction)",
    "cityscapes_photo2label": "Cityscapes street photos to semantic label maps (G of the cityscapes model: A = photos)",
    "cityscapes_label2photo": "Cityscapes semantic label maps to street photos (F of the cityscapes model)",
    "facades_photo2label": "building facade photos to architectural label maps (facades model)",
    "facades_label2photo": "architectural label maps to building facade photos (facades model, reverse direction)",
    "iphone2dslr_flower": "iPhone flower photos to DSLR shallow depth of field (G of the iphone2dslr_flower model)",
}


def pretrained_base_url(base_url: str | None = None) -> str:
    """The explicit argument, else $CYCLEGAN_PRETRAINED_URL, else the official address; no trailing slash."""
    return (base_url or os.environ.get(PRETRAINED_URL_VARIABLE) or DEFAULT_PRETRAINED_URL).rstrip("/")


def pretrained_path(name: str, cache: Path | None = None) -> Path:
    """Where the weights of `name` live in the cache (whether or not they have been downloaded)."""
    return (cache if cache is not None else cache_dir()) / "pretrained" / f"{name}.pth"


def is_cached(name: str, cache: Path | None = None) -> bool:
    return pretrained_path(name, cache).is_file()


def check_state_dict(path: Path) -> None:
    """Raise CheckpointError (a ValueError) unless `path` holds a state dict that loads without running any
    pickled code: the check a download must pass before it is placed in the cache."""
    read_state_dict(path)


def pretrained_file(name: str, base_url: str | None = None, cache: Path | None = None,
                    show_progress: bool = True) -> Path:
    """The local path of the official generator `name`, downloaded (resumably, checked) on first use.

    Raises UnknownNameError (a DownloadError) for a name not in PRETRAINED, and DownloadError for any failure.
    """
    check_name(name, PRETRAINED, "pretrained model", "cyclegan pretrained list")
    url = f"{pretrained_base_url(base_url)}/{name}.pth"
    return download(url, pretrained_path(name, cache), show_progress=show_progress, validate=check_state_dict)
