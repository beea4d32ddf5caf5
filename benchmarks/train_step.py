"""Seconds per CycleGAN training iteration, and peak memory, with the paper's settings (Sec. 4 and Sec. 5.2):
batch 1, LSGAN, image pool of 50, identity loss 0.5, 256x256 with the ResNet-9 generator and 128x128 with ResNet-6.

    python benchmarks/train_step.py                      # both paper cases, the default (fused) step
    python benchmarks/train_step.py --levers             # the step with each speed lever, one at a time
    python benchmarks/train_step.py --size 128 --reference --repeats 3
    python benchmarks/train_step.py --size 128 --precision bf16   # autocast; fast on CPUs with AMX

An iteration is `CycleGAN.training_step` on in-memory images: both generators' update, then both discriminators'
(data loading excluded, as in the official code's per-iteration `t_comp`). The image pools are filled with 50
images first, so memory and the pool's choice are those of the steady state after iteration 50. Each case runs in a
fresh process: the timed figure is the median over `--repeats` iterations after `--warmup` untimed ones, and the
memory figure is that process's peak resident set (VmHWM), imports included. Writes
benchmarks/results/train_step.json (or --out) and prints a table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import common

SCRIPT = Path(__file__).resolve()
PAPER_CASES = ((256, "resnet_9blocks"), (128, "resnet_6blocks"))  # paper Sec. 4 / appendix 7.2
OFFICIAL_LABEL = "official (issue #5, measured on this machine)"
# The official implementation on this machine, from the issue: seconds per iteration and peak memory (GiB).
OFFICIAL = {(256, "resnet_9blocks"): {"seconds": 18.9, "peak_gib": 4.05},
            (128, "resnet_6blocks"): {"seconds": 4.1, "peak_gib": None}}
TARGETS = {(256, "resnet_9blocks"): {"seconds": 15.5, "peak_gib": 0.6 * 4.05},
           (128, "resnet_6blocks"): {"seconds": 3.2, "peak_gib": None}}
DEFAULT_STEP = {"reference": False, "channels_last": False, "optimizer": "default", "compile": False,
                "keep_freed_memory": True, "fast_convolutions": False, "precision": "float32"}
# --levers: the step with one lever at a time, from the plain reference step to all of them.
LEVERS = (
    {"reference": True},
    {"keep_freed_memory": False},
    {},
    {"fast_convolutions": True},
    {"channels_last": True},
    {"optimizer": "foreach"},
    {"optimizer": "fused"},
    {"channels_last": True, "optimizer": "fused"},
)


def variant_name(spec: dict[str, Any]) -> str:
    parts = ["reference" if spec["reference"] else "fused"]
    if spec["channels_last"]:
        parts.append("channels_last")
    if spec["optimizer"] != "default":
        parts.append(f"adam_{spec['optimizer']}")
    if spec["compile"]:
        parts.append("compile")
    if not spec["keep_freed_memory"]:
        parts.append("default_malloc")
    if spec["fast_convolutions"]:
        parts.append("nnpack")
    if spec["threads"]:
        parts.append(f"{spec['threads']}_threads")
    if spec.get("precision", "float32") != "float32":
        parts.append(spec["precision"])
    return "+".join(parts)


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """In the child: build the model, fill the pools, time `repeats` iterations after `warmup`."""
    import torch

    from cyclegan.config import Config, apply_overrides
    from cyclegan.models.cyclegan import CycleGAN
    from cyclegan.runtime import keep_freed_memory

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from reference_step import plain_networks, reference_step  # the plain step: the tests' oracle

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    if spec["keep_freed_memory"]:
        keep_freed_memory()  # as `cyclegan train` does on the CPU
    rss_after_import = common.current_rss_bytes()
    torch.manual_seed(spec["seed"])
    config = apply_overrides(Config(), {
        "gen_arch": spec["arch"], "ngf": spec["ngf"], "ndf": spec["ndf"], "gan_mode": "lsgan",  # paper Sec. 4
        "lambda_identity": 0.5, "batch_size": 1, "pool_size": spec["pool_size"], "seed": spec["seed"],
        "fast_convolutions": spec["fast_convolutions"], "precision": spec["precision"]})
    model = CycleGAN(config.networks, config.options, config.train)
    if spec["reference"]:
        plain_networks(model)
    memory_format = torch.channels_last if spec["channels_last"] else torch.contiguous_format
    model.to(memory_format=memory_format)
    if spec["optimizer"] != "default":  # same Adam, another implementation: foreach (multi-tensor) or fused
        for name, optimizer in model.optimizers.items():
            group = optimizer.param_groups[0]
            parameters = [p for g in optimizer.param_groups for p in g["params"]]
            model.optimizers[name] = torch.optim.Adam(parameters, lr=group["lr"], betas=group["betas"],
                                                      **{spec["optimizer"]: True})
    if spec["compile"]:
        for name in model.networks():
            setattr(model, name, torch.compile(getattr(model, name)))

    size = spec["size"]
    shape = (1, config.networks.channels_a, size, size)
    for pool in model.pools.values():  # the steady state: a full pool
        for _ in range(pool.size):
            pool.query(torch.rand(shape) * 2 - 1)
    inputs = [(torch.rand(shape) * 2 - 1).contiguous(memory_format=memory_format) for _ in range(4)]
    pairs = itertools.cycle([(inputs[0], inputs[1]), (inputs[2], inputs[3])])
    losses: dict[str, float] = {}

    def step() -> None:
        batch = next(pairs)
        losses.update(reference_step(model, *batch) if spec["reference"] else model.training_step(*batch))

    seconds = common.time_calls(step, spec["repeats"], spec["warmup"])
    return {"spec": spec, "variant": variant_name(spec), "step_seconds": common.summarize(seconds),
            "rss_after_import_bytes": rss_after_import, "last_losses": losses}


def build_specs(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.size is None and args.arch is None:
        cases = list(PAPER_CASES)
    else:
        size = args.size or (256 if args.arch == "resnet_9blocks" else 128)
        arch = args.arch or ("resnet_9blocks" if size >= 256 else "resnet_6blocks")  # the paper's pairing
        cases = [(size, arch)]
    chosen = {"reference": args.reference, "channels_last": args.channels_last, "optimizer": args.optimizer,
              "compile": args.compile, "keep_freed_memory": not args.default_malloc,
              "fast_convolutions": args.fast_convolutions, "precision": args.precision}
    levers = list(LEVERS) + ([{"compile": True}] if args.compile else [])
    variants = ([{**DEFAULT_STEP, **lever, "precision": args.precision} for lever in levers] if args.levers
                else [chosen])
    return [{"size": size, "arch": arch, "ngf": args.ngf, "ndf": args.ndf, "pool_size": args.pool_size,
             "seed": 0, "warmup": args.warmup, "repeats": args.repeats, "threads": args.threads, **variant}
            for size, arch in cases for variant in variants]


def reference_figures(spec: dict[str, Any], table: dict) -> dict[str, Any]:
    """The official / target figures, only for the paper's own settings (widths 64, pool 50)."""
    if spec["ngf"] != 64 or spec["ndf"] != 64 or spec["pool_size"] != 50:
        return {"seconds": None, "peak_gib": None}
    return table.get((spec["size"], spec["arch"]), {"seconds": None, "peak_gib": None})


def summarize_case(result: dict[str, Any]) -> dict[str, Any]:
    spec = result["spec"]
    official, target = reference_figures(spec, OFFICIAL), reference_figures(spec, TARGETS)
    seconds, peak_gib = result["step_seconds"]["median"], result["peak_rss_bytes"] / common.GIB
    meets = None
    if target["seconds"] is not None:
        meets = seconds <= target["seconds"] and (target["peak_gib"] is None or peak_gib <= target["peak_gib"])
    return {"case": f"{spec['size']}px {spec['arch']}", **result, "peak_rss_gib": peak_gib,
            "official": official, "target": target, "meets_target": meets,
            "speedup_vs_official": official["seconds"] / seconds if official["seconds"] else None}


def print_table(payload: dict[str, Any]) -> None:
    headers = ["case", "step", "median s", "IQR s", "peak GiB", "process max GiB", "official s", "official GiB",
               "target s", "target GiB", "speed-up", "meets target"]
    rows = [[case["case"], case["variant"], case["step_seconds"]["median"], case["step_seconds"]["iqr"],
             case["peak_rss_gib"], case["process_max_rss_bytes"] / common.GIB, case["official"]["seconds"],
             case["official"]["peak_gib"], case["target"]["seconds"], case["target"]["peak_gib"],
             case["speedup_vs_official"], case["meets_target"]] for case in payload["cases"]]
    print(common.describe_machine(payload["machine"]))
    print(f"CycleGAN training iteration (batch 1, LSGAN, pool {payload['cases'][0]['spec']['pool_size']}, identity "
          f"0.5); median of {payload['cases'][0]['spec']['repeats']} after "
          f"{payload['cases'][0]['spec']['warmup']} warm-up. 'official' columns: {OFFICIAL_LABEL}.")
    print(common.format_table(headers, rows))
    print("peak GiB: the process's VmHWM at the end of the measurement (compared with the target); process max GiB: "
          "ru_maxrss of the whole process, interpreter shutdown included, as `/usr/bin/time -v` reports it.")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="Timed iterations per case (the median is reported).")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed iterations first.")
    parser.add_argument("--size", type=int, default=None, help="One case at this size (default: both paper cases).")
    parser.add_argument("--arch", default=None, choices=("resnet_9blocks", "resnet_6blocks", "unet_128", "unet_256"),
                        help="Generator of the one case (default: the paper's for --size).")
    parser.add_argument("--reference", action="store_true",
                        help="The plain reference step (tests/reference_step.py: one call per generator use).")
    parser.add_argument("--channels-last", action="store_true", help="Networks and inputs in channels_last.")
    parser.add_argument("--optimizer", default="default", choices=("default", "foreach", "fused"),
                        help="Adam implementation (the same update rule).")
    parser.add_argument("--compile", action="store_true", help="torch.compile the four networks (with --levers: "
                                                               "add a compiled variant).")
    parser.add_argument("--default-malloc", action="store_true",
                        help="Leave glibc's malloc as it is (cyclegan.runtime.keep_freed_memory is not called).")
    parser.add_argument("--fast-convolutions", action="store_true",
                        help="train.fast_convolutions: NNPACK for the generators' stride-1 convolutions.")
    parser.add_argument("--precision", default="float32", choices=("float32", "bf16", "fp16"),
                        help="train.precision: float32, or autocast in bf16 (fast on CPUs with AMX) or fp16 (GPUs).")
    parser.add_argument("--threads", type=int, default=None, help="torch / OpenMP threads (default: torch's).")
    parser.add_argument("--levers", action="store_true", help="Measure each speed lever as its own case.")
    parser.add_argument("--ngf", type=int, default=64, help="Generator width (paper: 64; smaller for smoke runs).")
    parser.add_argument("--ndf", type=int, default=64, help="Discriminator width (paper: 64).")
    parser.add_argument("--pool-size", type=int, default=50, help="Image pool size (paper: 50).")
    parser.add_argument("--out", default=str(common.RESULTS_DIR / "train_step.json"), help="JSON output file.")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        common.report_child_result(measure(json.loads(args.child)))
        return 0
    cases = []
    for spec in build_specs(args):
        print(f"measuring {spec['size']}px {spec['arch']} {variant_name(spec)} ...", file=sys.stderr, flush=True)
        cases.append(summarize_case(common.run_child(SCRIPT, spec)))
    payload = {"benchmark": "train_step", "machine": cases[0]["machine"], "official_label": OFFICIAL_LABEL,
               "cases": cases}
    print_table(payload)
    print(f"wrote {common.write_json(args.out, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
