"""Devices, seeds and random-number-generator state: the one place each is decided."""

from __future__ import annotations

import ctypes
import ctypes.util
import random
import sys
from typing import Any

import numpy as np
import torch

from .config import ConfigError


def select_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple's MPS, then the CPU; any other name is checked and used as given.

    A name that is not a device, or a device this machine lacks, raises ConfigError saying what to use instead.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for, but this PyTorch sees no CUDA GPU; use --device cpu "
                          "(or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} does not exist: {torch.cuda.device_count()} CUDA device(s) visible; "
                          f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' was asked for, but MPS is not available here; use --device cpu (or auto)")
    return device


# glibc's mallopt parameters (malloc.h) and the largest mmap threshold it accepts on 64-bit systems.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 * 1024**2


def keep_freed_memory() -> bool:
    """Let glibc's malloc reuse freed feature maps instead of returning them to the kernel. By default every
    block over a threshold (128 KiB, growing to at most 32 MiB) is a fresh mmap, whose pages the kernel must
    fault in and zero on first touch: a CPU training step allocates and frees gigabytes of maps, and the faults
    cost about 10% of a 256x256 step on our 2-core machine (benchmarks/train_step.py). Peak memory is unchanged; the
    process keeps its peak until it exits. Does nothing and returns False where malloc is not glibc's."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # musl and other libcs have no mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def configure_cudnn(device: torch.device, benchmark: bool) -> bool:
    """On CUDA, set cuDNN's autotuner (`torch.backends.cudnn.benchmark`); elsewhere leave it. Returns its value."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = benchmark
    return torch.backends.cudnn.benchmark


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices); optionally allow only deterministic algorithms."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False


def capture_rng_state() -> dict[str, Any]:
    """The state of every global random generator, to store in a checkpoint."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back what `capture_rng_state` saved (CUDA states only when CUDA is present)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"].to(torch.uint8).cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.to(torch.uint8).cpu() for s in state["cuda"]])
