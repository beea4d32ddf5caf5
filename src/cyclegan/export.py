"""Export a trained run: our safe model file (generators + config), or the official implementation's files."""

from __future__ import annotations

from pathlib import Path

from .io.checkpoints import find_checkpoint, load_checkpoint, save_checkpoint
from .io.official import save_official

FORMATS = ("safetensors", "official")


def export_model(source: str | Path, out: str | Path, fmt: str = "safetensors",
                 with_discriminators: bool = True) -> list[Path]:
    """Write the model of `source` (a run folder or checkpoint) into folder `out`.

    safetensors: `model.safetensors`, both generators and the config (no optimiser or training state), the file to
    share for translation. official: `latest_net_G_A.pth`, `latest_net_G_B.pth` (and `latest_net_D_A.pth`,
    `latest_net_D_B.pth`) with the official key names, which the official test.py loads unchanged.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt!r}; use one of {', '.join(FORMATS)}")
    config, state = load_checkpoint(find_checkpoint(source), prefix="nets")
    nets = state["nets"]
    if not with_discriminators or fmt == "safetensors":
        nets = {name: weights for name, weights in nets.items() if name.startswith("gen_")}
    out = Path(out)
    if fmt == "safetensors":
        return [save_checkpoint(out / "model.safetensors", config, {"nets": nets})]
    return save_official(nets, out)
