"""Geometry of the built-in street scenes: a random layout and its rasterisation into label and colour layers.

The camera looks down a straight street. A point at lateral offset `s`, distance `z` and height `h` (metres)
projects to x = centre + s k t, y = horizon + (1 - horizon) t - h k t with t = z0 / z, so every ground line
meets the vanishing point (centre, horizon) and sizes shrink with distance. `synthetic.py` adds the textures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

# Cityscapes colours (Cordts et al. 2016), the label maps of the paper's labels <-> photos task.
PALETTE: dict[str, tuple[int, int, int]] = {
    "road": (128, 64, 128),
    "sidewalk": (244, 35, 232),
    "building": (70, 70, 70),
    "vegetation": (107, 142, 35),
    "sky": (70, 130, 180),
    "car": (0, 0, 142),
    "person": (220, 20, 60),
    "pole": (153, 153, 153),
}
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, CAR, PERSON, POLE = range(len(PALETTE))

_WALLS = np.array([[196, 178, 150], [170, 90, 70], [150, 150, 155], [225, 220, 205], [120, 95, 80],
                   [200, 160, 120], [105, 110, 120], [180, 190, 185]], dtype=np.float32)
_CAR_PAINTS = np.array([[200, 30, 30], [30, 50, 140], [235, 235, 235], [25, 25, 28], [150, 152, 158],
                        [40, 100, 60], [210, 170, 40], [90, 60, 40]], dtype=np.float32)
_CLOTHES = np.array([[40, 40, 50], [60, 45, 40], [30, 50, 80], [90, 30, 35], [70, 70, 70], [45, 60, 45]],
                    dtype=np.float32)
_SKIN = np.array([[230, 190, 160], [190, 140, 100], [120, 80, 55]], dtype=np.float32)


@dataclass
class View:
    """Pinhole camera: vanishing point (centre, horizon) as image fractions, scale k per metre at t = 1."""

    horizon: float
    centre: float
    k: float
    z0: float  # distance of the ground at the bottom image row, in metres

    def point(self, lateral: float, depth: float, height: float, size: int) -> tuple[float, float]:
        t = self.z0 / depth
        x = self.centre + lateral * self.k * t
        y = self.horizon + (1.0 - self.horizon) * t - height * self.k * t
        return x * size, y * size


@dataclass
class Building:
    side: int  # -1 left, +1 right (plane of constant lateral position), 0 frontal (constant depth)
    plane: float  # lateral position of a side facade, depth of a frontal one
    start: float  # extent along the plane: depth for side facades, lateral for frontal ones
    end: float
    height: float
    column: float  # window column spacing, metres
    floor: float  # storey height, metres
    window_w: float  # window size as a fraction of a cell
    window_h: float
    shops: bool
    wall: np.ndarray
    glass: np.ndarray
    light: float


@dataclass
class Scene:
    """Everything random about one scene; `draw_scene` and the texturing read it, nothing else is random."""

    view: View
    road_left: float
    road_right: float
    walk_left: float
    walk_right: float
    buildings: list[Building]
    objects: list[tuple[str, float, float, np.ndarray]]  # (kind, lateral, depth, parameters), any order
    shade_left: float  # width of the street shadow cast by the left buildings (metres; < 0 for the right)
    sky_zenith: np.ndarray
    sky_horizon: np.ndarray
    cloud_colour: np.ndarray
    cloudiness: float
    asphalt: np.ndarray
    paving: np.ndarray
    paint: np.ndarray
    lane_mark: float
    edge_lines: bool
    tile: float
    ground_light: float
    light_gradient: np.ndarray
    vignette: float
    white_balance: np.ndarray
    exposure: float
    contrast: float
    sensor_noise: float

    def building_table(self) -> dict[str, np.ndarray]:
        """Per-building values as arrays indexed by instance id (row 0: no building, harmless values)."""
        rows = [Building(1, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, False, np.zeros(3), np.zeros(3), 1.0)]
        rows += self.buildings
        table = {name: np.array([getattr(b, name) for b in rows], dtype=np.float32)
                 for name in ("side", "plane", "height", "column", "floor", "window_w", "window_h", "light")}
        table["shops"] = np.array([b.shops for b in rows])
        table["wall"] = np.stack([b.wall for b in rows]).astype(np.float32)
        table["glass"] = np.stack([b.glass for b in rows]).astype(np.float32)
        return table


def _colour(rng: np.random.Generator, base: np.ndarray, spread: float) -> np.ndarray:
    return np.clip(base * rng.uniform(1 - spread, 1 + spread, 3), 0, 255).astype(np.float32)


def _building(rng: np.random.Generator, side: int, plane: float, start: float, end: float,
              light: float) -> Building:
    return Building(
        side=side, plane=plane, start=start, end=end, height=float(rng.uniform(7, 32)),
        column=float(rng.uniform(2.4, 4.2)), floor=float(rng.uniform(2.9, 3.8)),
        window_w=float(rng.uniform(0.35, 0.7)), window_h=float(rng.uniform(0.4, 0.65)),
        shops=bool(rng.random() < 0.5), wall=_colour(rng, _WALLS[rng.integers(len(_WALLS))], 0.12),
        glass=_colour(rng, np.array([60.0, 72.0, 90.0]), 0.25), light=light * float(rng.uniform(0.9, 1.1)))


def sample_scene(rng: np.random.Generator) -> Scene:
    """Draw a random street layout and its appearance parameters (independent of the image size)."""
    horizon, camera_height, focal = rng.uniform(0.4, 0.56), rng.uniform(2.0, 4.5), rng.uniform(0.8, 1.1)
    k = (1.0 - horizon) / camera_height
    centre = float(rng.uniform(0.38, 0.62))
    view = View(horizon=float(horizon), centre=centre, k=float(k), z0=float(focal / k))
    road_left, road_right = rng.uniform(3.5, 9.0), rng.uniform(2.0, 6.0)
    walk_left, walk_right = rng.uniform(1.5, 4.5), rng.uniform(1.5, 4.5)
    sunny = rng.random() < 0.6
    direct = rng.uniform(0.25, 0.45) if sunny else 0.05
    sun_left = rng.random() < 0.5  # the sun lights the facade on the other side of the street
    end = float(rng.uniform(70, 220))
    buildings: list[Building] = []
    objects: list[tuple[str, float, float, np.ndarray]] = []
    for side in (-1, 1):
        plane = -(road_left + walk_left) if side < 0 else road_right + walk_right
        light = 0.8 + (direct if (side > 0) == sun_left else -0.5 * direct)
        depth = view.z0 * 0.5
        while depth < end:
            length = rng.uniform(8, 35)
            if rng.random() < 0.12:  # a gap in the row: a hedge and trees behind the sidewalk
                objects.append(("hedge", plane, depth, np.array([length, rng.uniform(0.8, 2.0)])))
                for tree_depth in rng.uniform(depth, depth + length, rng.integers(1, 3)):
                    behind = plane + side * rng.uniform(1, 4)
                    objects.append(("tree", behind, tree_depth, _tree_parameters(rng)))
            else:
                buildings.append(_building(rng, side, plane, depth, depth + length, light))
            depth += length
    lateral = -(road_left + walk_left) - 10
    while lateral < road_right + walk_right + 10:
        width = rng.uniform(8, 30)
        buildings.append(_building(rng, 0, end, lateral, lateral + width, 0.8 + 0.2 * direct))
        lateral += width
    _add_street_objects(rng, objects, road_left, road_right, walk_left, walk_right, end, view.z0)
    overcast = np.array([185.0, 190.0, 198.0]) * rng.uniform(0.8, 1.1)
    zenith = np.array([60.0, 115.0, 200.0]) * rng.uniform(0.85, 1.15, 3) if sunny else overcast * 0.85
    horizon_colour = np.array([190.0, 210.0, 232.0]) * rng.uniform(0.9, 1.05, 3) if sunny else overcast
    if rng.random() < 0.2:  # evening light
        horizon_colour = np.array([240.0, 185.0, 140.0]) * rng.uniform(0.9, 1.05, 3)
    grey = rng.uniform(55, 105)
    return Scene(
        view=view, road_left=float(road_left), road_right=float(road_right), walk_left=float(walk_left),
        walk_right=float(walk_right), buildings=buildings, objects=objects,
        shade_left=float(rng.uniform(0, road_left + walk_left) * (1 if sun_left else -1)) if sunny else 0.0,
        sky_zenith=zenith.astype(np.float32), sky_horizon=horizon_colour.astype(np.float32),
        cloud_colour=np.full(3, rng.uniform(200, 245), dtype=np.float32),
        cloudiness=float(rng.uniform(0.1, 0.5) if sunny else rng.uniform(0.4, 0.8)),
        asphalt=(grey * rng.uniform(0.95, 1.05, 3)).astype(np.float32),
        paving=_colour(rng, np.array([175.0, 170.0, 160.0]), 0.12),
        paint=np.array([230.0, 230.0, 225.0] if rng.random() < 0.8 else [225.0, 190.0, 60.0], np.float32),
        lane_mark=float(rng.uniform(-road_left + 2.5, -1.0)) if road_left > 4 else 0.0,
        edge_lines=bool(rng.random() < 0.5), tile=float(rng.uniform(0.6, 1.5)),
        ground_light=float(0.85 + direct), light_gradient=rng.uniform(-0.25, 0.25, 2).astype(np.float32),
        vignette=float(rng.uniform(0.0, 0.6)), white_balance=rng.uniform(0.92, 1.08, 3).astype(np.float32),
        exposure=float(rng.uniform(0.8, 1.15)), contrast=float(rng.uniform(0.85, 1.2)),
        sensor_noise=float(rng.uniform(1.0, 5.0)))


def _tree_parameters(rng: np.random.Generator) -> np.ndarray:
    """Trunk height, crown radius, three crown colours (greens of this tree)."""
    green = np.array([55.0, 95.0, 35.0]) * rng.uniform(0.7, 1.4) * rng.uniform(0.85, 1.15, 3)
    return np.concatenate([[rng.uniform(2.0, 3.5), rng.uniform(1.4, 3.2)], green])


def _add_street_objects(rng: np.random.Generator, objects: list, road_left: float, road_right: float,
                        walk_left: float, walk_right: float, end: float, z0: float) -> None:
    near = z0 * 1.1  # z0: distance of the bottom image row
    far = max(near + 5.0, min(end - 6.0, near + 40.0))
    for _ in range(rng.integers(0, 7)):  # cars: driving in a lane or parked at the kerb
        lateral = rng.uniform(-road_left + 1.1, road_right - 1.1)
        paint = _colour(rng, _CAR_PAINTS[rng.integers(len(_CAR_PAINTS))], 0.1)
        height = rng.uniform(1.4, 1.7)
        objects.append(("car", lateral, rng.uniform(near + 2, far), np.concatenate([paint, [height]])))
    for _ in range(rng.integers(0, 9)):
        side = rng.choice([-1, 1])
        offset = rng.uniform(0.4, walk_left if side < 0 else walk_right)
        lateral = -road_left - offset if side < 0 else road_right + offset
        clothes = _CLOTHES[rng.integers(len(_CLOTHES), size=2)] * rng.uniform(0.8, 1.25)
        skin = _SKIN[rng.integers(len(_SKIN))]
        objects.append(("person", lateral, rng.uniform(near, far),
                        np.concatenate([clothes[0], clothes[1], skin, [rng.uniform(1.55, 1.9)]])))
    for _ in range(rng.integers(0, 5)):
        side = rng.choice([-1, 1])
        lateral = -road_left - 0.5 if side < 0 else road_right + 0.5
        tone = rng.choice([70.0, 110.0, 150.0]) * rng.uniform(0.9, 1.1)
        objects.append(("pole", lateral, rng.uniform(near, far), np.array([rng.uniform(5, 9), tone, side])))
    for _ in range(rng.integers(0, 6)):
        side = rng.choice([-1, 1])
        walk = walk_left if side < 0 else walk_right
        lateral = -road_left - 0.6 * walk if side < 0 else road_right + 0.6 * walk
        objects.append(("tree", lateral, rng.uniform(near + 2, end * 0.8), _tree_parameters(rng)))


class _Layers:
    """The four rasters drawn together: class ids, building instance ids, object colours, ground shadows."""

    def __init__(self, view: View, size: int) -> None:
        self.view, self.size = view, size
        self.classes = Image.new("L", (size, size), SKY)
        self.instances = Image.new("L", (size, size), 0)
        self.colours = Image.new("RGB", (size, size), (0, 0, 0))
        self.shadows = Image.new("L", (size, size), 255)
        images = (self.classes, self.instances, self.colours, self.shadows)
        self.draw = [ImageDraw.Draw(image) for image in images]

    def project(self, points: list[tuple[float, float, float]]) -> list[tuple[float, float]]:
        return [self.view.point(s, z, h, self.size) for s, z, h in points]

    def polygon(self, points: list[tuple[float, float, float]], label: int, colour=None,
                instance: int = 0) -> None:
        xy = self.project(points)
        self.draw[0].polygon(xy, fill=label)
        self.draw[1].polygon(xy, fill=instance)
        if colour is not None:
            self.draw[2].polygon(xy, fill=tuple(int(c) for c in colour))

    def box(self, lateral: tuple[float, float], depth: float, height: tuple[float, float], label: int,
            colour) -> None:
        """A rectangle facing the camera at one depth."""
        (s0, s1), (h0, h1) = lateral, height
        self.polygon([(s0, depth, h0), (s1, depth, h0), (s1, depth, h1), (s0, depth, h1)], label, colour)

    def disc(self, lateral: float, depth: float, height: float, radius: float, label: int, colour) -> None:
        x, y = self.view.point(lateral, depth, height, self.size)
        r = max(radius * self.view.k * self.view.z0 / depth * self.size, 0.5)
        box = (x - r, y - r, x + r, y + r)
        self.draw[0].ellipse(box, fill=label)
        self.draw[1].ellipse(box, fill=0)
        self.draw[2].ellipse(box, fill=tuple(int(c) for c in colour))

    def shadow(self, points: list[tuple[float, float, float]], darkness: int) -> None:
        self.draw[3].polygon(self.project(points), fill=darkness)


def draw_scene(scene: Scene, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rasterise a scene at `size`: class ids, building instance ids, object colours, ground light (0..1]."""
    layers = _Layers(scene.view, size)
    near, end = scene.view.z0 * 0.4, max(b.plane for b in scene.buildings if b.side == 0) + 1
    wide = 400.0
    layers.polygon([(-wide, near, 0), (wide, near, 0), (wide, end, 0), (-wide, end, 0)], SIDEWALK)
    layers.polygon([(-scene.road_left, near, 0), (scene.road_right, near, 0), (scene.road_right, end, 0),
                    (-scene.road_left, end, 0)], ROAD)
    if scene.shade_left:
        left_edge, right_edge = -scene.road_left - scene.walk_left, scene.road_right + scene.walk_right
        edge = left_edge if scene.shade_left > 0 else right_edge
        inner = edge + scene.shade_left
        layers.shadow([(edge, near, 0), (inner, near, 0), (inner, end, 0), (edge, end, 0)], 150)
    numbered = list(enumerate(scene.buildings, start=1))
    frontal = [(i, b) for i, b in numbered if b.side == 0]
    sides = sorted(((i, b) for i, b in numbered if b.side != 0), key=lambda item: -item[1].start)
    for instance, building in frontal + sides:
        if building.side == 0:
            corners = [(building.start, building.plane), (building.end, building.plane)]
        else:
            corners = [(building.plane, building.start), (building.plane, building.end)]
        (s0, z0), (s1, z1) = corners
        layers.polygon([(s0, z0, 0), (s1, z1, 0), (s1, z1, building.height), (s0, z0, building.height)],
                       BUILDING, None, instance)
    for kind, lateral, depth, parameters in sorted(scene.objects, key=lambda o: -o[2]):
        _DRAWERS[kind](layers, lateral, depth, parameters)
    light = np.asarray(layers.shadows, dtype=np.float32) / 255.0
    return (np.asarray(layers.classes), np.asarray(layers.instances), np.asarray(layers.colours), light)


def _car(layers: _Layers, lateral: float, depth: float, parameters: np.ndarray) -> None:
    paint, height = parameters[:3], float(parameters[3])
    s0, s1, length = lateral - 0.9, lateral + 0.9, 4.3
    layers.shadow([(s0 - 0.2, depth - 0.3, 0), (s1 + 0.2, depth - 0.3, 0), (s1 + 0.2, depth + length, 0),
                   (s0 - 0.2, depth + length, 0)], 90)
    if abs(lateral) > 0.9:  # the side facing the camera axis is visible
        side = s1 if lateral < 0 else s0
        waist = height * 0.62
        layers.polygon([(side, depth, 0.25), (side, depth + length, 0.25), (side, depth + length, waist),
                        (side, depth, waist)], CAR, paint * 0.75)
        layers.polygon([(side, depth + 0.9, height * 0.62), (side, depth + 3.2, height * 0.62),
                        (side, depth + 2.9, height), (side, depth + 1.3, height)], CAR, paint * 0.35 + 15)
        for wheel in (0.7, 3.5):
            front, back = depth + wheel, depth + wheel + 0.6
            layers.polygon([(side, front, 0), (side, back, 0), (side, back, 0.55), (side, front, 0.55)],
                           CAR, (20, 20, 22))
    layers.box((s0, s0 + 0.35), depth, (0.0, 0.4), CAR, (18, 18, 20))
    layers.box((s1 - 0.35, s1), depth, (0.0, 0.4), CAR, (18, 18, 20))
    layers.box((s0, s1), depth, (0.3, height * 0.62), CAR, paint)
    layers.box((s0 + 0.2, s1 - 0.2), depth + 0.8, (height * 0.62, height), CAR, paint * 0.9)
    layers.box((s0 + 0.3, s1 - 0.3), depth + 0.75, (height * 0.66, height * 0.94), CAR, (35, 40, 48))
    layers.box((s0 + 0.1, s0 + 0.4), depth - 0.01, (height * 0.45, height * 0.55), CAR, (190, 25, 25))
    layers.box((s1 - 0.4, s1 - 0.1), depth - 0.01, (height * 0.45, height * 0.55), CAR, (190, 25, 25))
    layers.box((lateral - 0.3, lateral + 0.3), depth - 0.01, (0.3, 0.42), CAR, (225, 225, 215))


def _person(layers: _Layers, lateral: float, depth: float, parameters: np.ndarray) -> None:
    trousers, coat, skin, height = parameters[:3], parameters[3:6], parameters[6:9], float(parameters[9])
    layers.shadow([(lateral - 0.3, depth, 0), (lateral + 0.4, depth, 0), (lateral + 0.4, depth + 0.5, 0),
                   (lateral - 0.3, depth + 0.5, 0)], 120)
    layers.box((lateral - 0.2, lateral - 0.03), depth, (0.0, 0.48 * height), PERSON, trousers)
    layers.box((lateral + 0.03, lateral + 0.2), depth, (0.0, 0.48 * height), PERSON, trousers * 0.85)
    layers.box((lateral - 0.25, lateral + 0.25), depth, (0.45 * height, 0.83 * height), PERSON, coat)
    layers.disc(lateral, depth, 0.91 * height, 0.11 * height, PERSON, skin)


def _pole(layers: _Layers, lateral: float, depth: float, parameters: np.ndarray) -> None:
    height, tone, side = float(parameters[0]), float(parameters[1]), float(parameters[2])
    colour = (tone, tone, tone * 1.05)
    layers.box((lateral - 0.09, lateral + 0.09), depth, (0.0, height), POLE, colour)
    reach = -side * 1.6  # a lamp arm over the road
    layers.box((min(lateral, lateral + reach), max(lateral, lateral + reach)), depth, (height - 0.15, height),
               POLE, colour)


def _tree(layers: _Layers, lateral: float, depth: float, parameters: np.ndarray) -> None:
    trunk, radius, green = float(parameters[0]), float(parameters[1]), parameters[2:5]
    layers.box((lateral - 0.15, lateral + 0.15), depth, (0.0, trunk + radius), VEGETATION, (70, 55, 40))
    centre = trunk + radius
    for dx, dh, scale, shade in ((0, 0, 1.0, 0.85), (-0.5, -0.3, 0.7, 0.7), (0.5, -0.2, 0.75, 1.0),
                                 (0.1, 0.5, 0.65, 1.15)):
        layers.disc(lateral + dx * radius, depth, centre + dh * radius, scale * radius, VEGETATION,
                    green * shade)


def _hedge(layers: _Layers, plane: float, depth: float, parameters: np.ndarray) -> None:
    length, height = float(parameters[0]), float(parameters[1])
    layers.polygon([(plane, depth, 0), (plane, depth + length, 0), (plane, depth + length, height),
                    (plane, depth, height)], VEGETATION, (60, 90, 40))


_DRAWERS = {"car": _car, "person": _person, "pole": _pole, "tree": _tree, "hedge": _hedge}
