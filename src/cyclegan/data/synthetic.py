"""The built-in data set: procedural street scenes as a small, offline labels <-> photos task.

Each scene is a pure function of (seed, index): a perspective street (road, sidewalks, facades of varied
height, sky) with cars, people, poles and trees, drawn twice: as a Cityscapes-coloured label map (the paper's
labels <-> photos task, Sec. 5.1) and as a "photo" with textures, lighting, colour variation and sensor noise.
The same class looks different across and within scenes, so the translation is not a colour lookup.

Geometry lives in `synthetic_scene.py`; this module turns it into images and writes the data set.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
from PIL import Image

from cyclegan.data.folders import DatasetError
from cyclegan.data.synthetic_scene import (
    BUILDING,
    CAR,
    PALETTE,
    PERSON,
    POLE,
    ROAD,
    SIDEWALK,
    SKY,
    VEGETATION,
    Scene,
    draw_scene,
    sample_scene,
)
from cyclegan.io.atomic import atomic_write_text
from cyclegan.io.images import save_image

__all__ = ["PALETTE", "render_scene", "render_labels", "write_dataset", "ensure_builtin"]

_SUPERSAMPLE = 2  # draw at twice the size and average 2x2 blocks: smooth photo edges, cheap
_FORMAT_VERSION = 1  # bump when the renderer changes, so cached data sets are rebuilt
_LABEL_LUT = np.array(list(PALETTE.values()), dtype=np.uint8)
_LIT_WINDOW = np.array([235.0, 205.0, 140.0], dtype=np.float32)
# Texture group of each class id: 0 sky, 1 ground, 2 facades, 3 plants, 4 solid objects.
# Texture groups: 0 sky, 1 ground, 2 facades, 3 plants, 4 solid objects; 5 counts road pixels among ground.
# Each pixel adds 1 to its groups' 3-bit fields, so one integer sum per block counts every group at once.
_GROUP_OF = {SKY: (0,), ROAD: (1, 5), SIDEWALK: (1,), BUILDING: (2,), VEGETATION: (3,), CAR: (4,),
             PERSON: (4,), POLE: (4,)}
_GROUP_BITS = np.zeros(256, dtype=np.uint32)  # 3-bit fields count up to 7: supersampling of at most 2
for _class, _groups in _GROUP_OF.items():
    _GROUP_BITS[_class] = sum(1 << (3 * group) for group in _groups)


def _smooth_noise(rng: np.random.Generator, size: int, cell: int) -> np.ndarray:
    """Zero-mean noise of roughly unit variance with features about `cell` pixels wide, flattened."""
    cells = size // cell + 2
    coarse = rng.standard_normal((cells, cells), dtype=np.float32)
    upsampled = Image.fromarray(coarse).resize((cells * cell, cells * cell), Image.Resampling.BILINEAR)
    return np.ascontiguousarray(np.asarray(upsampled)[:size, :size]).ravel()


def _fraction(values: np.ndarray) -> np.ndarray:
    return values - np.floor(values)  # x % 1, several times faster than numpy's modulo


def _hash01(*keys: np.ndarray) -> np.ndarray:
    """A deterministic integer hash of grid cells mapped to [0, 1): per-window randomness without a loop."""
    mixed = np.zeros(keys[0].shape, dtype=np.int64)
    for key, prime in zip(keys, (73856093, 19349663, 83492791), strict=False):
        mixed ^= key.astype(np.int64) * prime
    mixed = (mixed ^ (mixed >> 13)) * 1274126177
    return ((mixed ^ (mixed >> 16)) & 1023).astype(np.float32) / 1024.0


def _as_float(mask: np.ndarray) -> np.ndarray:
    return mask.astype(np.float32)  # bool * Python float would give float64, twice the work


def _mix(base: np.ndarray, other: np.ndarray, amount: np.ndarray) -> np.ndarray:
    """base * (1 - amount) + other * amount, with arithmetic rather than np.where (much faster here)."""
    return base + (other - base) * amount


# Below, images are planar: colours are 3 x N arrays over the N pixels of the render, row by row. Textures are
# computed for every pixel and selected by class masks; with numpy this beats gathering pixel subsets.

def _sky(scene: Scene, y: np.ndarray, clouds: np.ndarray) -> np.ndarray:
    """Vertical gradient from a paler horizon to the zenith, with soft clouds."""
    height = np.clip(1.0 - y / max(scene.view.horizon, 1e-3), 0.0, 1.0)
    sky = _mix(scene.sky_horizon[:, None], scene.sky_zenith[:, None], height)
    cover = np.clip((clouds - 1.0 + 2.0 * scene.cloudiness) * 0.8, 0.0, 1.0)
    return _mix(sky, scene.cloud_colour[:, None] * (0.85 + 0.15 * height), cover)


def _band(distance: np.ndarray, half_width: float | np.ndarray, pixel: np.ndarray) -> np.ndarray:
    """Anti-aliased indicator of |distance| < half_width, where `pixel` is one pixel in the same units."""
    return np.clip((half_width - np.abs(distance)) / pixel + 0.5, 0.0, 1.0)


def _ground(scene: Scene, x: np.ndarray, y: np.ndarray, road: np.ndarray, fine: np.ndarray,
            patches: np.ndarray, size: int) -> np.ndarray:
    """Asphalt with lane marks on the road, paving with joints and a kerb on the sidewalk."""
    view = scene.view
    t = np.clip((y - view.horizon) / (1.0 - view.horizon), 1e-3, None)
    lateral = (x - view.centre) / (view.k * t)
    depth = view.z0 / t
    detail = np.clip(t * 6.0, 0.0, 1.0)  # fade fine patterns towards the horizon (no moire)
    asphalt = scene.asphalt[:, None] * (1.0 + 0.06 * patches + 0.08 * fine * detail)
    metre = 1.0 / (view.k * t * size)  # one pixel, in metres across the street
    dashes = _band(lateral - scene.lane_mark, 0.08, metre) * (_fraction(depth / 9.0) < 0.4)
    edges = scene.edge_lines * np.maximum(_band(lateral + scene.road_left - 0.35, 0.07, metre),
                                          _band(lateral - scene.road_right + 0.35, 0.07, metre))
    paint = np.maximum(dashes, edges) * np.clip(0.8 + 0.3 * patches, 0.0, 1.0) * detail
    asphalt = _mix(asphalt, scene.paint[:, None], paint)
    joints = (_fraction(np.abs(lateral) / scene.tile) < 0.05 / scene.tile) | (
        _fraction(depth / scene.tile) < 0.05 / scene.tile)
    kerb = (np.abs(lateral + scene.road_left) < 0.25) | (np.abs(lateral - scene.road_right) < 0.25)
    paving = 1.0 + 0.05 * patches + (0.05 * fine - 0.18 * _as_float(joints)) * detail + 0.12 * _as_float(kerb)
    return _mix(scene.paving[:, None] * paving, asphalt, road)


def _facades(scene: Scene, x: np.ndarray, y: np.ndarray, ids: np.ndarray, size: int,
             patches: np.ndarray) -> np.ndarray:
    """Walls with window grids: a pixel's position on its facade plane gives its floor and window column."""
    view = scene.view
    table = scene.building_table()
    row = {name: table[name][ids] for name in ("side", "plane", "height", "column", "floor", "window_w",
                                               "window_h", "light", "shops")}
    frontal = (row["side"] == 0).astype(np.float32)
    # Side facades are planes of constant lateral position, frontal ones planes of constant depth.
    t_side = np.clip((x - view.centre) / (row["plane"] * view.k + frontal), 1e-3, None)
    t = _mix(t_side, view.z0 / row["plane"], frontal)
    along = _mix(view.z0 / t, (x - view.centre) / (view.k * t), frontal)
    up = (view.horizon + (1.0 - view.horizon) * t - y) / (view.k * t)
    column, floor = along / row["column"], up / row["floor"]
    column_index, floor_index = np.floor(column), np.floor(floor)
    across, within = column - column_index, floor - floor_index
    pixel_across = 1.0 / (row["column"] * view.k * t * size)  # one pixel, in window cells
    pixel_up = 1.0 / (row["floor"] * view.k * t * size)
    windows = _band(across - 0.5, row["window_w"] / 2, pixel_across)
    windows *= _band(within - 0.55, row["window_h"] / 2, pixel_up)
    windows *= _as_float((floor_index >= 1) & (up < row["height"] - 0.5 * row["floor"]))
    shops = _band(across - 0.5, 0.42, pixel_across) * _band(within - 0.44, 0.36, pixel_up)
    shops *= _as_float((floor_index == 0) & (row["shops"] > 0))
    shade = 1.0 + 0.08 * patches - 0.15 * _as_float((within < 0.06) & (floor_index >= 1))  # floor cornices
    shade -= 0.3 * shade * _as_float(up > row["height"] - 0.4)  # roof edge
    shade *= np.sqrt(0.7 + 0.3 * np.clip(up * 0.25, 0.0, 1.0))  # darker at street level
    wall = np.stack([table["wall"][:, channel][ids] for channel in range(3)]) * shade
    luck = _hash01(column_index, floor_index, ids)
    glass = np.stack([table["glass"][:, channel][ids] for channel in range(3)]) * (0.6 + 0.7 * luck)
    glass = _mix(glass, _LIT_WINDOW[:, None], _as_float(luck > 0.92))
    # Windows far away are narrower than a pixel: blend them into the wall instead of aliasing.
    visible = np.clip((row["column"] * view.k * t * size - 1.5) / 3.0, 0.0, 1.0)
    return _mix(wall, glass, np.maximum(windows, shops) * visible) * row["light"]


def _finish(scene: Scene, photo: np.ndarray) -> np.ndarray:
    """Scene-wide lighting gradient, vignette, colour balance, exposure and contrast (3 x H x W)."""
    size = photo.shape[1]
    coordinates = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    x, y = coordinates[None, :], coordinates[:, None]
    light = 1.0 + scene.light_gradient[0] * x + scene.light_gradient[1] * y
    light = light * (1.0 - scene.vignette * (x * x + y * y))
    photo = photo * light * (scene.white_balance * scene.exposure)[:, None, None]
    mean = photo.mean(axis=(1, 2), keepdims=True)
    return (photo - mean) * scene.contrast + mean


@functools.lru_cache(maxsize=4)
def _pixel_centres(size: int) -> tuple[np.ndarray, np.ndarray]:
    """x and y of every pixel centre, as fractions of the image size, row by row (read-only, cached)."""
    coordinates = (np.arange(size, dtype=np.float32) + 0.5) / size
    x, y = np.tile(coordinates, size), np.repeat(coordinates, size)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _box(image: np.ndarray, factor: int) -> np.ndarray:
    """Average `factor` x `factor` blocks of an H x W (x C) array: coverages, anti-aliased colours."""
    # Strided sums: numpy's mean over reshaped block axes is several times slower.
    total = np.zeros(image[::factor, ::factor].shape, dtype=np.float32)
    for row in range(factor):
        for column in range(factor):
            total += image[row::factor, column::factor]
    return total * (1.0 / (factor * factor))


def _coverages(classes: np.ndarray, factor: int) -> np.ndarray:
    """Fraction of each `factor` x `factor` block covered by each texture group: 6 x N (see _GROUP_BITS)."""
    bits = _GROUP_BITS[classes]
    counts = np.zeros(bits[::factor, ::factor].shape, dtype=np.uint32)
    for row in range(factor):
        for column in range(factor):
            counts += bits[row::factor, column::factor]
    counts = counts.ravel()
    fields = np.stack([(counts >> (3 * group)) & 7 for group in range(6)])
    return fields.astype(np.float32) / (factor * factor)


def render_scene(seed: int, index: int, size: int) -> tuple[Image.Image, Image.Image]:
    """Render scene `index` of data set `seed` at `size` x `size` pixels: (labels, photo), both RGB.

    Labels use exactly the colours of `PALETTE`; the photo shows the same scene. A pure function of the
    arguments.
    """
    scene = sample_scene(np.random.default_rng([seed, index, 0]))
    # Geometry is drawn at twice the size and averaged into coverage fractions, so class edges are smooth;
    # textures are computed once per output pixel, which keeps a 128 px scene within a few milliseconds.
    fine_classes, fine_instances, fine_colours, fine_light = draw_scene(scene, size * _SUPERSAMPLE)
    coverage = _coverages(fine_classes, _SUPERSAMPLE)
    road = np.clip(coverage[5] / np.maximum(coverage[1], 1e-6), 0.0, 1.0)
    instances = fine_instances[::_SUPERSAMPLE, ::_SUPERSAMPLE].copy()
    for row in range(_SUPERSAMPLE):  # any building in the block, never "no building" at a facade's edge
        for column in range(_SUPERSAMPLE):
            np.maximum(instances, fine_instances[row::_SUPERSAMPLE, column::_SUPERSAMPLE], out=instances)
    instances = instances.ravel()
    light = _box(fine_light, _SUPERSAMPLE).ravel() * scene.ground_light
    colours = _box(fine_colours, _SUPERSAMPLE).reshape(-1, 3).T  # objects only, premultiplied by coverage

    rng = np.random.default_rng([seed, index, 1])  # textures: own stream, so layouts do not depend on size
    x, y = _pixel_centres(size)
    fine = rng.standard_normal(size * size, dtype=np.float32)
    patches = _smooth_noise(rng, size, max(2, size // 16))
    clouds = _smooth_noise(rng, size, max(3, size // 6)) + 0.4 * patches
    leaves = _smooth_noise(rng, size, 1 + size // 128) + 0.6 * fine

    photo = _sky(scene, y, clouds) * coverage[0]
    photo += _ground(scene, x, y, road, fine, patches, size) * (light * coverage[1])
    photo += _facades(scene, x, y, instances, size, patches) * (scene.ground_light * coverage[2])
    plant_share = coverage[3] / np.maximum(coverage[3] + coverage[4], 1e-6)
    texture = 1.0 + plant_share * (0.3 * leaves - 0.05) + (1.0 - plant_share) * 0.04 * fine
    photo += colours * (texture * scene.ground_light)

    photo = _finish(scene, photo.reshape(3, size, size))
    photo += rng.standard_normal(photo.shape, dtype=np.float32) * scene.sensor_noise
    photo = np.clip(np.rint(photo), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return _labels(fine_classes), Image.fromarray(np.ascontiguousarray(photo))


def _labels(fine_classes: np.ndarray) -> Image.Image:
    # One pixel of each supersampled block, so labels hold exact palette colours (no blending).
    return Image.fromarray(_LABEL_LUT[fine_classes[::_SUPERSAMPLE, ::_SUPERSAMPLE]])


def render_labels(seed: int, index: int, size: int) -> Image.Image:
    """The label map of `render_scene(seed, index, size)` alone, without the cost of the photo."""
    scene = sample_scene(np.random.default_rng([seed, index, 0]))
    return _labels(draw_scene(scene, size * _SUPERSAMPLE)[0])


def _parameters(size: int, n_train: int, n_test: int, seed: int, paired: bool) -> dict[str, int | bool]:
    parameters = {"version": _FORMAT_VERSION, "size": size, "n_train": n_train, "n_test": n_test, "seed": seed}
    return {**parameters, "paired": True} if paired else parameters  # unpaired sets written before stay valid


def _is_complete(out_dir: Path, parameters: dict[str, int | bool]) -> bool:
    marker = out_dir / "builtin.json"
    try:
        if json.loads(marker.read_text(encoding="utf-8")) != parameters:
            return False
    except (OSError, ValueError):
        return False
    expected = {"trainA": parameters["n_train"], "trainB": parameters["n_train"],
                "testA": parameters["n_test"], "testB": parameters["n_test"]}
    return all(len(list((out_dir / name).glob("*.png"))) == count for name, count in expected.items())


def _plan(n_train: int, n_test: int, paired: bool) -> dict[str, tuple[range, int]]:
    """Split folder -> (scene indices, which image of the pair: 0 labels, 1 photo).

    The test scenes are the same with or without `paired`, so models trained either way are compared on them.
    """
    test = range(2 * n_train, 2 * n_train + n_test)
    train_b = range(0, n_train) if paired else range(n_train, 2 * n_train)
    return {"trainA": (range(0, n_train), 0), "trainB": (train_b, 1), "testA": (test, 0), "testB": (test, 1)}


def write_dataset(out_dir: str | Path, size: int = 128, n_train: int = 200, n_test: int = 50,
                  seed: int = 0, paired: bool = False) -> Path:
    """Write the built-in data set in the official layout and return its folder.

    trainA (labels) and trainB (photos) come from disjoint scenes, so training is truly unpaired; with
    `paired`, they show the same scenes under the same file names instead (aligned training data, for pix2pix).
    testA and testB always show the same scenes under the same file names, for paired evaluation. Files are
    named by scene index. If the folder already holds a complete data set with these parameters, nothing is
    rewritten.
    """
    out_dir = Path(out_dir)
    for name, value, least in (("size", size, 1), ("train scenes", n_train, 1), ("test scenes", n_test, 0),
                               ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise DatasetError(f"{name} {value!r}: give a whole number of at least {least}; nothing was written")
    blocking = next((p for p in (out_dir, *out_dir.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise DatasetError(f"{blocking} is a file, not a folder: the data set is written as folders trainA, trainB, "
                           f"testA, testB inside {out_dir}; give a new or existing folder")
    parameters = _parameters(size, n_train, n_test, seed, paired)
    if _is_complete(out_dir, parameters):
        return out_dir
    (out_dir / "builtin.json").unlink(missing_ok=True)  # incomplete until everything below is written
    plan = _plan(n_train, n_test, paired)
    for folder, (scenes, _) in plan.items():
        expected = {f"{scene:04d}.png" for scene in scenes}
        if (out_dir / folder).is_dir():  # drop images left by a data set with other parameters
            for stale in (out_dir / folder).glob("*.png"):
                if stale.name not in expected and stale.stem.isdigit():
                    stale.unlink()
    for scene in sorted(set().union(*(scenes for scenes, _ in plan.values()))):
        targets = [(folder, which) for folder, (scenes, which) in plan.items() if scene in scenes]
        # One render per scene; a scene that only needs its labels skips the photo.
        if any(which == 1 for _, which in targets):
            images = render_scene(seed, scene, size)
        else:
            images = (render_labels(seed, scene, size), None)
        for folder, which in targets:
            save_image(images[which], out_dir / folder / f"{scene:04d}.png")
    classes = [{"id": i, "name": name, "color": list(colour)}
               for i, (name, colour) in enumerate(PALETTE.items())]
    atomic_write_text(out_dir / "palette.json", json.dumps({"classes": classes}, indent=2) + "\n")
    atomic_write_text(out_dir / "README.txt", _README.format(train_b=_PAIRED_TRAIN_B if paired else _UNPAIRED_TRAIN_B,
                                                             **parameters))
    atomic_write_text(out_dir / "builtin.json", json.dumps(parameters, sort_keys=True) + "\n")
    return out_dir


def ensure_builtin(root: str | Path, size: int, count: int, seed: int = 0, paired: bool = False) -> Path:
    """The built-in data set under `root` (written on first use): `count` training scenes per domain, unpaired
    (CycleGAN) or, with `paired`, aligned (pix2pix).

    Each parameter set gets its own sub-folder, so switching sizes does not overwrite another run's data.
    """
    out_dir = Path(root) / f"streets_{size}px_{count}_seed{seed}{'_paired' if paired else ''}"
    return write_dataset(out_dir, size=size, n_train=count, n_test=max(8, count // 4), seed=seed, paired=paired)


_README = """Built-in CycleGAN data set: procedural street scenes (labels <-> photos), generated by cyclegan.

size: {size} px   training scenes per domain: {n_train}   test scenes: {n_test}   seed: {seed}

trainA  label maps (Cityscapes colours, see palette.json) of scenes 0 .. n_train-1
trainB  {train_b}
testA   label maps of the test scenes
testB   photos of the same test scenes, same file names: pairs for evaluation
"""
_UNPAIRED_TRAIN_B = "photos of other scenes (n_train .. 2*n_train-1): the two domains are unpaired"
_PAIRED_TRAIN_B = "photos of the same scenes, same file names: aligned pairs for training (pix2pix)"
