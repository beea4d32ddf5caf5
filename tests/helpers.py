"""Small builders shared by the tests: tiny image folders and tiny configs that train in a second."""

import os
from pathlib import Path

import numpy as np
from PIL import Image

from cyclegan.config import Config, apply_overrides

# shared/ (fixtures given to every developer and CI) sits beside the repository's clone.
SHARED = Path(os.environ.get("CYCLEGAN_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))


def write_images(folder: Path, count: int, size: int = 40, seed: int = 0, mode: str = "RGB") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        shape = (size, size, 3) if mode == "RGB" else (size, size)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(folder / f"{i:03d}.png")
    return folder


def tiny_dataset(root: Path, count_a: int = 4, count_b: int = 3) -> Path:
    for phase, n_a, n_b in (("train", count_a, count_b), ("test", 2, 2)):
        write_images(root / f"{phase}A", n_a, seed=1 + len(phase))
        write_images(root / f"{phase}B", n_b, seed=11 + len(phase))
    return root


def tiny_config(run_dir: Path, dataroot: Path, **overrides) -> Config:
    options = {
        "dataroot": str(dataroot), "run_dir": str(run_dir), "gen_arch": "resnet_6blocks", "ngf": 4, "ndf": 4,
        "load_size": 36, "crop_size": 32, "num_workers": 0, "n_epochs": 1, "n_epochs_decay": 2,
        "pool_size": 3, "device": "cpu", "deterministic": True, "num_samples": 2, "save_every": 2,
    }
    options.update(overrides)
    return apply_overrides(Config(), options)


def rewrite_checkpoint(source: Path, target: Path, config=None, state=None, drop_tensor=None, metadata=None) -> Path:
    """A copy of checkpoint `source` as someone might have edited it: `config(dict)` / `state(dict)` edit the stored
    JSON in place, `drop_tensor` removes one tensor, `metadata(dict)` edits the raw metadata strings."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(source), "pt") as handle:
        stored = dict(handle.metadata())
    tensors = load_file(str(source))
    for key, edit in (("config", config), ("state", state)):
        if edit is not None:
            values = json.loads(stored[key])
            edit(values)
            stored[key] = json.dumps(values)
    if metadata is not None:
        metadata(stored)
    if drop_tensor is not None:
        del tensors[drop_tensor]
    save_file(tensors, str(target), metadata=stored)
    return target


def with_random_statistics(net, seed: int = 0):
    """`net` in eval mode with random batch-norm running statistics and affine parameters, so that a test comparing
    two ways of running it fails if one uses the batch's statistics or default ones."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            channels = module.num_features
            module.running_mean.copy_(0.5 * torch.randn(channels, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(channels, generator=generator))
            module.weight.data.copy_(1 + 0.3 * torch.randn(channels, generator=generator))
            module.bias.data.copy_(0.3 * torch.randn(channels, generator=generator))
    return net.eval()
