"""Where translation time goes: a ResNet-9 generator's forward pass (batch 1, no_grad) timed per layer kind, in
plain float32 (oneDNN), with fast convolutions as translation runs them by default (`nets.convolutions.fast_kernel`:
NNPACK on AVX2 CPUs, oneDNN for inference on AVX-512 ones), with Winograd F(4x4, 3x3) for the 3x3 layers
(nets/winograd.py), and in bf16 autocast; beside the CPU's float32 peak, the achieved GFLOP/s of each
convolution kind, the residual 3x3 convolution alone (oneDNN vs Winograd F(4x4) and F(6x6)), their errors against
float64, and whole-network times and output errors at each size.

    python benchmarks/translate_profile.py
    python benchmarks/translate_profile.py --sizes 256 --repeats 9 --threads 2

Layer times come from forward hooks on every leaf module (perf_counter before and after); what no leaf module
covers (the residual additions, Python between modules) is "other". Modes run interleaved, pass after pass, and
each figure is the median over passes, so a machine shared with other work disturbs them less. Weights are
untrained (N(0, 0.02)): speed does not depend on them. Writes benchmarks/results/translate_profile.json (or --out).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import common

MODES = ("fp32", "fast", "winograd", "bf16")
KINDS = ("conv 7x7", "conv stride 2", "conv 3x3 residual", "transpose conv", "instance norm", "reflection pad",
         "relu/tanh", "other (residual add, Python)")
CONV_KINDS = KINDS[:4]


def layer_kind(module: Any) -> str | None:
    """The layer kind a leaf module's time counts under; None for containers."""
    from torch import nn

    if isinstance(module, nn.ConvTranspose2d):
        return "transpose conv"
    if isinstance(module, nn.Conv2d):
        if module.stride != (1, 1):
            return "conv stride 2"
        return "conv 3x3 residual" if module.kernel_size == (3, 3) else "conv 7x7"
    if isinstance(module, nn.InstanceNorm2d):
        return "instance norm"
    if isinstance(module, nn.ReflectionPad2d):
        return "reflection pad"
    if isinstance(module, (nn.ReLU, nn.Tanh)):
        return "relu/tanh"
    return None


def multiply_adds(module: Any, inputs: Any, output: Any) -> int:
    """Multiply-adds of a direct convolution (or transposed one) for these inputs."""
    weight = module.weight
    taps = weight.shape[2] * weight.shape[3]
    if module.__class__.__name__ == "ConvTranspose2d":
        return inputs[0].numel() * weight.shape[1] * taps
    return output.numel() * weight.shape[1] * taps


class LayerTimer:
    """Forward hooks that add each leaf module's wall time, and its convolutions' multiply-adds, to its kind."""

    def __init__(self, net: Any) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(KINDS, 0.0)
        self.macs: dict[str, int] = dict.fromkeys(KINDS, 0)
        self.handles = []
        for module in net.modules():
            kind = layer_kind(module)
            if kind is not None:
                self.handles.append(module.register_forward_pre_hook(self._start))
                self.handles.append(module.register_forward_hook(lambda m, i, o, k=kind: self._stop(m, i, o, k)))

    def _start(self, module: Any, inputs: Any) -> None:
        module._profile_start = time.perf_counter()

    def _stop(self, module: Any, inputs: Any, output: Any, kind: str) -> None:
        self.seconds[kind] += time.perf_counter() - module._profile_start
        if kind in CONV_KINDS:
            self.macs[kind] += multiply_adds(module, inputs, output)

    def reset(self) -> None:
        self.seconds = dict.fromkeys(KINDS, 0.0)
        self.macs = dict.fromkeys(KINDS, 0)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def mode_context(net: Any, mode: str) -> Any:
    import torch

    from cyclegan.nets.speed import speed_up

    speed_up(net, lean=False, fast_convolutions=mode in ("fast", "winograd"), winograd=mode == "winograd")
    if mode == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def profile_layers(net: Any, size: int, repeats: int, warmup: int) -> dict[str, Any]:
    """Per mode: median seconds of each layer kind and of the whole pass (with hooks), interleaving the modes."""
    import torch

    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size)) * 2 - 1
    timer = LayerTimer(net)
    passes: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    macs: dict[str, int] = {}
    with torch.no_grad():
        for index in range(warmup + repeats):
            for mode in MODES:
                timer.reset()
                with mode_context(net, mode):
                    start = time.perf_counter()
                    net(image)
                    total = time.perf_counter() - start
                seconds = dict(timer.seconds)
                seconds["other (residual add, Python)"] = total - sum(seconds.values())
                seconds["total"] = total
                macs = dict(timer.macs)
                if index >= warmup:
                    passes[mode].append(seconds)
    timer.remove()
    result = {}
    for mode, runs in passes.items():
        medians = {kind: statistics.median(run[kind] for run in runs) for kind in (*KINDS, "total")}
        result[mode] = {
            "seconds": medians, "total_seconds": common.summarize([run["total"] for run in runs]),
            "share": {kind: medians[kind] / medians["total"] for kind in KINDS},
            "gflops": {kind: 2 * macs[kind] / medians[kind] / 1e9 for kind in CONV_KINDS if medians[kind] > 0},
        }
    result["gmacs"] = {kind: macs[kind] / 1e9 for kind in CONV_KINDS}
    return result


def whole_network(net: Any, size: int, repeats: int, warmup: int) -> dict[str, Any]:
    """Per mode, without hooks: seconds per pass (interleaved modes) and the output's max abs difference from the
    float32 pass and from a float64 pass ([-1, 1] scale; one 8-bit step is 2/255)."""
    import copy

    import torch

    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size + 1)) * 2 - 1
    with torch.no_grad():
        truth = copy.deepcopy(net).double()(image.double())
        outputs = {}
        for mode in MODES:
            with mode_context(net, mode):
                outputs[mode] = net(image).float()
        seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
        for index in range(warmup + repeats):
            for mode in MODES:
                with mode_context(net, mode):
                    start = time.perf_counter()
                    net(image)
                    if index >= warmup:
                        seconds[mode].append(time.perf_counter() - start)
    return {mode: {"seconds": common.summarize(seconds[mode]),
                   "images_per_second": 1 / statistics.median(seconds[mode]),
                   "max_abs_vs_fp32": (outputs[mode] - outputs["fp32"]).abs().max().item(),
                   "max_abs_vs_float64": (outputs[mode].double() - truth).abs().max().item()} for mode in MODES}


def residual_convolution(side: int, repeats: int) -> dict[str, Any]:
    """The 256 -> 256 channel 3x3 convolution on side x side maps alone: oneDNN vs Winograd, interleaved; errors
    against float64 relative to the sum of |terms| (the scale every summation order's error is proportional to)."""
    import torch
    from torch.nn import functional

    from cyclegan.nets.winograd import winograd_conv2d

    generator = torch.Generator().manual_seed(side)
    maps = torch.randn(1, 256, side + 2, side + 2, generator=generator)
    weight = torch.randn(256, 256, 3, 3, generator=generator) * 0.02
    kernels = {"onednn": lambda: functional.conv2d(maps, weight),
               "winograd_f4": lambda: winograd_conv2d(maps, weight, tile=4),
               "winograd_f6": lambda: winograd_conv2d(maps, weight, tile=6)}
    truth = functional.conv2d(maps.double(), weight.double())
    scale = functional.conv2d(maps.abs().double(), weight.abs().double()).max().item()
    seconds: dict[str, list[float]] = {name: [] for name in kernels}
    with torch.no_grad():
        errors = {name: (kernel().double() - truth).abs().max().item() / scale for name, kernel in kernels.items()}
        for index in range(repeats + 2):
            for name, kernel in kernels.items():
                start = time.perf_counter()
                kernel()
                if index >= 2:
                    seconds[name].append(time.perf_counter() - start)
    flops = 2 * side * side * 256 * 256 * 9
    return {name: {"seconds": common.summarize(seconds[name]), "relative_error": errors[name],
                   "effective_gflops": flops / statistics.median(seconds[name]) / 1e9} for name in kernels}


def clock_mhz() -> float | None:
    """The clock /proc/cpuinfo reports (in a VM often the nominal one, below the boost clock the cores run at)."""
    with contextlib.suppress(OSError):
        found = re.search(r"^cpu MHz\s*:\s*([\d.]+)", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        return float(found.group(1)) if found else None
    return None


def peaks(threads: int, fma_units: int) -> dict[str, Any]:
    """The float32 peak: cores x FMA units x SIMD lanes x 2 x clock (lanes from the kernels PyTorch runs), and the
    "matrix peak" a large GEMM reaches through MKL (torch.mm) and oneDNN (its matmul, where PyTorch has it)."""
    import torch

    lanes = 16 if torch.backends.cpu.get_cpu_capability().startswith("AVX512") else 8
    clock = clock_mhz()
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    flops = 2 * 2048**3
    gemms = {"mkl_gflops": lambda: torch.mm(a, b)}
    onednn = getattr(torch.ops.mkldnn, "_linear_pointwise", None) if torch.backends.mkldnn.is_available() else None
    if onednn is not None:
        gemms["onednn_gflops"] = lambda: onednn(a, b, None, "none", [], "")
    measured = {name: flops / statistics.median(common.time_calls(gemm, 7, 2)) / 1e9 for name, gemm in gemms.items()}
    theoretical = threads * fma_units * lanes * 2 * clock / 1e3 if clock else None
    return {"cores": threads, "fma_units": fma_units, "simd_lanes_fp32": lanes, "clock_mhz": clock,
            "theoretical_gflops": theoretical, **measured}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="Image sides for whole passes.")
    parser.add_argument("--profile-size", type=int, default=256, help="Image side of the per-layer profile.")
    parser.add_argument("--ngf", type=int, default=64, help="Generator width (ResNet-9).")
    parser.add_argument("--repeats", type=int, default=7, help="Timed passes per mode (medians reported).")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed passes per mode first.")
    parser.add_argument("--conv-repeats", type=int, default=15, help="Timed calls per residual-convolution kernel.")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the cores used).")
    parser.add_argument("--fma-units", type=int, default=2, help="Vector FMA units per core, for the peak.")
    parser.add_argument("--out", type=Path, default=common.RESULTS_DIR / "translate_profile.json",
                        help="Where to write the JSON results.")
    return parser.parse_args(argv)


def print_tables(results: dict[str, Any]) -> None:
    profile = results["profile"]
    rows = [[kind, *(profile[mode]["seconds"][kind] * 1e3 for mode in MODES),
             *(100 * profile[mode]["share"][kind] for mode in MODES),
             *(profile[mode]["gflops"].get(kind) for mode in MODES)] for kind in KINDS]
    print(f"Per layer kind at {results['profile_size']} px (median ms, % of the pass, achieved GFLOP/s counting "
          f"direct convolution's FLOPs):")
    print(common.format_table(["kind", *(f"{m} ms" for m in MODES), *(f"{m} %" for m in MODES),
                               *(f"{m} GFLOP/s" for m in MODES)], rows))
    print("\nWhole passes (no hooks):")
    print(common.format_table(
        ["size", "mode", "s/image", "images/s", "x fp32", "max abs vs fp32", "max abs vs float64"],
        [[size, mode, case["seconds"]["median"], case["images_per_second"],
          case["images_per_second"] / cases["fp32"]["images_per_second"], case["max_abs_vs_fp32"],
          case["max_abs_vs_float64"]] for size, cases in results["whole"].items() for mode, case in cases.items()]))
    print("\nResidual 3x3 convolution (256 -> 256 channels) alone:")
    print(common.format_table(["maps", "kernel", "ms", "effective GFLOP/s", "error / sum|terms|"],
                              [[side, name, case["seconds"]["median"] * 1e3, case["effective_gflops"],
                                case["relative_error"]] for side, kernels in results["residual_conv"].items()
                               for name, case in kernels.items()]))
    peak = results["peak"]
    print(f"\nFP32 peak: {peak['cores']} cores x {peak['fma_units']} FMA x {peak['simd_lanes_fp32']} lanes x 2 x "
          f"{peak['clock_mhz']} MHz = {peak['theoretical_gflops']} GFLOP/s; large GEMM: MKL "
          f"{peak['mkl_gflops']:.0f}, oneDNN {peak.get('onednn_gflops', float('nan')):.0f} GFLOP/s")
    print(common.describe_machine(results["machine"]))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from cyclegan.nets.convolutions import fast_kernel
    from cyclegan.nets.generators import ResnetGenerator
    from cyclegan.nets.layers import init_weights

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = init_weights(ResnetGenerator(ngf=args.ngf)).eval()
    sample = torch.zeros(1, 4 * args.ngf, 8, 8)
    results: dict[str, Any] = {
        "benchmark": "translate_profile", "machine": common.machine(), "profile_size": args.profile_size,
        "fast_kernel": {f"{k}x{k}": fast_kernel(sample, torch.zeros(1, 4 * args.ngf, k, k), inference=True)
                        for k in (3, 7)},
        "settings": {name: value for name, value in vars(args).items() if name != "out"},
        "peak": peaks(args.threads, args.fma_units),
        "profile": profile_layers(net, args.profile_size, args.repeats, args.warmup),
        "whole": {size: whole_network(net, size, args.repeats, args.warmup) for size in args.sizes},
        "residual_conv": {size // 4: residual_convolution(size // 4, args.conv_repeats) for size in args.sizes},
    }
    results["machine_after"] = common.machine()  # the load average at the end too: a shared machine is noisy
    print_tables(results)
    common.write_json(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
