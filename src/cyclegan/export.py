"""Export a model: our safe model file (generators + config), the official implementation's files, or each
generator alone as an ONNX or torch.export (.pt2) file that runs without our code (`io/exported.py`)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from .config import ConfigError
from .engines import exportable
from .io.checkpoints import CheckpointError, find_checkpoint, load_checkpoint, save_checkpoint
from .io.exported import EXPORT_FORMATS, export_generators
from .io.official import save_official
from .model_registry import model_entry
from .models import check_checkpoint_networks

FORMATS = ("safetensors", "official", *EXPORT_FORMATS)


def export_model(source: str | Path | None, out: str | Path, fmt: str = "safetensors",
                 with_discriminators: bool = True, pretrained: str | None = None,
                 base_url: str | None = None) -> list[Path]:
    """Write the model of `source` (a run folder or checkpoint; for onnx and pt2 also an official .pth file or
    checkpoint folder), or the official pretrained model `pretrained` (onnx and pt2), into folder `out`.

    safetensors: `model.safetensors`, both generators and the config (no optimiser or training state), the file to
    share for translation. official: `latest_net_G_A.pth`, `latest_net_G_B.pth` (and `latest_net_D_A.pth`,
    `latest_net_D_B.pth`; pix2pix: `latest_net_G.pth`, `latest_net_D.pth`, the names of the model's registry
    entry) with the official key names, which the official test.py loads unchanged. onnx / pt2:
    `gen_ab.<fmt>` (and `gen_ba.<fmt>`), one generator each with dynamic batch and sides and its metadata.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r}; use one of {', '.join(FORMATS)}")
    if (source is None) == (pretrained is None):
        raise ConfigError("give either a model (run folder, checkpoint or official weights) or --pretrained NAME")
    out = Path(out)
    blocking = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise ConfigError(f"{blocking} is a file, not a folder: export writes its files into the folder {out}; "
                          "give a new or existing folder as --out")
    if fmt in EXPORT_FORMATS:
        return _export_graphs(source, out, fmt, pretrained, base_url)
    if pretrained is not None:
        raise ConfigError(f"--pretrained models export as {' or '.join(EXPORT_FORMATS)}, not {fmt}")
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
    names = model_entry(config.model).official_names
    unnamed = sorted(set(nets) - set(names))
    if unnamed:
        raise ConfigError(f"model {config.model!r} has no official file name for {', '.join(unnamed)}; "
                          "export it as safetensors instead")
    return save_official(nets, out, names=names)


def _export_graphs(source: str | Path | None, out: Path, fmt: str, pretrained: str | None,
                   base_url: str | None) -> list[Path]:
    from .translate import Translator  # every model the Translator loads exports

    if pretrained is not None:
        translator = Translator.from_pretrained(pretrained, base_url, device="cpu")
    else:
        if Path(source).suffix == ".onnx":
            raise ConfigError(f"{source} is already an exported ONNX file; export from the model it came from (a run "
                              "folder, checkpoint or official weights)")
        translator = Translator.load(source, device="cpu")
    generators = translator.generators
    if not all(isinstance(net, nn.Module) for net in generators.values()):
        raise CheckpointError(f"{source}: not a PyTorch model")
    fixed = [net for net in generators.values() if not exportable(net)]
    if fixed:
        raise ConfigError(f"{source}: this model's generators ({type(fixed[0]).__name__}) are an optimisation per "
                          f"image, not one network, so {fmt} cannot hold them; export it as safetensors (--format "
                          "safetensors) and translate it with cyclegan")
    return export_generators(generators, translator.config, out, fmt)
