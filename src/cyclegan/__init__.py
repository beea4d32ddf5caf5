"""cyclegan: paper-faithful CycleGAN (Zhu, Park, Isola, Efros, ICCV 2017).

    import cyclegan
    translator = cyclegan.load("runs/my_run")          # a run folder or checkpoint; no flags to repeat
    photo = translator(label_image)                     # PIL in, PIL out (direction="BtoA" for F)

    config = cyclegan.Config().replace(train=cyclegan.TrainConfig(run_dir="runs/x", n_epochs=5, n_epochs_decay=5))
    cyclegan.train(config)

The names are imported on first use (PEP 562), so that `import cyclegan.cli.entry` does not load PyTorch: the
command line sets OpenMP's defaults first (`cli/openmp.py`), which must happen before PyTorch starts.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "Config": "config", "ConfigError": "config", "DataConfig": "config", "NetworksConfig": "config",
    "TrainConfig": "config", "apply_overrides": "config", "load_config_file": "config_files",
    "CycleGANOptions": "models.cyclegan", "Pix2PixOptions": "models.pix2pix",
    "StopRequest": "training.loop", "TrainResult": "training.loop", "train": "training.loop",
    "Translator": "translate", "load": "translate",
}

__all__ = sorted(_PUBLIC)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'cyclegan' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
