"""The VGG-16 weights of the "Feature loss + GAN" baseline (models/feature_gan.py): found, downloaded once, checked,
and loaded into `nets.vgg.VGG16Features`.

Resolution, in the order of the FID Inception weights (metrics/fid.py): an explicit path (the model's `vgg_weights`
option), else $CYCLEGAN_VGG16_WEIGHTS, else the cache (`vgg16/` in `io.download.cache_dir()`), else a download
from torchvision's address (or $CYCLEGAN_VGG16_URL) into the cache. torchvision names each file after the first hex
digits of its SHA-256 (vgg16-397923af.pth), so a download is placed only if its hash starts with them (as
torch.hub's check_hash does) and its tensors fit the network. The file is read by `io.pth`: tensors only.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

import torch

from ..nets.vgg import VGG16Features, features_state
from .checkpoints import CheckpointError
from .download import DownloadError, cache_dir, download
from .pth import read_state_dict

logger = logging.getLogger(__name__)

WEIGHTS_FILENAME = "vgg16-397923af.pth"
WEIGHTS_URL = f"https://download.pytorch.org/models/{WEIGHTS_FILENAME}"
WEIGHTS_VARIABLE = "CYCLEGAN_VGG16_WEIGHTS"
URL_VARIABLE = "CYCLEGAN_VGG16_URL"
# torch.hub's convention: NAME-<first hex digits of the SHA-256>.EXT
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[^.]+$")


def url_file_name(url: str) -> str:
    """The file name at the end of `url`'s path (what the cached copy is called)."""
    return unquote(urlparse(url).path.rsplit("/", 1)[-1])


def hash_prefix(url: str) -> str:
    """The SHA-256 prefix that the file name of `url` carries; DownloadError if it carries none."""
    match = _HASH_IN_NAME.search(url_file_name(url))
    if match is None:
        raise DownloadError(f"{url}: the file name carries no SHA-256 prefix to check the download against "
                            f"(torchvision's names do: {WEIGHTS_FILENAME}); set {URL_VARIABLE} to such an address, "
                            f"or download the file yourself and set {WEIGHTS_VARIABLE}=PATH")
    return match.group(1)


def sha256_of(path: Path) -> str:
    """The hex SHA-256 of the file `path`, read in pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while piece := stream.read(1 << 20):
            digest.update(piece)
    return digest.hexdigest()


def _checker(url: str, prefix: str) -> Callable[[Path], None]:
    """The check of a finished download: its hash, then its tensors."""
    def check(part: Path) -> None:
        found = sha256_of(part)
        if not found.startswith(prefix):
            raise DownloadError(f"its SHA-256 is {found}, which does not start with {prefix}, the prefix its name "
                                f"{url_file_name(url)} promises: not the file it names")
        features_state(read_state_dict(part), url_file_name(url))
    return check


def _missing_weights_advice(url: str, target: Path) -> str:
    return (f"feature_gan needs the VGG-16 ImageNet weights file {url_file_name(url)} (torchvision's, 528 MB). "
            f"Download {url} with a browser or another machine, then pass --vgg-weights PATH (config file: "
            f"vgg_weights in the feature_gan section), or set {WEIGHTS_VARIABLE}=PATH, or place the file at {target}")


def resolve_vgg16_weights(weights: str | Path | None = None, show_progress: bool = True) -> Path:
    """The weights file: `weights`, else $CYCLEGAN_VGG16_WEIGHTS, else the cache, downloaded there once from
    torchvision's address or $CYCLEGAN_VGG16_URL (hash-checked). CheckpointError for a given path that does not
    exist; DownloadError, saying where to put the file, when it cannot be downloaded."""
    given = weights if weights is not None else os.environ.get(WEIGHTS_VARIABLE) or None
    if given is not None:
        path = Path(given).expanduser()
        if not path.is_file():
            source = "" if weights is not None else f" (from ${WEIGHTS_VARIABLE})"
            raise CheckpointError(f"VGG-16 weights file {path}{source} does not exist; give the path of "
                                  f"torchvision's {WEIGHTS_FILENAME}")
        return path
    url = os.environ.get(URL_VARIABLE) or WEIGHTS_URL
    target = cache_dir() / "vgg16" / url_file_name(url)
    if target.is_file():
        return target
    prefix = hash_prefix(url)
    logger.info("downloading the VGG-16 weights from %s to %s", url, target)
    try:
        return download(url, target, show_progress=show_progress, validate=_checker(url, prefix))
    except DownloadError as error:
        raise DownloadError(f"{error}\n{_missing_weights_advice(url, target)}") from error


def load_vgg16_features(path: str | Path) -> VGG16Features:
    """`VGG16Features` holding the weights of the torchvision VGG-16 file `path` (on the CPU), in eval mode and
    frozen: a fixed measure, never trained. CheckpointError naming the file if its tensors do not fit."""
    try:
        state = features_state(read_state_dict(path), str(path))
    except CheckpointError:
        raise
    except ValueError as error:
        raise CheckpointError(str(error)) from None
    with torch.device("meta"):  # no initialisation (and no draw from the seeded generator): the file replaces it
        net = VGG16Features()
    net.load_state_dict(state, assign=True)
    return net.requires_grad_(False).eval()
