"""The onnxruntime engine: `cyclegan translate MODEL.onnx` and `--engine onnxruntime` (exported on the fly into a
checked cache) equal the torch engine; bad .onnx files and a missing onnxruntime get clear errors; the README's
onnxruntime-only snippet runs and gives our output."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

import cyclegan
from cyclegan.cli.main import main
from cyclegan.config import Config, ConfigError, NetworksConfig, apply_overrides
from cyclegan.engines import ExportingEngine, OnnxRuntimeEngine, choose_engine
from cyclegan.io import exported
from cyclegan.io.checkpoints import save_checkpoint
from cyclegan.models import build_generators
from cyclegan.translate import TranslationError, Translator

from .helpers import with_random_statistics
from .test_export import TOLERANCE

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A CycleGAN model file (ResNet-6, batch norm with random statistics, 3 -> 1 channels) and its ONNX export."""
    root = tmp_path_factory.mktemp("engines")
    config = apply_overrides(Config(), {"gen_arch": "resnet_6blocks", "ngf": 8, "norm": "batch", "channels_b": 1,
                                        "lambda_identity": 0.0})
    nets = {name: with_random_statistics(net, seed) for seed, (name, net) in
            enumerate(build_generators(config.model, config.networks).items())}
    path = save_checkpoint(root / "model.safetensors", config,
                           {"nets": {name: net.state_dict() for name, net in nets.items()}})
    assert main(["export", str(path), "--format", "onnx", "--out", str(root / "onnx")]) == 0
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for index, (height, width) in enumerate(((30, 41), (16, 16))):  # padded to 32 x 44; a square multiple
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(photos / f"rgb{index}.png")
        Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8)).save(photos / f"gray{index}.png")
    return {"path": path, "config": config, "nets": nets, "onnx": root / "onnx", "photos": photos}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CYCLEGAN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


def _translate(model_path, inputs, out, *options):
    return main(["translate", str(model_path), *map(str, inputs), "--out", str(out), "--quiet", "--device", "cpu",
                 *options])


def _pixels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p), dtype=np.int16) for p in sorted(folder.glob("*.png"))}


def _within_one_step(got: dict, want: dict) -> None:
    """The same images within one 8-bit step: the engines' float results differ by ~1e-6, which moves a value
    across a rounding boundary at most."""
    assert got.keys() == want.keys() and got
    for name in want:
        assert got[name].shape == want[name].shape and np.abs(got[name] - want[name]).max() <= 1, name


def test_the_export_of_a_model_has_both_directions_with_their_metadata(model):
    assert sorted(p.name for p in model["onnx"].iterdir()) == ["gen_ab.onnx", "gen_ba.onnx"]
    for name, direction, channels in (("gen_ab", "AtoB", ("3", "1")), ("gen_ba", "BtoA", ("1", "3"))):
        stored = onnx.load(str(model["onnx"] / f"{name}.onnx"))
        metadata = {prop.key: prop.value for prop in stored.metadata_props}
        assert (metadata["direction"], metadata["channels_in"], metadata["channels_out"]) == (direction, *channels)
        assert NetworksConfig(**json.loads(metadata["config"])) == model["config"].networks
        engine = OnnxRuntimeEngine(model["onnx"] / f"{name}.onnx")
        x = torch.rand(2, int(channels[0]), 20, 28) * 2 - 1
        with torch.no_grad():
            assert (engine(x) - model["nets"][name](x)).abs().max() <= TOLERANCE


@pytest.mark.slow
def test_translating_with_an_onnx_file_equals_translating_with_the_model(model, tmp_path):
    photos = sorted(model["photos"].glob("rgb*.png"))
    for name, direction, inputs in (("gen_ab", "AtoB", photos), ("gen_ba", "BtoA", photos)):
        assert _translate(model["onnx"] / f"{name}.onnx", inputs, tmp_path / name, "--direction", direction) == 0
        assert _translate(model["path"], inputs, tmp_path / f"{name}-torch", "--direction", direction) == 0
        _within_one_step(_pixels(tmp_path / name), _pixels(tmp_path / f"{name}-torch"))
    # gen_ba takes one channel: the RGB inputs were converted for it, as the torch engine converts them.
    assert Image.open(tmp_path / "gen_ba" / "rgb0.png").mode == "RGB"


@pytest.mark.slow
def test_engine_onnxruntime_exports_once_into_a_checked_cache(model, tmp_path, cache, monkeypatch):
    inputs = sorted(model["photos"].glob("rgb*.png"))
    assert _translate(model["path"], inputs, tmp_path / "torch") == 0
    assert _translate(model["path"], inputs, tmp_path / "first", "--engine", "onnxruntime") == 0
    _within_one_step(_pixels(tmp_path / "first"), _pixels(tmp_path / "torch"))
    (cached,) = cache.glob("*.onnx")  # AtoB only: the direction not asked for is never exported
    assert sorted(p.name for p in cache.iterdir()) == [cached.name, cached.name + ".sha256"]
    stamp, good = cached.stat().st_mtime_ns, cached.read_bytes()

    def refuse(*args):
        raise AssertionError("exported again although the cache holds the file")

    monkeypatch.setattr(exported, "write_onnx", refuse)
    assert _translate(model["path"], inputs, tmp_path / "second", "--engine", "onnxruntime") == 0
    assert cached.stat().st_mtime_ns == stamp
    _within_one_step(_pixels(tmp_path / "second"), _pixels(tmp_path / "torch"))

    # A damaged file is not used as it is: one flipped byte (which onnxruntime might still load) means a new export.
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0xFF
    cached.write_bytes(bytes(damaged))
    rebuilt = []

    def rebuild(net, path, metadata, optimize):  # stands in for the export (tested above) to keep the test short
        rebuilt.append(path)
        Path(path).write_bytes(good)
        return Path(path)

    monkeypatch.setattr(exported, "write_onnx", rebuild)
    assert _translate(model["path"], inputs, tmp_path / "third", "--engine", "onnxruntime") == 0
    assert rebuilt == [cached] and cached.read_bytes() == good
    _within_one_step(_pixels(tmp_path / "third"), _pixels(tmp_path / "torch"))

    # The Python API takes the same choice, and uses the same cache.
    monkeypatch.setattr(exported, "write_onnx", refuse)
    ours = cyclegan.load(model["path"], device="cpu", engine="onnxruntime")
    assert ours.engine == "onnxruntime" and isinstance(ours.generators["AtoB"], ExportingEngine)
    monkeypatch.setenv("CYCLEGAN_ENGINE", "onnxruntime")  # what `auto` is on an AVX-512 CPU
    assert cyclegan.load(model["path"], device="cpu").engine == "onnxruntime"  # the default is auto
    reference = Translator.load(model["path"], device="cpu", engine="torch").set_fast_convolutions(False)
    x = torch.rand(2, 3, 30, 41) * 2 - 1
    assert (ours(x) - reference(x)).abs().max() <= TOLERANCE


def test_engine_choices_are_checked(monkeypatch):
    with pytest.raises(ConfigError, match="engine='tensorrt'; use one of torch, onnxruntime, auto"):
        choose_engine("tensorrt", "cpu")
    assert choose_engine("onnxruntime", "auto") == ("onnxruntime", torch.device("cpu"))
    monkeypatch.setattr("cyclegan.engines.select_device", lambda name: torch.device("cuda"))
    with pytest.raises(ConfigError, match="runs on the CPU, not on cuda; use --device cpu"):
        choose_engine("onnxruntime", "cuda")
    assert choose_engine("auto", "cuda") == ("torch", torch.device("cuda"))


def test_auto_picks_onnxruntime_on_avx512_cpus_and_follows_the_variable(monkeypatch):
    monkeypatch.delenv("CYCLEGAN_ENGINE")
    monkeypatch.setattr("cyclegan.engines.wide_vectors", lambda: True)
    assert choose_engine("auto", "cpu") == ("onnxruntime", torch.device("cpu"))
    assert choose_engine("auto", "auto")[0] == ("torch" if torch.cuda.is_available() else "onnxruntime")
    monkeypatch.setattr("cyclegan.engines.wide_vectors", lambda: False)  # AVX2: NNPACK's torch engine
    assert choose_engine("auto", "cpu") == ("torch", torch.device("cpu"))
    monkeypatch.setenv("CYCLEGAN_ENGINE", "onnxruntime")
    assert choose_engine("auto", "cpu") == ("onnxruntime", torch.device("cpu"))
    assert choose_engine("torch", "cpu") == ("torch", torch.device("cpu"))  # a named engine is not overridden
    monkeypatch.setenv("CYCLEGAN_ENGINE", "tensorrt")
    with pytest.raises(ConfigError, match=r"\$CYCLEGAN_ENGINE='tensorrt'; set it to torch or onnxruntime"):
        choose_engine("auto", "cpu")


def _rewrite_metadata(source: Path, target: Path, edit) -> Path:
    stored = onnx.load(str(source))
    metadata = {prop.key: prop.value for prop in stored.metadata_props}
    edit(metadata)
    del stored.metadata_props[:]
    onnx.helper.set_model_props(stored, metadata)
    onnx.save(stored, str(target))
    return target


def test_bad_onnx_files_and_directions_are_refused_clearly(model, tmp_path, capsys):
    photo = model["photos"] / "rgb1.png"
    (tmp_path / "text.onnx").write_text("not a model")
    stripped = _rewrite_metadata(model["onnx"] / "gen_ab.onnx", tmp_path / "plain.onnx",
                                 lambda meta: [meta.pop(key) for key in ("direction", "size_multiple")])
    sideways = _rewrite_metadata(model["onnx"] / "gen_ab.onnx", tmp_path / "sideways.onnx",
                                 lambda meta: meta.update(direction="sideways"))
    contradicting = _rewrite_metadata(model["onnx"] / "gen_ab.onnx", tmp_path / "channels.onnx",
                                      lambda meta: meta.update(channels_out="3"))
    cases = [
        (tmp_path / "text.onnx", (), "text.onnx cannot be loaded as an ONNX model"),
        (tmp_path / "missing.onnx", (), "missing.onnx cannot be loaded as an ONNX model"),
        (stripped, (), "plain.onnx lacks the metadata cyclegan needs (direction, size_multiple)"),
        (sideways, (), "direction='sideways', not AtoB or BtoA"),
        (contradicting, (), "channels (3 in, 3 out) contradict its config"),
        (model["onnx"] / "gen_ab.onnx", ("--direction", "BtoA"), "no BtoA generator: it translates AtoB only"),
    ]
    for path, options, message in cases:
        assert _translate(path, [photo], tmp_path / "out", *options) == 2, message
        error = capsys.readouterr().err
        assert error.startswith("cyclegan: error:") and message in error, error
    assert not (tmp_path / "out").exists()


def test_a_missing_onnxruntime_names_the_extra(model, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import then raises ImportError
    photo = model["photos"] / "rgb1.png"
    for path, options in ((model["onnx"] / "gen_ab.onnx", ()), (model["path"], ("--engine", "onnxruntime"))):
        assert _translate(path, [photo], tmp_path / "out", *options) == 2
        assert 'needs the package onnxruntime' in (error := capsys.readouterr().err)
        assert 'pip install "cyclegan[onnx]"' in error
    assert Translator.load(model["path"], device="cpu", engine="auto").engine == "torch"


def _readme_snippet() -> str:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- onnx-snippet:start -->\s*```python\n(.*?)```\s*<!-- onnx-snippet:end -->", text,
                      re.DOTALL)
    assert block, "README.md lost its onnx-snippet markers"
    return block.group(1)


def test_the_readme_snippet_translates_without_cyclegan(model, tmp_path):
    code = _readme_snippet()
    imported = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported == {"sys", "numpy", "onnxruntime", "PIL"}
    assert len(code.strip().splitlines()) <= 15
    (tmp_path / "snippet.py").write_text(code)
    for name, photo in (("gen_ab", "rgb0.png"), ("gen_ba", "gray0.png")):
        (tmp_path / name).mkdir()
        subprocess.run([sys.executable, "-I", str(tmp_path / "snippet.py"), str(model["onnx"] / f"{name}.onnx"),
                        str(model["photos"] / photo), str(tmp_path / name / photo)], check=True, timeout=120)
        direction = "AtoB" if name == "gen_ab" else "BtoA"
        assert _translate(model["path"], [model["photos"] / photo], tmp_path / f"{name}-ours", "--direction",
                          direction, "--exact-convolutions") == 0
        _within_one_step(_pixels(tmp_path / name), _pixels(tmp_path / f"{name}-ours"))


def test_the_readme_names_the_opset_of_the_exported_files(model):
    opset = next(entry.version for entry in onnx.load(str(model["onnx"] / "gen_ab.onnx")).opset_import
                 if entry.domain in ("", "ai.onnx"))
    section = README.read_text(encoding="utf-8").split("## Export and deployment", 1)[1].split("\n## ", 1)[0]
    assert f"ONNX opset {opset}" in section


def test_large_images_tile_with_the_torch_network_behind_the_onnxruntime_engine(model):
    """Tiling runs the PyTorch network stage by stage whatever the engine; an .onnx file has no such network, so
    forced tiling is refused with the reason, and without `tile` it translates whole."""
    image = torch.rand(3, 44, 36) * 2 - 1
    on_ort = Translator.load(model["path"], device="cpu", engine="onnxruntime")
    whole = Translator.load(model["path"], device="cpu")(image)
    tiled = on_ort(image, tile=8)
    assert tiled.shape == whole.shape and (tiled - whole).abs().max() <= TOLERANCE
    onnx_file = Translator.load(model["onnx"] / "gen_ab.onnx", device="cpu")
    with pytest.raises(TranslationError, match="an exported .onnx file has none"):
        onnx_file(image, tile=8)
    assert onnx_file(image, max_memory=1).shape == whole.shape  # no estimate for an .onnx file: whole


def test_a_lower_precision_moves_the_default_engine_to_torch(model, monkeypatch):
    monkeypatch.setenv("CYCLEGAN_ENGINE", "onnxruntime")  # `auto` as on an AVX-512 CPU
    translator = Translator.load(model["path"], device="cpu").set_precision("bf16")
    assert translator.engine == "torch" and isinstance(translator.generators["AtoB"], torch.nn.Module)
    with pytest.raises(TranslationError, match="runs float32 only: use --engine torch"):
        Translator.load(model["path"], device="cpu", engine="onnxruntime").set_precision("bf16")


def test_the_onnxruntime_engine_tiles_sooner_as_its_whole_image_takes_more(model, monkeypatch):
    from cyclegan import tiling
    from cyclegan.translate import ONNXRUNTIME_MEMORY_FACTOR

    image = torch.rand(3, 40, 48) * 2 - 1
    torch_engine = Translator.load(model["path"], device="cpu", engine="torch")
    estimate = tiling.estimate_whole_image_bytes(torch_engine.networks["AtoB"], 3, 40, 48)
    budget = int(estimate * (1 + ONNXRUNTIME_MEMORY_FACTOR) / 2)  # enough for PyTorch, not for onnxruntime
    tiled = []
    real = tiling.translate_tiled
    monkeypatch.setattr(tiling, "translate_tiled", lambda *args, **kwargs: tiled.append(1) or real(*args, **kwargs))
    torch_engine(image, max_memory=budget)
    assert tiled == []
    Translator.load(model["path"], device="cpu", engine="onnxruntime")(image, max_memory=budget)
    assert tiled == [1]


def test_exact_convolutions_move_the_default_engine_to_torch(model, tmp_path, monkeypatch):
    monkeypatch.setenv("CYCLEGAN_ENGINE", "onnxruntime")  # `auto` as on an AVX-512 CPU
    made = []
    real = Translator.load.__func__
    monkeypatch.setattr(Translator, "load", classmethod(lambda cls, *a, **k: made.append(a) or real(cls, *a, **k)))
    photo = model["photos"] / "rgb1.png"
    assert _translate(model["path"], [photo], tmp_path / "exact", "--exact-convolutions") == 0
    assert _translate(model["path"], [photo], tmp_path / "auto") == 0
    assert [arguments[-1] for arguments in made] == ["torch", "auto"]
