"""How OpenMP's waiting policy decides the speed of a CPU training step when the machine is shared.

    python benchmarks/cpu_contention.py                  # every setting, alone and beside one busy process
    python benchmarks/cpu_contention.py --busy 2 --repeats 5

For each setting (PyTorch's default, GOMP_SPINCOUNT values, OMP_WAIT_POLICY=PASSIVE, one thread, and the one
the `cyclegan` command sets, `cyclegan.cli.openmp`), a fresh process times CycleGAN training steps (64x64,
ResNet-6, 24 filters: small steps, where waiting matters most) and generator forward passes (128x128, ResNet-9,
64 filters: translation), first on an idle machine, then beside `--busy` processes that spin
(`while True: pass`), as on a shared workstation or CI runner. The figures are medians after warm-up. Writes
benchmarks/results/cpu_contention.json (or --out) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import common

SCRIPT = Path(__file__).resolve()
OPENMP_VARIABLES = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")


def settings() -> dict[str, dict[str, str]]:
    """Name -> the OpenMP variables of that setting (all others unset)."""
    sys.path.insert(0, str(SCRIPT.parents[1] / "src"))
    from cyclegan.cli.openmp import set_openmp_defaults  # no torch import

    chosen: dict[str, str] = {}
    set_openmp_defaults(chosen)
    return {
        "default": {},
        "GOMP_SPINCOUNT=300": {"GOMP_SPINCOUNT": "300"},
        "GOMP_SPINCOUNT=1000": {"GOMP_SPINCOUNT": "1000"},
        "GOMP_SPINCOUNT=3000": {"GOMP_SPINCOUNT": "3000"},
        "GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"},
        "GOMP_SPINCOUNT=30000": {"GOMP_SPINCOUNT": "30000"},
        "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
        "OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"},
        f"cyclegan CLI ({', '.join(f'{k}={v}' for k, v in chosen.items()) or 'nothing set'})": chosen,
    }


def child(spec: dict[str, Any]) -> None:
    import torch

    from cyclegan.config import Config, apply_overrides
    from cyclegan.models.cyclegan import CycleGAN

    torch.manual_seed(0)
    config = apply_overrides(Config(), {"gen_arch": "resnet_6blocks", "ngf": 24, "ndf": 24, "device": "cpu"})
    model = CycleGAN(config.networks, config.options, config.train)
    real_a, real_b = torch.rand(1, 3, 64, 64) * 2 - 1, torch.rand(1, 3, 64, 64) * 2 - 1
    step = common.time_calls(lambda: model.training_step(real_a, real_b), spec["repeats"], spec["warmup"])
    from cyclegan.models import build_generators

    generator_config = apply_overrides(Config(), {"gen_arch": "resnet_9blocks", "ngf": 64})
    generator = build_generators(generator_config.model, generator_config.networks)["gen_ab"].eval()
    image = torch.rand(1, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        forward = common.time_calls(lambda: generator(image), spec["repeats"], spec["warmup"])
    common.report_child_result({"spec": spec, "step_seconds": common.summarize(step),
                                "forward_seconds": common.summarize(forward)})


def measure(name: str, variables: dict[str, str], busy: int, repeats: int, warmup: int) -> dict[str, Any]:
    env = {key: value for key, value in os.environ.items() if key not in OPENMP_VARIABLES}
    env.update(variables)
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        time.sleep(0.5 if busy else 0)
        spec = {"setting": name, "variables": variables, "busy": busy, "repeats": repeats, "warmup": warmup}
        result = common.run_process([sys.executable, str(SCRIPT), "--child", json.dumps(spec)], env=env)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    lines = [line for line in result.stdout.splitlines() if line.startswith(common.RESULT_PREFIX)]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"case {name} (busy {busy}) failed:\n{result.stdout}")
    return json.loads(lines[-1][len(common.RESULT_PREFIX):])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--busy", type=int, default=1, help="Spinning processes beside the loaded cases.")
    parser.add_argument("--repeats", type=int, default=10, help="Timed calls per case (the median is reported).")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed calls first.")
    parser.add_argument("--only", nargs="*", default=None, help="Measure only these settings (names as listed).")
    parser.add_argument("--out", default=str(common.RESULTS_DIR / "cpu_contention.json"), help="JSON output.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return 0
    cases = []
    for name, variables in settings().items():
        if args.only and name not in args.only:
            continue
        alone = measure(name, variables, 0, args.repeats, args.warmup)
        loaded = measure(name, variables, args.busy, args.repeats, args.warmup)
        cases.append({"setting": name, "variables": variables, "alone": alone, "loaded": loaded})
        print(f"{name}: step {alone['step_seconds']['median'] * 1e3:.0f} ms alone, "
              f"{loaded['step_seconds']['median'] * 1e3:.0f} ms loaded", flush=True)
    rows = [[case["setting"], case["alone"]["step_seconds"]["median"] * 1e3,
             case["loaded"]["step_seconds"]["median"] * 1e3, case["alone"]["forward_seconds"]["median"] * 1e3,
             case["loaded"]["forward_seconds"]["median"] * 1e3] for case in cases]
    print(common.format_table(["setting", "step alone (ms)", f"step beside {args.busy} busy (ms)",
                               "G forward alone (ms)", f"G forward beside {args.busy} busy (ms)"], rows))
    common.write_json(args.out, {"benchmark": "cpu_contention", "busy": args.busy, "machine": common.machine(),
                                 "cases": cases})
    return 0


if __name__ == "__main__":
    sys.exit(main())
