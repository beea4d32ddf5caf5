"""cyclegan: paper-faithful CycleGAN (Zhu, Park, Isola, Efros, ICCV 2017).

    import cyclegan
    translator = cyclegan.load("runs/my_run")          # a run folder or checkpoint; no flags to repeat
    photo = translator(label_image)                     # PIL in, PIL out (direction="BtoA" for F)

    config = cyclegan.Config().replace(train=cyclegan.TrainConfig(run_dir="runs/x", n_epochs=5, n_epochs_decay=5))
    cyclegan.train(config)
"""

from .config import Config, ConfigError, DataConfig, ModelConfig, TrainConfig, apply_overrides, load_config_file
from .training.loop import StopRequest, TrainResult, train
from .translate import Translator, load

__all__ = [
    "Config", "ConfigError", "DataConfig", "ModelConfig", "TrainConfig", "StopRequest", "TrainResult", "Translator",
    "apply_overrides", "load", "load_config_file", "train",
]
__version__ = "0.1.0"
