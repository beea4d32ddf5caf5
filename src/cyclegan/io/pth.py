"""The one safe reader of `.pth` files: official weights, pretrained downloads and the FID Inception weights.

`torch.save` pickles, and unpickling can run any code, so a `.pth` is only ever opened with
`torch.load(weights_only=True)`, which accepts tensors and plain containers of them and refuses everything else
before it runs. Every way a file can fail gets one message, naming the file and what to do: missing, not a
PyTorch file at all, cut off (an interrupted download or copy), or holding pickled objects that were refused.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from .checkpoints import CheckpointError

# torch.save writes a zip archive (since PyTorch 1.6) or, in its legacy format, a bare pickle.
_ZIP_SIGNATURE = b"PK\x03\x04"
_PICKLE_SIGNATURE = b"\x80"
# The parts of torch's message that advise weights_only=False, which we never do.
_TORCH_ADVICE = ("Weights only load failed", "Please file an issue", "Check the documentation", "(1)", "(2)")


def load_pth(path: str | Path) -> Any:
    """What the `.pth` file `path` holds, loaded on the CPU with weights_only=True: tensors and plain containers
    only, never code. Raises CheckpointError (a ValueError) naming the file and the fault."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is a folder, not a .pth weights file" if path.is_dir()
                              else f"{path} does not exist")
    with open(path, "rb") as stream:
        start = stream.read(len(_ZIP_SIGNATURE))
    if not start:
        raise _cut_off(path, "it is empty")
    if not start.startswith((_ZIP_SIGNATURE, _PICKLE_SIGNATURE)):
        raise CheckpointError(f"{path} is not a readable PyTorch weights file: it is neither of the two formats "
                              "torch.save writes (a zip archive or a pickle); give the .pth file as torch.save "
                              "wrote it")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # arbitrary bytes fail in arbitrary ways; every failure means "not weights"
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # torch underlines its advice with terminal codes
        if isinstance(error, pickle.UnpicklingError) and "GLOBAL" in message:
            raise _refusal(path, message) from None
        detail = _detail(error, message)
        if _is_cut_off(path, start, error, message):
            raise _cut_off(path, detail) from None
        raise CheckpointError(f"{path} is not a readable PyTorch weights file ({detail})") from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A `.pth` state dict (names -> tensors), read by `load_pth`. A dict that wraps it under "state_dict" is
    unwrapped, and DataParallel's "module." prefix is dropped."""
    state = load_pth(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        found = "an empty dict" if isinstance(state, dict) else f"a {type(state).__name__}"
        raise CheckpointError(f"{path} does not hold a state dict (a mapping of names to tensors) but {found}")
    wrong = [str(key) for key, value in state.items() if not (isinstance(key, str) and isinstance(value, torch.Tensor))]
    if wrong:
        raise CheckpointError(f"{path} does not hold a state dict (a mapping of names to tensors): entries that "
                              f"are not named tensors: {', '.join(wrong[:3])}{' ...' if len(wrong) > 3 else ''}")
    return {key.removeprefix("module."): value for key, value in state.items()}


def _detail(error: Exception, message: str) -> str:
    """The useful sentence of torch's message, without its advice to retry with weights_only=False."""
    message = message.split("WeightsUnpickler error:")[-1]
    lines = [line.strip() for line in message.splitlines()]
    useful = [line for line in lines if line and not line.startswith(_TORCH_ADVICE)]
    return (useful[0] if useful else type(error).__name__).split(". ")[0].rstrip(".")[:200]


def _is_cut_off(path: Path, start: bytes, error: Exception, message: str) -> bool:
    """A zip whose end (its central directory) is missing, or a pickle that ends early."""
    if start.startswith(_ZIP_SIGNATURE):
        return not zipfile.is_zipfile(path)
    return isinstance(error, EOFError) or "EOF" in message or "truncated" in message


def _cut_off(path: Path, detail: str) -> CheckpointError:
    return CheckpointError(f"{path} is cut off ({detail}): its end is missing, as after an interrupted download or "
                           "copy; download or copy it again")


def _refusal(path: Path, message: str) -> CheckpointError:
    """What to tell the person whose .pth the weights-only unpickler refused."""
    refused = re.search(r"GLOBAL ([\w.]+) (?:was not an allowed global|whose module)", message)
    what = f"the first that torch refused: {refused.group(1)}" if refused else "of classes torch does not allow"
    return CheckpointError(
        f"{path} was refused: besides tensors it holds pickled Python objects ({what}), and unpickling those can "
        "run any code, which makes the file unsafe to load as it is; nothing in it was run. .pth files are read "
        "with torch.load(weights_only=True), which accepts only tensors and plain containers of them. If you "
        "trust the file, save its tensors alone in a separate Python session and use that file instead: "
        f"python -c \"import torch; torch.save(torch.load({str(path)!r}, weights_only=False).state_dict(), "
        "'weights.pth')\" (for a file that holds a dict, save the dict of tensors in it, e.g. ['state_dict'], "
        "instead of .state_dict()).")
