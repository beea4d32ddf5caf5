"""Exact tiled translation (cyclegan.tiling): equality with whole-image translation, peak memory and time.

    python benchmarks/tiled_translation.py                                  # the issue's cases (the 8192 one: long)
    python benchmarks/tiled_translation.py --equality-sizes 256 --whole-sizes 512 --time-size 512 \
        --large 1024 --large-max-memory 300MB                               # a smoke run of every kind of case

Cases, each in a fresh process (its peak resident memory, VmHWM, is its own):
- equality: ResNet-9 with instance norm, random weights (ngf 64, the paper's initialisation) and the official
  fixture's weights (ngf 16: no trained ResNet-9 file exists offline), whole image vs tiled through the Translator
  on a smooth S x S image: max abs difference on the [-1, 1] scale and how many 8-bit values differ;
- whole: whole-image translation's peak RSS and time at each size (skipped, with the reason, where the estimate
  exceeds the memory this machine has available now);
- tiled: the same image tiled with --max-memory at the time size, side by side with whole (time ratio);
- large: `cyclegan translate --max-memory M` on a --large x --large PNG as a whole process (peak from wait4).
Convolutions are the Translator's default (NNPACK) unless --exact-convolutions. Writes
benchmarks/results/tiled_translation.json (or --out) and prints a table. The machine may be shared with other
work: timings are noisy, the load average is recorded with each result.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import common

SCRIPT = Path(__file__).resolve()
OFFICIAL = SCRIPT.parents[2] / "shared" / "fixtures" / "official" / "G_resnet9_in_ngf16.pth"
TARGET_MAX_ABS = 1e-4
TARGET_LARGE_PEAK_GIB = 3.0
TARGET_TIME_RATIO = 1.5


def smooth_image(size: int, seed: int = 0) -> Any:
    """Low-resolution noise scaled up: decodes and translates like a photo rather than like noise."""
    import numpy as np
    from PIL import Image

    small = np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((size, size), Image.BICUBIC)


def translator_for(spec: dict[str, Any]) -> Any:
    import torch

    from cyclegan.config import Config, apply_overrides
    from cyclegan.translate import Translator

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    # Tiling runs PyTorch, so whole-image translation is PyTorch's too (the comparison is of tiling alone), unless
    # a whole-image case names another engine (--whole-engine: its peak memory).
    engine = spec.get("engine", "torch") if spec["kind"] == "whole" else "torch"
    if spec.get("weights") == "official":
        translator = Translator.load(OFFICIAL, device="cpu", engine=engine)
    else:
        config = apply_overrides(Config(), {"gen_arch": "resnet_9blocks", "ngf": spec["ngf"]})
        translator = Translator.from_config(config, device="cpu", engine=engine)
    return translator.set_fast_convolutions(not spec["exact"])


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """In the child: one case."""
    import time

    import numpy as np

    from cyclegan.io.images import image_to_tensor, tensor_to_array
    from cyclegan.tiling import estimate_whole_image_bytes

    translator = translator_for(spec)
    image = smooth_image(spec["size"])
    rss_before = common.current_rss_bytes()
    result: dict[str, Any] = {"spec": spec, "rss_before_bytes": rss_before}
    if spec["kind"] == "equality":
        tensor = image_to_tensor(image)
        whole = translator(tensor)
        budget = estimate_whole_image_bytes(translator.networks["AtoB"], 3, spec["size"], spec["size"]) // 4
        tiled = translator.translate_tiled(tensor, max_memory=budget)
        result["max_abs_difference"] = (tiled - whole).abs().max().item()
        tiled_8bit, whole_8bit = tensor_to_array(tiled), tensor_to_array(whole)
        differing = tiled_8bit != whole_8bit
        result["differing_8bit_values"] = int(np.count_nonzero(differing))
        # Rounding ties: values that differ by one step because the float result sits at a .5 boundary of the
        # 8-bit scale (how far from it, at most, in steps; tiny means a tie).
        scaled = ((whole.clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).numpy().reshape(differing.shape)
        result["max_8bit_steps_apart"] = int(np.abs(tiled_8bit.astype(int) - whole_8bit.astype(int)).max())
        result["differing_max_distance_from_a_half_step"] = (
            float(np.abs(scaled[differing] % 1 - 0.5).max()) if differing.any() else 0.0)
        result["values"] = whole.numel()
        result["tiled_max_memory"] = budget
        return result
    start = time.perf_counter()
    if spec["kind"] == "whole":
        translator(image)
    else:
        translator.translate_tiled(image, max_memory=spec["max_memory"])
    result["seconds"] = time.perf_counter() - start
    result["estimate_bytes"] = estimate_whole_image_bytes(translator.networks["AtoB"], 3, spec["size"],
                                                          spec["size"])
    return result


def available_bytes() -> int | None:
    return common.proc_kib_field("/proc/meminfo", "MemAvailable")


def whole_case(base: dict[str, Any], size: int) -> dict[str, Any]:
    """Whole-image translation at `size`, unless its estimated peak would not fit in the memory free now."""
    sys.path.insert(0, str(SCRIPT.parents[1] / "src"))
    from cyclegan.nets.generators import build_generator
    from cyclegan.tiling import estimate_whole_image_bytes

    estimate = estimate_whole_image_bytes(build_generator("resnet_9blocks", 3, 3, base["ngf"], "instance", False),
                                          3, size, size)
    available = available_bytes()
    spec = {**base, "kind": "whole", "size": size}
    if available is not None and estimate > 0.8 * available:
        return {"spec": spec, "skipped": f"estimated {estimate / common.GIB:.1f} GiB > 80% of the "
                                         f"{available / common.GIB:.1f} GiB available", "estimate_bytes": estimate}
    return common.run_child(SCRIPT, spec)


def large_case(base: dict[str, Any], size: int, max_memory: str, root: Path) -> dict[str, Any]:
    """`cyclegan translate --max-memory` on a size x size PNG, as a whole process."""
    import torch

    from cyclegan.config import Config, apply_overrides
    from cyclegan.generators import build_generators
    from cyclegan.io.checkpoints import save_checkpoint

    torch.manual_seed(0)
    config = apply_overrides(Config(), {"gen_arch": "resnet_9blocks", "ngf": base["ngf"]})
    nets = {name: net.state_dict() for name, net in build_generators(config.model, config.networks).items()}
    model = save_checkpoint(root / "model.safetensors", config, {"nets": nets})
    photo = root / "inputs" / f"photo_{size}.png"
    photo.parent.mkdir()
    smooth_image(size, seed=size).save(photo)
    command = [sys.executable, "-m", "cyclegan", "translate", str(model), str(photo.parent), "--out",
               str(root / "out"), "--quiet", "--device", "cpu", "--max-memory", max_memory,
               "--scratch-dir", str(root), "--max-pixels", str(size * size)]
    if base["exact"]:
        command.append("--exact-convolutions")
    run = common.run_process(command, env=common.child_environment(base["threads"]), capture_stderr=True)
    if run.returncode != 0:
        raise RuntimeError(f"the CLI failed ({run.returncode}): {' '.join(command)}\n{run.stdout}{run.stderr}")
    return {"spec": {**base, "kind": "large", "size": size, "max_memory": max_memory}, "command": command,
            "seconds": run.wall_seconds, "peak_rss_bytes": run.max_rss_bytes,
            "meets_target": run.max_rss_bytes <= TARGET_LARGE_PEAK_GIB * common.GIB}


def time_cases(base: dict[str, Any], size: int, max_memory: int, repeats: int) -> list[dict[str, Any]]:
    """Whole-image and tiled translation at `size`, alternated `repeats` times (each run its own process, so both
    see the same drift of a shared machine); the ratio of their median times."""
    import statistics

    wholes, tileds = [], []
    for _ in range(repeats):
        wholes.append(whole_case(base, size))
        print(f"measuring whole and tiled translation at {size}, {len(tileds) + 1} of {repeats} ...",
              file=sys.stderr, flush=True)
        tileds.append(common.run_child(SCRIPT, {**base, "kind": "tiled", "size": size, "max_memory": max_memory}))
    whole, tiled = wholes[-1], tileds[-1]
    if "seconds" not in whole:
        return [whole, tiled]
    for case, runs in ((whole, wholes), (tiled, tileds)):
        case["seconds_each"] = [run_["seconds"] for run_ in runs]
        case["seconds"] = statistics.median(case["seconds_each"])
        case["peak_rss_bytes"] = max(run_["peak_rss_bytes"] for run_ in runs)
    tiled["time_ratio"] = tiled["seconds"] / whole["seconds"]
    tiled["meets_target"] = tiled["time_ratio"] <= TARGET_TIME_RATIO
    tiled["note"] = (f"{tiled['time_ratio']:.2f}x whole-image time, medians of {repeats} alternated runs "
                     f"(target <= {TARGET_TIME_RATIO})")
    return [whole, tiled]


def print_table(payload: dict[str, Any]) -> None:
    headers = ["case", "size", "weights", "max abs diff", "differing 8-bit values", "seconds", "peak GiB",
               "whole estimate GiB", "note"]
    rows = []
    for case in payload["cases"]:
        spec = case["spec"]
        peak = case.get("peak_rss_bytes")
        estimate = case.get("estimate_bytes")
        note = case.get("skipped") or case.get("note")
        if spec["kind"] == "tiled":
            note = f"--max-memory {spec['max_memory'] / common.GIB:.2f} GiB; {case.get('note', '')}"
        if spec["kind"] == "large":
            note = f"CLI, --max-memory {spec['max_memory']} (target <= {TARGET_LARGE_PEAK_GIB} GiB)"
        note = ("--exact-convolutions" if spec["exact"] else "fast convolutions") + (f"; {note}" if note else "")
        rows.append([spec["kind"], spec["size"], spec.get("weights", "random"), case.get("max_abs_difference"),
                     None if "differing_8bit_values" not in case
                     else f"{case['differing_8bit_values']} of {case['values']}",
                     case.get("seconds"), None if peak is None or "skipped" in case else peak / common.GIB,
                     None if estimate is None else estimate / common.GIB, note])
    print(common.describe_machine(payload["machine"]))
    print(common.format_table(headers, rows))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--equality-sizes", type=int, nargs="*", default=[1024, 2048], help="Equality cases' sides.")
    parser.add_argument("--whole-sizes", type=int, nargs="*", default=[2048, 4096],
                        help="Whole-image peak memory at these sides.")
    parser.add_argument("--time-size", type=int, default=2048, help="Tiled vs whole time at this side (0: none).")
    parser.add_argument("--time-max-memory", default="1GiB", help="The tiled time case's --max-memory.")
    parser.add_argument("--time-repeats", type=int, default=3,
                        help="Whole-image and tiled runs of the time case, alternated (medians reported).")
    parser.add_argument("--large", type=int, default=8192, help="The CLI case's side (0: none).")
    parser.add_argument("--large-max-memory", default="1.25GiB", help="The CLI case's --max-memory.")
    parser.add_argument("--whole-engine", choices=("torch", "onnxruntime"), default="torch",
                        help="The engine of the --whole-sizes cases (tiling and the time case always run torch).")
    parser.add_argument("--ngf", type=int, default=64, help="Generator width (paper: 64).")
    parser.add_argument("--exact-convolutions", action="store_true", help="oneDNN only, not NNPACK.")
    parser.add_argument("--threads", type=int, default=None, help="torch / OpenMP threads (default: torch's).")
    parser.add_argument("--out", default=str(common.RESULTS_DIR / "tiled_translation.json"), help="JSON output.")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        common.report_child_result(measure(json.loads(args.child)))
        return 0
    sys.path.insert(0, str(SCRIPT.parents[1] / "src"))
    from cyclegan.cli.translate import parse_size

    base = {"ngf": args.ngf, "exact": args.exact_convolutions, "threads": args.threads}
    cases = []

    def run(spec: dict[str, Any]) -> dict[str, Any]:
        print(f"measuring {spec} ...", file=sys.stderr, flush=True)
        cases.append(common.run_child(SCRIPT, spec))
        return cases[-1]

    for index, size in enumerate(args.equality_sizes):
        for weights in ("random", "official"):
            run({**base, "kind": "equality", "size": size, "weights": weights})
        if index == 0 and not args.exact_convolutions:  # the fast kernels' rounding vs oneDNN's, at the first size
            run({**base, "exact": True, "kind": "equality", "size": size, "weights": "random"})
    for size in args.whole_sizes:
        if size != args.time_size or args.whole_engine != "torch":
            print(f"measuring whole-image translation at {size} ...", file=sys.stderr, flush=True)
            cases.append(whole_case({**base, "engine": args.whole_engine}, size))
    if args.time_size:
        cases += time_cases(base, args.time_size, parse_size(args.time_max_memory), args.time_repeats)
    if args.large:
        print(f"measuring the CLI at {args.large} ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="cyclegan-tiled-bench-") as root:
            cases.append(large_case(base, args.large, args.large_max_memory, Path(root)))
    machine = next((case["machine"] for case in cases if "machine" in case), None) or common.machine()
    payload = {"benchmark": "tiled_translation", "machine": machine, "targets": {
        "max_abs_difference": TARGET_MAX_ABS, "large_peak_gib": TARGET_LARGE_PEAK_GIB,
        "time_ratio": TARGET_TIME_RATIO}, "cases": cases}
    print_table(payload)
    print(f"wrote {common.write_json(args.out, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
