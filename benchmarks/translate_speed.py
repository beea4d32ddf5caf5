"""Translation speed and peak memory with a ResNet-9 generator (ngf 64), at 256x256 and 512x512:

- Python API: images per second in the steady state, `Translator(images)` on PIL images after warm-up calls;
- CLI: `cyclegan translate MODEL FOLDER --out DIR --quiet` as a whole process (interpreter start, imports, model
  load, PNG reading and writing) on a folder of `--images` generated PNGs, with a model file written first.

    python benchmarks/translate_speed.py
    python benchmarks/translate_speed.py --sizes 256 --images 10 --repeats 5 --threads 2

Each API case runs in a fresh process (its peak resident memory, VmHWM, is its own); each CLI run is a process whose
peak memory is read from `wait4`. Weights are untrained: speed does not depend on their values. Writes
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
# The targets: steady-state API throughput at 256, and 10 images at 256 through the CLI as a whole process.
TARGET_API_IMAGES_PER_SECOND = {256: 1.25}
TARGET_CLI_SECONDS = {(256, 10): 10.0}


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


def measure_api(spec: dict[str, Any]) -> dict[str, Any]:
    """In the child: time `Translator(images)` on `images` PIL images, after warm-up calls."""
    import torch

    from cyclegan.translate import Translator

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    rss_after_import = common.current_rss_bytes()
    torch.manual_seed(0)
    translator = Translator.from_config(model_config(spec["arch"], spec["ngf"]), device="cpu")
    translator.set_fast_convolutions(spec["convolutions"] == "fast")
    images = make_images(spec["images"], spec["size"])
    seconds = common.time_calls(lambda: translator(images, batch_size=spec["batch_size"]), spec["repeats"],
                                spec["warmup"])
    return {"spec": spec, "seconds_per_call": common.summarize(seconds),
            "images_per_second": spec["images"] / common.summarize(seconds)["median"],
            "rss_after_import_bytes": rss_after_import}


def write_cli_inputs(root: Path, arch: str, ngf: int, sizes: list[int], count: int) -> tuple[Path, dict[int, Path]]:
    """A CycleGAN model file (both generators, with its config) and one folder of `count` PNGs per size."""
    import torch

    from cyclegan.generators import build_generators
    from cyclegan.io.checkpoints import save_checkpoint
    from cyclegan.io.images import save_image

    torch.manual_seed(0)
    config = model_config(arch, ngf)
    nets = {name: net.state_dict() for name, net in build_generators(config.model).items()}
    model = save_checkpoint(root / "model.safetensors", config, {"nets": nets})
    folders = {}
    for size in sizes:
        folders[size] = root / f"inputs_{size}"
        for index, image in enumerate(make_images(count, size, seed=size)):
            save_image(image, folders[size] / f"image_{index:03d}.png")
    return model, folders


def measure_cli(model: Path, folder: Path, out_root: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """Whole-process runs of the CLI: one untimed (warms the OS file cache), then `repeats` timed ones."""
    command = [spec["cli_python"], "-m", "cyclegan", "translate", str(model), str(folder), "--quiet", "--device",
               "cpu"]
    if spec["batch_size"]:
        command += ["--batch-size", str(spec["batch_size"])]
    if spec["convolutions"] == "exact":
        command.append("--exact-convolutions")
    env = common.child_environment(spec["threads"])
    runs = []
    for index in range(spec["warmup"] + spec["repeats"]):
        out = out_root / f"run_{spec['size']}_{spec['convolutions']}_{index}"
        result = common.run_process(command + ["--out", str(out)], env=env,
                                    capture_stderr=True)
        if result.returncode != 0:
            raise RuntimeError(f"the CLI failed (exit code {result.returncode}): {' '.join(command)}\n"
                               f"{result.stdout}{result.stderr}")
        runs.append(result)
    timed = runs[spec["warmup"]:]
    seconds = common.summarize([run.wall_seconds for run in timed])
    torch_version = subprocess.run([spec["cli_python"], "-c", "import torch; print(torch.__version__)"],
                                   capture_output=True, text=True, check=True).stdout.strip()
    return {"spec": spec, "command": command, "cli_torch_version": torch_version, "process_seconds": seconds,
            "images_per_second": spec["images"] / seconds["median"],
            "peak_rss_bytes": max(run.max_rss_bytes for run in timed)}


def add_targets(case: dict[str, Any]) -> dict[str, Any]:
    spec = case["spec"]
    paper_model = spec["arch"] == "resnet_9blocks" and spec["ngf"] == 64
    case["peak_rss_gib"] = case["peak_rss_bytes"] / common.GIB
    if spec["kind"] == "api":
        target = TARGET_API_IMAGES_PER_SECOND.get(spec["size"]) if paper_model else None
        case["target"] = {"images_per_second": target}
        case["meets_target"] = None if target is None else case["images_per_second"] >= target
    else:
        target = TARGET_CLI_SECONDS.get((spec["size"], spec["images"])) if paper_model else None
        case["target"] = {"process_seconds": target}
        case["meets_target"] = None if target is None else case["process_seconds"]["median"] <= target
    return case


def print_table(payload: dict[str, Any]) -> None:
    headers = ["path", "size", "convolutions", "images", "batch", "median s", "IQR s", "images/s", "peak GiB", "target",
               "meets target"]
    rows = []
    for case in payload["cases"]:
        spec = case["spec"]
        timing = case["seconds_per_call"] if spec["kind"] == "api" else case["process_seconds"]
        target = (f">= {case['target']['images_per_second']} img/s" if case["target"].get("images_per_second")
                  else f"<= {case['target']['process_seconds']} s" if case["target"].get("process_seconds")
                  else None)
        path = ("Python API (steady state)" if spec["kind"] == "api"
                else f"CLI (whole process, torch {case['cli_torch_version']})")
        rows.append([path, spec["size"], spec["convolutions"], spec["images"], spec["batch_size"] or "default",
                     timing["median"], timing["iqr"],
                     case["images_per_second"], case["peak_rss_gib"], target, case["meets_target"]])
    print(common.describe_machine(payload["machine"]))
    spec = payload["cases"][0]["spec"]
    print(f"Translation with {spec['arch']} (ngf {spec['ngf']}); medians over the timed repeats after warm-up.")
    print(common.format_table(headers, rows))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="Image sides in pixels.")
    parser.add_argument("--images", type=int, default=10, help="Images per API call and per CLI folder.")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="Images translated together (default: the API's and CLI's own, 1 on the CPU).")
    parser.add_argument("--convolutions", choices=("fast", "exact", "both"), default="both",
                        help="fast: NNPACK (the translation default on the CPU); exact: --exact-convolutions, "
                             "oneDNN's direct ones; both: each case twice.")
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        common.report_child_result(measure_api(json.loads(args.child)))
        return 0
    base = {"arch": args.arch, "ngf": args.ngf, "images": args.images, "batch_size": args.batch_size,
            "repeats": args.repeats, "warmup": args.warmup, "threads": args.threads, "cli_python": args.cli_python}
    convolutions = ("fast", "exact") if args.convolutions == "both" else (args.convolutions,)
    cases = []
    if not args.skip_api:
        for size in args.sizes:
            for kind in convolutions:
                print(f"measuring the Python API at {size}px, {kind} convolutions ...", file=sys.stderr, flush=True)
                cases.append(add_targets(common.run_child(SCRIPT, {**base, "kind": "api", "size": size,
                                                                   "convolutions": kind})))
    if not args.skip_cli:
        with tempfile.TemporaryDirectory(prefix="cyclegan-translate-bench-") as root:
            model, folders = write_cli_inputs(Path(root), args.arch, args.ngf, args.sizes, args.images)
            for size in args.sizes:
                for kind in convolutions:
                    print(f"measuring the CLI at {size}px, {kind} convolutions ...", file=sys.stderr, flush=True)
                    cases.append(add_targets(measure_cli(model, folders[size], Path(root),
                                                         {**base, "kind": "cli", "size": size, "convolutions": kind})))
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
