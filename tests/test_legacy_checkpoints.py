"""Checkpoints written before models became plug-ins (tests/fixtures/legacy, made by its make.py at commit
99cc3fa) still load, translate to the same pixels and resume training."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cyclegan.io.checkpoints import load_checkpoint
from cyclegan.training.loop import train
from cyclegan.translate import Translator

from .helpers import rewrite_checkpoint, tiny_config, tiny_dataset

LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy"


@pytest.mark.parametrize("model, directions", [("cyclegan", ["AtoB", "BtoA"]), ("pix2pix", ["AtoB"])])
def test_legacy_checkpoints_translate_to_the_same_pixels(model, directions):
    translator = Translator.load(LEGACY / f"{model}.safetensors", "cpu", engine="torch")
    assert list(translator.generators) == directions
    image = Image.open(LEGACY / "input.png").convert("RGB")
    for direction in directions:
        expected = np.asarray(Image.open(LEGACY / f"{model}_{direction}.png"))
        np.testing.assert_array_equal(np.asarray(translator(image, direction=direction)), expected)


@pytest.mark.parametrize("model", ["cyclegan", "pix2pix"])
def test_legacy_checkpoints_resume_training(tmp_path, model):
    config, state = load_checkpoint(LEGACY / f"{model}.safetensors")
    assert config.model == model and config.networks.ngf == 4
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    data = tiny_dataset(tmp_path / "data", count_a=4, count_b=4)  # the data it was trained on, in a new place

    def moved(stored):
        stored["data"]["dataroot"] = str(data)

    rewrite_checkpoint(LEGACY / f"{model}.safetensors", run / "checkpoints" / "latest.safetensors", config=moved)
    result = train(tiny_config(run, data, model=model), resume=True, overrides={"n_epochs_decay": 1},
                   show_progress=False)  # the saved config, with one more epoch
    assert (result.epochs_done, result.steps_done) == (2, 8) and set(result.last_losses)
