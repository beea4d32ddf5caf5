"""The official unpaired data sets of the CycleGAN paper, downloaded once and extracted safely.

Each official archive is `{NAME}.zip` holding one top folder NAME/ with trainA, trainB, testA and testB. The zip is
kept in the cache (so an interrupted download resumes) and extracted all-or-nothing into `root/NAME`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from ..io.download import (
    DownloadError,
    cache_dir,
    check_name,
    check_zip,
    download,
    safe_extract_zip,
)

logger = logging.getLogger(__name__)

DEFAULT_DATASET_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets"
DATASET_URL_VARIABLE = "CYCLEGAN_DATASET_URL"
REQUIRED_FOLDERS = ("trainA", "trainB")
CITYSCAPES_NOTE = ("the official site does not host Cityscapes for license reasons: download gtFine_trainvaltest.zip "
                   "and leftImg8bit_trainvaltest.zip from https://www.cityscapes-dataset.com and prepare them into "
                   "trainA/trainB/testA/testB (see the official prepare_cityscapes_dataset.py), or point "
                   "--base-url at a mirror that serves cityscapes.zip")

# The names of the official download_cyclegan_dataset.sh (paper Sec. 5 and the project page).
DATASETS: dict[str, str] = {
    "apple2orange": "apples <-> oranges, ImageNet photos",
    "summer2winter_yosemite": "summer <-> winter photos of Yosemite, Flickr",
    "horse2zebra": "horses <-> zebras, ImageNet photos",
    "monet2photo": "Claude Monet paintings <-> Flickr landscape photos",
    "cezanne2photo": "Paul Cezanne paintings <-> Flickr landscape photos",
    "ukiyoe2photo": "Ukiyo-e prints <-> Flickr landscape photos",
    "vangogh2photo": "Vincent van Gogh paintings <-> Flickr landscape photos",
    "maps": "Google Maps renderings <-> aerial photos of New York (paired, used unpaired)",
    "cityscapes": "Cityscapes semantic labels <-> street photos; must be prepared from the Cityscapes website "
                  "(license), the official site does not serve it",
    "facades": "CMP Facades architectural labels <-> building photos",
    "iphone2dslr_flower": "iPhone <-> DSLR flower photos (shallow depth of field), Flickr",
    "ae_photos": "test photos by Alexei Efros for the style models (style_monet, style_cezanne, ...)",
}


def dataset_base_url(base_url: str | None = None) -> str:
    """The explicit argument, else $CYCLEGAN_DATASET_URL, else the official address; no trailing slash."""
    return (base_url or os.environ.get(DATASET_URL_VARIABLE) or DEFAULT_DATASET_URL).rstrip("/")


def _has_layout(folder: Path) -> bool:
    return all((folder / name).is_dir() for name in REQUIRED_FOLDERS)


def _check_layout(name: str) -> Callable[[Path], None]:
    def check(folder: Path) -> None:
        if not _has_layout(folder):
            found = sorted(entry.name for entry in folder.iterdir())[:10]
            raise DownloadError(f"the {name} archive does not hold the official layout (trainA, trainB, testA, "
                                f"testB); found: {', '.join(found) or 'nothing'}")
    return check


def download_dataset(name: str, root: Path = Path("datasets"), base_url: str | None = None,
                     show_progress: bool = True, cache: Path | None = None) -> Path:
    """The folder `root/name` with trainA and trainB (and usually testA, testB), downloaded and extracted if needed.

    The zip goes to `cache/datasets/{name}.zip` (resumable, checked); extraction is all-or-nothing. Raises
    UnknownNameError (a DownloadError) for a name not in DATASETS and DownloadError for any other failure.
    """
    check_name(name, DATASETS, "data set", "cyclegan data list")
    folder = Path(root) / name
    if _has_layout(folder):
        logger.info("%s is already in %s", name, folder)
        return folder
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise DownloadError(f"{folder} exists but holds no trainA and trainB folders; remove it or choose another "
                            "--root, then run the command again")
    if name == "cityscapes":
        logger.warning("cityscapes: %s", CITYSCAPES_NOTE)
    url = f"{dataset_base_url(base_url)}/{name}.zip"
    archive = (cache if cache is not None else cache_dir()) / "datasets" / f"{name}.zip"
    try:
        download(url, archive, show_progress=show_progress, validate=check_zip)
    except DownloadError as error:
        if name == "cityscapes":
            raise DownloadError(f"{error}\nnote: {CITYSCAPES_NOTE}") from error
        raise
    try:
        return safe_extract_zip(archive, folder, validate=_check_layout(name))
    except DownloadError as error:
        # Corrupt, unsafe or of the wrong layout: the cached zip is useless, so a rerun must fetch it afresh.
        archive.unlink(missing_ok=True)
        raise type(error)(f"{error}; the cached archive was deleted") from error
