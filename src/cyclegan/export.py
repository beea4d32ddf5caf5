"""Export a trained run: our safe model file (generators + config), or the official implementation's files."""

from __future__ import annotations

from pathlib import Path

from .config import ConfigError
from .io.checkpoints import find_checkpoint, load_checkpoint, save_checkpoint
from .io.official import save_official
from .models import check_checkpoint_networks

FORMATS = ("safetensors", "official")


def export_model(source: str | Path, out: str | Path, fmt: str = "safetensors",
                 with_discriminators: bool = True) -> list[Path]:
    """Write the model of `source` (a run folder or checkpoint) into folder `out`.

    safetensors: `model.safetensors`, both generators and the config (no optimiser or training state), the file to
    share for translation. official: `latest_net_G_A.pth`, `latest_net_G_B.pth` (and `latest_net_D_A.pth`,
    `latest_net_D_B.pth`) with the official key names, which the official test.py loads unchanged.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r}; use one of {', '.join(FORMATS)}")
    out = Path(out)
    blocking = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise ConfigError(f"{blocking} is a file, not a folder: export writes its files into the folder {out}; "
                          "give a new or existing folder as --out")
    checkpoint = find_checkpoint(source)
    config, state = load_checkpoint(checkpoint, prefix="nets")
    nets = state["nets"]
    discriminators = with_discriminators and fmt == "official"
    # What is written must rebuild from its config: every generator, and the discriminators that are written.
    check_checkpoint_networks(config, nets, checkpoint,
                              lambda name: name.startswith("gen_") or (discriminators and name in nets))
    if not discriminators:
        nets = {name: weights for name, weights in nets.items() if name.startswith("gen_")}
    if fmt == "safetensors":
        return [save_checkpoint(out / "model.safetensors", config, {"nets": nets})]
    return save_official(nets, out)
