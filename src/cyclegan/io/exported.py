"""Generators as files that run without our code: ONNX (`torch.onnx.export(..., dynamo=True)`) and torch.export's
.pt2, one file per direction, each carrying what a user needs to run it (`generator_metadata`).

The exported graph is the plain network alone: eval mode (batch norm's running statistics, no dropout), oneDNN's
convolutions (not NNPACK's, which no exporter knows), no memory-lean autograd paths. Batch, height and width stay
dynamic: sides are multiples of the generator's `size_multiple`, at least its `min_size`. Files are written
atomically. The exporters need the optional `cyclegan[onnx]` packages (onnx, onnxscript) for ONNX.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from ..config import ConfigError, NetworksConfig
from ..nets.speed import speed_up
from .atomic import atomic_path, write_failure
from .checkpoints import CheckpointError

logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("onnx", "pt2")
INSTALL_HINT = 'install them with pip install "cyclegan[onnx]"'
FILE_NAMES = {"AtoB": "gen_ab", "BtoA": "gen_ba"}
# The metadata every exported file carries (ONNX metadata_props; one .pt2 extra file per key), all strings.
METADATA_KEYS = ("direction", "channels_in", "channels_out", "size_multiple", "min_size", "value_range",
                 "input_layout", "output_layout", "config", "producer")
MAX_BATCH = 1024  # the exported graphs' bound on the batch dimension


def generator_metadata(net: nn.Module, config: NetworksConfig, direction: str) -> dict[str, str]:
    """What a user of the exported `net` (the `direction` generator of a model with `config`) needs to know."""
    from .. import __version__

    channels_a, channels_b = config.channels_a, config.channels_b
    channels_in, channels_out = (channels_a, channels_b) if direction == "AtoB" else (channels_b, channels_a)
    return {
        "direction": direction, "channels_in": str(channels_in), "channels_out": str(channels_out),
        "size_multiple": str(net.size_multiple), "min_size": str(net.min_size), "value_range": "[-1, 1]",
        "input_layout": "NCHW", "output_layout": "NCHW",
        "config": json.dumps(dataclasses.asdict(config), sort_keys=True), "producer": f"cyclegan {__version__}",
    }


def plain_network(net: nn.Module) -> nn.Module:
    """A copy of `net` as the exporters must see it: eval mode, oneDNN convolutions, no lean autograd paths."""
    plain = copy.deepcopy(net).to("cpu").eval()
    return speed_up(plain, lean=False, fast_convolutions=False)


def _dynamic_inputs(net: nn.Module, channels: int) -> tuple[torch.Tensor, dict]:
    """An example input and torch.export's dynamic shapes for it: any batch; sides k * size_multiple with
    k * size_multiple >= min_size. The example has batch 2 and sides of two multiples at least: a 1 there would be
    specialised (fixed) by torch.export."""
    from torch.export import Dim

    multiple = net.size_multiple
    least = -(-net.min_size // multiple)  # in multiples
    dims = {"x": {0: Dim("batch", min=1, max=MAX_BATCH), 2: multiple * Dim("height_steps", min=least),
                  3: multiple * Dim("width_steps", min=least)}}
    side = max(2, least) * multiple
    return torch.zeros(2, channels, side, side), dims


def _require(module: str) -> str:
    """The installed version of `module`, found without importing it (onnxscript's import alone takes seconds,
    which a cached export does not need); ConfigError naming the extra if it is missing."""
    try:
        if importlib.util.find_spec(module) is None:
            raise ImportError(f"no module named {module!r}")
        return importlib.metadata.version(module)
    except (ImportError, importlib.metadata.PackageNotFoundError, ValueError) as error:
        raise ConfigError(f"exporting to ONNX needs the packages onnx and onnxscript ({module} is missing: "
                          f"{error}); {INSTALL_HINT}") from None


def _sizes_obliviously() -> contextlib.AbstractContextManager:
    """torch.export assumes that a dynamic size is never 1 and adds a guard where the graph would differ; the
    U-Net's innermost maps are 1x1 at its smallest input (one multiple), which would then be refused. Reasoning
    about sizes "obliviously" keeps the one general graph, which is also right for 1 (the tests check min_size)."""
    try:
        from torch.fx.experimental import _config
    except ImportError:
        return contextlib.nullcontext()
    return _config.patch(backed_size_oblivious=True) if hasattr(_config, "backed_size_oblivious") else \
        contextlib.nullcontext()


@contextlib.contextmanager
def _exporting(what: str) -> Iterator[None]:
    """Export settings, and any exporter failure as a CheckpointError naming `what`."""
    try:  # the engine exports from within the Translator's inference mode, which tracing (and the copy) must leave
        with torch.inference_mode(False), torch.no_grad(), _sizes_obliviously():
            yield
    except (ConfigError, OSError):
        raise
    except Exception as error:  # the exporters fail in many ways; every one means "this network did not export"
        raise CheckpointError(f"{what} could not be exported ({type(error).__name__}: {error})") from error


def write_onnx(net: nn.Module, path: str | Path, metadata: dict[str, str], optimize: bool = True) -> Path:
    """Export `net` (see `plain_network`) to the ONNX file `path` with `metadata` as its metadata_props.

    `optimize`: onnxscript's graph optimiser (constant folding, dead code; about a third of the nodes remain), for
    any runtime; onnxruntime does the same itself when it loads the file."""
    _require("onnx")
    _require("onnxscript")
    path = Path(path)
    with _exporting(f"the {metadata['direction']} generator"):
        plain = plain_network(net)
        example, dims = _dynamic_inputs(plain, int(metadata["channels_in"]))
        program = torch.onnx.export(plain, (example,), dynamo=True, dynamic_shapes=dims, input_names=["x"],
                                    output_names=["y"], verbose=False, optimize=optimize)
        program.model.metadata_props.update(metadata)
    with atomic_path(path) as temporary:
        try:
            program.save(temporary)
        except Exception as error:  # onnx's writer reports a full disk as whatever it likes
            raise write_failure(path, error) from error
    logger.info("wrote %s", path)
    return path


def write_pt2(net: nn.Module, path: str | Path, metadata: dict[str, str]) -> Path:
    """Export `net` with torch.export to the .pt2 file `path`, each `metadata` entry as an extra file."""
    path = Path(path)
    with _exporting(f"the {metadata['direction']} generator"):
        plain = plain_network(net)
        example, dims = _dynamic_inputs(plain, int(metadata["channels_in"]))
        program = torch.export.export(plain, (example,), dynamic_shapes=dims)
    with atomic_path(path) as temporary, open(temporary, "wb") as stream:
        torch.export.save(program, stream, extra_files=metadata)
    logger.info("wrote %s", path)
    return path


def export_generators(generators: dict[str, nn.Module], config: NetworksConfig, out: str | Path, fmt: str
                      ) -> list[Path]:
    """Write each generator (by direction: AtoB, BtoA) into folder `out` as gen_ab.<fmt> / gen_ba.<fmt>."""
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"format={fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    write = write_onnx if fmt == "onnx" else write_pt2
    return [write(net, Path(out) / f"{FILE_NAMES[direction]}.{fmt}", generator_metadata(net, config, direction))
            for direction, net in generators.items()]


def read_pt2_metadata(path: str | Path) -> tuple[torch.export.ExportedProgram, dict[str, str]]:
    """A .pt2 file's program and the metadata entries it holds (missing ones are left out)."""
    extra = dict.fromkeys(METADATA_KEYS, "")
    try:
        program = torch.export.load(str(path), extra_files=extra)
    except Exception as error:  # a damaged archive fails in many ways
        raise CheckpointError(f"{path} is not a torch.export program ({type(error).__name__}: {error})") from None
    return program, {key: value for key, value in extra.items() if value}


# The cache of on-the-fly exports (`cached_onnx`): FOLDER/KEY.onnx beside FOLDER/KEY.onnx.sha256, the digest of the
# file as written, checked before the file is used: a damaged or half-copied file is rebuilt, never trusted.


def export_key(net: nn.Module, metadata: dict[str, str]) -> str:
    """A digest of everything an export depends on: the weights and buffers, the metadata (config, direction) and
    the exporting packages' versions."""
    digest = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        digest.update(name.encode())
        digest.update(str((tensor.dtype, tuple(tensor.shape))).encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    versions = {"torch": torch.__version__, "onnx": _require("onnx"), "onnxscript": _require("onnxscript")}
    digest.update(json.dumps({"metadata": metadata, "versions": versions}, sort_keys=True).encode())
    return digest.hexdigest()[:32]


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_onnx(net: nn.Module, metadata: dict[str, str], folder: Path) -> Path:
    """The ONNX export of `net` in the cache `folder`: reused when its digest checks, else (re)written."""
    _require("onnx")
    _require("onnxscript")
    path = folder / f"{export_key(net, metadata)}.onnx"
    check = path.with_name(path.name + ".sha256")
    try:
        if path.is_file() and check.read_text(encoding="ascii").strip() == _file_digest(path):
            logger.info("using the cached ONNX export %s", path)
            return path
    except (OSError, UnicodeDecodeError):
        pass
    if path.exists():
        logger.warning("the cached ONNX export %s does not match its digest; exporting again", path)
    write_onnx(net, path, metadata, optimize=False)  # for onnxruntime only, which optimises it on loading
    with atomic_path(check) as temporary:
        temporary.write_text(_file_digest(path) + "\n", encoding="ascii")
    return path
