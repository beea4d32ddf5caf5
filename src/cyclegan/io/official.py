"""Weight files of the official implementation (junyanz/pytorch-CycleGAN-and-pix2pix): read safely, recognise, write.

The official code saves bare state dicts with `torch.save`: its pretrained zoo (`horse2zebra.pth`, ...) and its
training checkpoints (`latest_net_G_A.pth`, `<epoch>_net_D_B.pth`, ...). Our networks use the same module names, so
a state dict loads as it is once its architecture is known; the architecture is read off the tensors' names and
shapes. Files are only ever opened by `io/pth.py` (`torch.load(weights_only=True)`: pickles that carry code
are refused).

Official names -> ours: G_A = gen_ab (G: A->B), G_B = gen_ba (F), D_A = disc_b (judges B), D_B = disc_a.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..config import DISCRIMINATORS, GENERATORS, NORMS
from ..model_registry import model_entry, model_names
from ..nets.discriminators import build_discriminator
from ..nets.generators import build_generator
from .atomic import atomic_path, write_failure
from .checkpoints import CheckpointError
from .pth import read_state_dict

# Our network -> the official CycleGAN checkpoint name suffix (net_<suffix>.pth); each model's are in its entry.
OFFICIAL_NAMES = model_entry("cyclegan").official_names
_STAT_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class GeneratorSpec:
    arch: str
    in_channels: int
    out_channels: int
    ngf: int
    norm: str
    dropout: bool = False

    def build(self) -> nn.Module:
        return build_generator(self.arch, self.in_channels, self.out_channels, self.ngf, self.norm, self.dropout)


@dataclass(frozen=True)
class DiscriminatorSpec:
    arch: str
    in_channels: int
    ndf: int
    n_layers: int
    norm: str

    def build(self) -> nn.Module:
        return build_discriminator(self.arch, self.in_channels, self.ndf, self.n_layers, self.norm)


def _norm_of(state: dict[str, torch.Tensor], conv_key: str, norm_key: str) -> str:
    """Batch norm has an affine scale after the conv; instance norm (affine=False) leaves the conv its bias."""
    if norm_key + ".weight" in state:
        return "batch"
    return "instance" if conv_key + ".bias" in state else "none"


def _conv_weights(state: dict[str, torch.Tensor]) -> list[str]:
    return [key for key, value in state.items() if key.endswith(".weight") and value.dim() == 4]


def infer_generator(state: dict[str, torch.Tensor]) -> GeneratorSpec:
    """Recognise an official generator (ResNet or U-Net) from its state dict: blocks, depth, width, norm."""
    blocks = {int(m.group(1)) for key in state if (m := re.match(r"model\.(\d+)\.conv_block\.", key))}
    if blocks and "model.1.weight" in state:
        first = state["model.1.weight"]
        last = state[_conv_weights(state)[-1]]
        arch = f"resnet_{len(blocks)}blocks"
        if arch not in GENERATORS:
            raise CheckpointError(f"a ResNet generator with {len(blocks)} residual blocks; supported: 6 and 9")
        block = min(blocks)
        dropout = f"model.{block}.conv_block.6.weight" in state  # Dropout shifts the second conv by one
        return GeneratorSpec(arch, first.shape[1], last.shape[0], first.shape[0],
                             _norm_of(state, "model.1", "model.2"), dropout)
    if "model.model.0.weight" in state:
        first = state["model.model.0.weight"]
        n_downs = len(_conv_weights(state)) // 2  # one conv and one transposed conv per level
        arch = {7: "unet_128", 8: "unet_256"}.get(n_downs)
        if arch is None:
            raise CheckpointError(f"a U-Net generator with {n_downs} levels; supported: 7 (unet_128), 8 (unet_256)")
        out_channels = state["model.model.3.weight"].shape[1]  # outermost transposed conv: (in, out, k, k)
        return GeneratorSpec(arch, first.shape[1], out_channels, first.shape[0],
                             _norm_of(state, "model.model.0", "model.model.1.model.2"))
    raise CheckpointError("the weights are not a generator of the official code; known generators: "
                          f"{', '.join(GENERATORS)}")


def infer_discriminator(state: dict[str, torch.Tensor]) -> DiscriminatorSpec:
    """Recognise an official discriminator (PatchGAN with n layers, or the 1x1 pixel one)."""
    if "net.0.weight" in state:
        first = state["net.0.weight"]
        return DiscriminatorSpec("pixel", first.shape[1], first.shape[0], 3, _norm_of(state, "net.2", "net.3"))
    if "model.0.weight" in state and not any(".conv_block." in key for key in state):
        first = state["model.0.weight"]
        n_layers = len(_conv_weights(state)) - 2
        return DiscriminatorSpec("basic" if n_layers == 3 else "n_layers", first.shape[1], first.shape[0], n_layers,
                                 _norm_of(state, "model.2", "model.3"))
    raise CheckpointError("the weights are not a discriminator of the official code; known discriminators: "
                          f"{', '.join(DISCRIMINATORS)}")


def load_into(net: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> nn.Module:
    """Load `state` strictly, after dropping instance-norm statistics that old checkpoints carry (as the official
    code does when it loads them: PyTorch < 0.4 saved running stats for InstanceNorm)."""
    own = net.state_dict()
    state = {key: value for key, value in state.items() if key in own or not key.endswith(_STAT_SUFFIXES)}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{source}: the weights do not fit the recognised network ({error})") from None
    return net.eval()


def load_official_generator(path: str | Path, **overrides: object) -> tuple[nn.Module, GeneratorSpec]:
    """An official generator file as our network (eval mode) and the architecture it was recognised as.

    `overrides` (arch, ngf, norm, dropout, in_channels, out_channels) replace what was recognised.
    """
    state = read_state_dict(path)
    spec = dataclasses.replace(infer_generator(state), **overrides)
    if spec.norm not in NORMS:
        raise CheckpointError(f"norm={spec.norm!r}; use one of {', '.join(NORMS)}")
    return load_into(spec.build(), state, path), spec


def load_official_discriminator(path: str | Path, **overrides: object) -> tuple[nn.Module, DiscriminatorSpec]:
    state = read_state_dict(path)
    spec = dataclasses.replace(infer_discriminator(state), **overrides)
    return load_into(spec.build(), state, path), spec


def official_checkpoint_files(folder: str | Path, epoch: str = "latest") -> dict[str, Path]:
    """The official generator files in `folder` for `epoch`, keyed by our network names, as the registered models
    name them: CycleGAN's (latest_net_G_A.pth, latest_net_G_B.pth) or, if there are none, pix2pix's
    (latest_net_G.pth). Empty if the folder holds neither."""
    folder = Path(folder)
    for name in model_names():
        entry = model_entry(name)
        files = {ours: folder / f"{epoch}_net_{entry.official_names[ours]}.pth"
                 for ours, _, _ in entry.generators if ours in entry.official_names}
        found = {ours: path for ours, path in files.items() if path.is_file()}
        if found:
            return found
    return {}


def save_official(nets: dict[str, dict[str, torch.Tensor]], folder: str | Path, epoch: str = "latest",
                  names: Mapping[str, str] = OFFICIAL_NAMES) -> list[Path]:
    """Write our networks' weights as the official code's checkpoint files (bare state dicts, official `names`:
    the model entry's, CycleGAN's by default), so its test.py loads them unchanged (e.g. `--model test
    --model_suffix _A` reads latest_net_G_A.pth; pix2pix's reads latest_net_G.pth)."""
    written = []
    for ours, state in nets.items():
        path = Path(folder) / f"{epoch}_net_{names[ours]}.pth"
        with atomic_path(path) as temporary:
            try:
                torch.save({key: value.detach().cpu().clone() for key, value in state.items()}, temporary)
            except RuntimeError as error:  # torch's zip writer reports a full disk as "file write failed"
                raise write_failure(path, error) from error
        written.append(path)
    return written
