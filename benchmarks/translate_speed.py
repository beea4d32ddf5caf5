"""Translation speed, accuracy and peak memory of every engine side by side, with a ResNet-9 generator (ngf 64) at
256x256 and 512x512, against the baseline the targets are ratios to:

- plain: a bare generator's eager float32 forward pass at batch 1 under `torch.no_grad()`, oneDNN's convolutions,
  on tensors made beforehand: what the official `test.py` runs per image (its decoding and saving not counted);
- exact / fast / bf16 / onnxruntime: `Translator(images)` on PIL images (conversion to and from tensors
  counted) with --exact-convolutions, the fast convolutions (`nets.convolutions.conv2d`), bfloat16 autocast, and the
  onnxruntime engine;
- CLI: `cyclegan translate MODEL FOLDER --out DIR --quiet` as a whole process (interpreter start, imports, model
  load, PNG reading and writing) on a folder of `--images` generated PNGs, with each engine's flags.

    python benchmarks/translate_speed.py
    python benchmarks/translate_speed.py --sizes 256 --images 10 --repeats 5 --threads 2

Each API case runs in a fresh process (its peak resident memory, VmHWM, is its own) and saves its outputs, which
are compared with the exact engine's: max abs difference on the [-1, 1] scale and the share of 8-bit pixels that
differ (one 8-bit step is 2/255 = 0.0078). Weights are untrained: speed does not depend on their values. Writes
benchmarks/results/translate.json (or --out) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import common

SCRIPT = Path(__file__).resolve()
ENGINES = ("plain", "exact", "fast", "bf16", "onnxruntime")
# What each engine adds to `cyclegan translate` (plain is not a CLI engine: it is the official per-image loop).
CLI_FLAGS = {"exact": ["--engine", "torch", "--exact-convolutions"], "fast": ["--engine", "torch"],
             "bf16": ["--engine", "torch", "--precision", "bf16"], "onnxruntime": ["--engine", "onnxruntime"]}
EIGHT_BIT_STEP = 2 / 255
# The target: at 256 px, at least twice the plain forward pass's images/s, within one 8-bit step.
TARGET_RATIO = {256: 2.0}


def model_config(arch: str, ngf: int) -> Any:
    from cyclegan.config import Config, apply_overrides

    return apply_overrides(Config(), {"gen_arch": arch, "ngf": ngf})


def make_images(count: int, size: int, seed: int = 0) -> list[Any]:
    """Smooth random RGB images (low-resolution noise scaled up), so PNGs decode like photos rather than noise."""
    import torch
    from PIL import Image

    generator = torch.Generator().manual_seed(seed)
    images = []
    for _ in range(count):
        small = torch.randint(0, 256, (16, 16, 3), generator=generator, dtype=torch.uint8).numpy()
        images.append(Image.fromarray(small).resize((size, size), Image.BICUBIC))
    return images


def write_model(root: Path, arch: str, ngf: int) -> Path:
    """A CycleGAN model file (both generators, seeded weights, with its config): every case loads the same one."""
    import torch

    from cyclegan.generators import build_generators
    from cyclegan.io.checkpoints import save_checkpoint

    torch.manual_seed(0)
    config = model_config(arch, ngf)
    nets = {name: net.state_dict() for name, net in build_generators(config.model, config.networks).items()}
    return save_checkpoint(root / "model.safetensors", config, {"nets": nets})


def measure_api(spec: dict[str, Any]) -> dict[str, Any]:
    """In the child: time one engine on `images` images after warm-up calls; save its outputs for comparison."""
    import numpy as np
    import torch

    from cyclegan.io.images import image_to_tensor
    from cyclegan.translate import Translator

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    rss_after_import = common.current_rss_bytes()
    engine = spec["engine"]
    translator = Translator.load(spec["model"], device="cpu",
                                 engine="onnxruntime" if engine == "onnxruntime" else "torch")
    translator.set_fast_convolutions(engine == "fast")
    if engine == "bf16":
        translator.set_precision("bf16")
    images = make_images(spec["images"], spec["size"])
    tensors = [image_to_tensor(image)[None] for image in images]
    generator = translator.networks["AtoB"]  # the bare PyTorch network, for the baseline
    if engine == "plain":  # the official test.py's loop: one eager forward pass per image, nothing else

        def run() -> Any:
            with torch.no_grad():
                return [generator(tensor) for tensor in tensors]
    else:

        def run() -> Any:
            return translator(images, batch_size=1)
    seconds = common.time_calls(run, spec["repeats"], spec["warmup"])
    with torch.no_grad():  # the float outputs, for the accuracy comparison
        outputs = torch.cat([generator(tensor) if engine == "plain" else translator(tensor) for tensor in tensors])
    np.save(spec["outputs"], outputs.numpy())
    return {"spec": spec, "engine_used": "plain PyTorch" if engine == "plain" else translator.engine,
            "seconds_per_call": common.summarize(seconds),
            "images_per_second": spec["images"] / common.summarize(seconds)["median"],
            "rss_after_import_bytes": rss_after_import}


def compare_outputs(case: dict[str, Any], reference: Any) -> None:
    """Max abs difference to the exact engine's outputs and the 8-bit pixels that differ, in place."""
    import numpy as np

    outputs = np.load(case["spec"]["outputs"]).astype(np.float64)  # both in float64: the same rounding ties
    eight_bit = [np.rint((np.clip(values, -1, 1) + 1) * 127.5) for values in (outputs, reference)]
    difference = np.abs(outputs - reference)
    case["accuracy_vs_exact"] = {
        "max_abs": float(difference.max()), "mean_abs": float(difference.mean()),
        "eight_bit_pixels_differing": float(np.mean(eight_bit[0] != eight_bit[1])),
        "max_eight_bit_steps": int(np.abs(eight_bit[0] - eight_bit[1]).max()),
        "within_one_eight_bit_step": bool(difference.max() <= EIGHT_BIT_STEP)}


def write_cli_inputs(root: Path, sizes: list[int], count: int) -> dict[int, Path]:
    """One folder of `count` PNGs per size."""
    from cyclegan.io.images import save_image

    folders = {}
    for size in sizes:
        folders[size] = root / f"inputs_{size}"
        for index, image in enumerate(make_images(count, size, seed=size)):
            save_image(image, folders[size] / f"image_{index:03d}.png")
    return folders


def measure_cli(model: Path, folder: Path, out_root: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """Whole-process runs of the CLI: one untimed (warms the OS file cache and any engine cache), then `repeats`."""
    command = [spec["cli_python"], "-m", "cyclegan", "translate", str(model), str(folder), "--quiet", "--device",
               "cpu", *CLI_FLAGS[spec["engine"]]]
    if spec["batch_size"]:
        command += ["--batch-size", str(spec["batch_size"])]
    env = common.child_environment(spec["threads"])
    env["CYCLEGAN_CACHE"] = str(out_root / "cache")  # the onnxruntime engine's exported model, made once
    runs = []
    for index in range(max(1, spec["warmup"]) + spec["repeats"]):
        out = out_root / f"run_{spec['size']}_{spec['engine']}_{index}"
        result = common.run_process(command + ["--out", str(out)], env=env, capture_stderr=True)
        if result.returncode != 0:
            raise RuntimeError(f"the CLI failed (exit code {result.returncode}): {' '.join(command)}\n"
                               f"{result.stdout}{result.stderr}")
        runs.append(result)
    timed = runs[max(1, spec["warmup"]):]
    seconds = common.summarize([run.wall_seconds for run in timed])
    torch_version = subprocess.run([spec["cli_python"], "-c", "import torch; print(torch.__version__)"],
                                   capture_output=True, text=True, check=True).stdout.strip()
    return {"spec": spec, "command": command, "cli_torch_version": torch_version, "process_seconds": seconds,
            "images_per_second": spec["images"] / seconds["median"],
            "peak_rss_bytes": max(run.max_rss_bytes for run in timed)}


def add_ratios(cases: list[dict[str, Any]], paper_model: bool) -> None:
    """Each case's images/s as a multiple of the plain forward pass at its size, and the target where one is set."""
    plain = {case["spec"]["size"]: case["images_per_second"] for case in cases
             if case["spec"]["kind"] == "api" and case["spec"]["engine"] == "plain"}
    for case in cases:
        spec = case["spec"]
        case["peak_rss_gib"] = case["peak_rss_bytes"] / common.GIB
        base = plain.get(spec["size"])
        case["ratio_to_plain"] = None if base is None else case["images_per_second"] / base
        target = TARGET_RATIO.get(spec["size"]) if paper_model and spec["engine"] != "plain" else None
        accurate = case.get("accuracy_vs_exact", {}).get("within_one_eight_bit_step")
        case["target"] = {"ratio_to_plain": target, "within_one_eight_bit_step": True} if target else None
        case["meets_target"] = (None if target is None or case["ratio_to_plain"] is None
                                else bool(case["ratio_to_plain"] >= target and accurate))


def print_table(payload: dict[str, Any]) -> None:
    headers = ["path", "size", "engine", "median s", "IQR s", "images/s", "x plain", "max abs", "8-bit px differ",
               "peak GiB", "meets 2x target"]
    rows = []
    for case in payload["cases"]:
        spec = case["spec"]
        timing = case["seconds_per_call"] if spec["kind"] == "api" else case["process_seconds"]
        accuracy = case.get("accuracy_vs_exact", {})
        path = ("official loop (forward only)" if spec["engine"] == "plain" else "Python API" if spec["kind"] == "api"
                else f"CLI, {spec['images']} images (whole process)")
        rows.append([path, spec["size"], spec["engine"], timing["median"], timing["iqr"], case["images_per_second"],
                     case["ratio_to_plain"], accuracy.get("max_abs"), accuracy.get("eight_bit_pixels_differing"),
                     case["peak_rss_gib"], case["meets_target"]])
    print(common.describe_machine(payload["machine"]))
    spec = payload["cases"][0]["spec"]
    print(f"Translation with {spec['arch']} (ngf {spec['ngf']}); medians over the timed repeats after warm-up; "
          "accuracy against the exact engine (one 8-bit step = 0.0078).")
    print(common.format_table(headers, rows))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="Image sides in pixels.")
    parser.add_argument("--images", type=int, default=10, help="Images per API call and per CLI folder.")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="CLI: images translated together (default: the CLI's own, 1 on the CPU).")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES),
                        help="Which engines to measure (plain is the baseline; exact is the accuracy reference).")
    parser.add_argument("--cli-python", default=sys.executable,
                        help="Interpreter the CLI runs under, e.g. a venv with the CPU-only torch wheel.")
    parser.add_argument("--repeats", type=int, default=5, help="Timed API calls / CLI runs per case.")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed API calls / CLI runs first.")
    parser.add_argument("--arch", default="resnet_9blocks", choices=("resnet_9blocks", "resnet_6blocks"),
                        help="Generator.")
    parser.add_argument("--ngf", type=int, default=64, help="Generator width (paper: 64; smaller for smoke runs).")
    parser.add_argument("--threads", type=int, default=None, help="torch / OpenMP threads (default: torch's).")
    parser.add_argument("--skip-cli", action="store_true", help="Measure the Python API only.")
    parser.add_argument("--skip-api", action="store_true", help="Measure the CLI only.")
    parser.add_argument("--out", default=str(common.RESULTS_DIR / "translate.json"), help="JSON output file.")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_api_cases(args: argparse.Namespace, base: dict[str, Any], root: Path) -> list[dict[str, Any]]:
    import numpy as np

    engines = [engine for engine in ENGINES if engine in args.engines or engine == "exact"]
    cases = []
    for size in args.sizes:
        for engine in engines:
            print(f"measuring the Python API at {size}px, {engine} ...", file=sys.stderr, flush=True)
            outputs = str(root / f"outputs_{size}_{engine}.npy")
            cases.append(common.run_child(SCRIPT, {**base, "kind": "api", "size": size, "engine": engine,
                                                   "outputs": outputs}))
        reference = np.load(root / f"outputs_{size}_exact.npy").astype(np.float64)
        for case in cases:
            if case["spec"]["size"] == size:
                compare_outputs(case, reference)
    return [case for case in cases if case["spec"]["engine"] in args.engines]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        common.report_child_result(measure_api(json.loads(args.child)))
        return 0
    with tempfile.TemporaryDirectory(prefix="cyclegan-translate-bench-") as folder:
        root = Path(folder)
        model = write_model(root, args.arch, args.ngf)
        base = {"arch": args.arch, "ngf": args.ngf, "images": args.images, "batch_size": args.batch_size,
                "repeats": args.repeats, "warmup": args.warmup, "threads": args.threads,
                "cli_python": args.cli_python, "model": str(model)}
        cases = [] if args.skip_api else run_api_cases(args, base, root)
        if not args.skip_cli:
            folders = write_cli_inputs(root, args.sizes, args.images)
            for size in args.sizes:
                for engine in (engine for engine in ENGINES if engine in args.engines and engine in CLI_FLAGS):
                    print(f"measuring the CLI at {size}px, {engine} ...", file=sys.stderr, flush=True)
                    cases.append(measure_cli(model, folders[size], root,
                                             {**base, "kind": "cli", "size": size, "engine": engine}))
    add_ratios(cases, args.arch == "resnet_9blocks" and args.ngf == 64)
    machine = next((case["machine"] for case in cases if "machine" in case), None) or _machine(args.threads)
    payload = {"benchmark": "translate", "machine": machine, "cases": cases}
    print_table(payload)
    print(f"wrote {common.write_json(args.out, payload)}")
    return 0


def _machine(threads: int | None) -> dict[str, Any]:
    """The machine as the CLI processes saw it (they are not ours to ask), described from this process."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    return common.machine()


if __name__ == "__main__":
    sys.exit(main())
