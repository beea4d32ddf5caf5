"""What the speed benchmarks share: the machine's description, robust statistics, peak memory, child processes,
JSON output and tables.

Every measured case runs in a fresh process, so its peak resident memory (VmHWM, the high-water mark of RSS) is its
own and not the maximum of everything measured before it. A case's process prints one `RESULT {json}` line; the
parent also reads the child's `ru_maxrss` from `wait4`, which is how it measures the CLI (a process we do not write).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
RESULT_PREFIX = "RESULT "
GIB = 1024**3


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The CPU's vector and matrix extensions (AVX2, AVX-512, AMX ...) from /proc/cpuinfo: what decides which
    kernels run, and so how float32 rounds (empty where /proc/cpuinfo is absent)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(flag for flag in flags if flag.startswith(("avx", "amx", "fma", "sse4")))


def cpu_summary(flags: Sequence[str]) -> str:
    """The CPU's widest vector unit and its low-precision matrix support, e.g. "AVX-512, AVX512-BF16, no AMX":
    what bounds float32 and bfloat16 throughput."""
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    bf16 = "AVX512-BF16" if "avx512_bf16" in flags else "no AVX512-BF16"
    amx = "AMX" if "amx_tile" in flags else "no AMX"
    return f"{vector}, {bf16}, {amx}" if flags else "unknown (no /proc/cpuinfo)"


def machine() -> dict[str, Any]:
    """Where the figures come from: CPU, cores, torch threads and versions. Call it in the measuring process, after
    any thread setting, so `torch_threads` is what the measurement used."""
    import torch

    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    flags = cpu_flags()
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)  # get_cpu_capability says only AVX512 on AMX CPUs
    return {"cpu_model": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "amx": bool(amx()) if amx else None,
            "cpu_summary": cpu_summary(flags), "cpu_flags": flags, "logical_cores": os.cpu_count(),
            "usable_cores": affinity,
            "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
            "torch_version": torch.__version__, "mkldnn": torch.backends.mkldnn.is_available(),
            "python": platform.python_version(), "platform": platform.platform(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Median, quartiles and range of repeated measurements (the median is the figure we report)."""
    values = list(values)
    if not values:
        raise ValueError("no measurements")
    if len(values) >= 2:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    else:
        q1 = q3 = values[0]
    return {"median": statistics.median(values), "q1": q1, "q3": q3, "iqr": q3 - q1, "min": min(values),
            "max": max(values), "n": len(values), "values": values}


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far: VmHWM from /proc, else ru_maxrss (kB on Linux, bytes on macOS)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def proc_kib_field(path: str, field: str) -> int | None:
    """A "Field:  N kB" line of a /proc file, in bytes (None where the file or field is absent)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def current_rss_bytes() -> int | None:
    return proc_kib_field("/proc/self/status", "VmRSS")


def time_calls(function: Any, repeats: int, warmup: int) -> list[float]:
    """Seconds of each of `repeats` calls of `function()`, after `warmup` untimed calls (steady state)."""
    for _ in range(warmup):
        function()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return seconds


@dataclass
class ProcessResult:
    returncode: int
    wall_seconds: float
    max_rss_bytes: int  # from wait4: the child's own peak resident memory (what `/usr/bin/time -v` reports)
    stdout: str
    stderr: str | None  # None when it passed through to ours


def run_process(command: Sequence[str], env: dict[str, str] | None = None, capture_stderr: bool = False
                ) -> ProcessResult:
    """Run a process to its end; its wall time (start to exit), peak memory and output."""
    with tempfile.TemporaryFile(mode="w+") as output, tempfile.TemporaryFile(mode="w+") as errors:
        start = time.perf_counter()
        process = subprocess.Popen(list(command), stdout=output, stderr=errors if capture_stderr else None, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        errors.seek(0)
        stdout, stderr = output.read(), errors.read() if capture_stderr else None
    rss = usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024
    return ProcessResult(process.returncode, wall, rss, stdout, stderr)


def child_environment(threads: int | None) -> dict[str, str]:
    """The parent's environment; with `threads`, also the OpenMP/MKL thread counts, set before torch starts."""
    env = dict(os.environ)
    if threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(threads)
    return env


def run_child(script: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """Run `script --child SPEC` in a fresh interpreter and return the result it printed, plus its peak memory."""
    result = run_process([sys.executable, str(script), "--child", json.dumps(spec)],
                         env=child_environment(spec.get("threads")))
    lines = [line for line in result.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"case {spec} failed (exit code {result.returncode}); output:\n{result.stdout}")
    measured = json.loads(lines[-1][len(RESULT_PREFIX):])
    measured["process_max_rss_bytes"] = result.max_rss_bytes
    return measured


def report_child_result(result: dict[str, Any]) -> None:
    """In the child: add its peak memory and machine description, and print the result line for the parent."""
    result["peak_rss_bytes"] = peak_rss_bytes()
    result["machine"] = machine()
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    from cyclegan.io.atomic import atomic_write_text

    path = Path(path)
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
    return path


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; floats get 3 significant decimals, None shows as a dash."""
    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def describe_machine(info: dict[str, Any]) -> str:
    summary = info.get("cpu_summary") or info.get("cpu_capability")
    return (f"Machine: {info['cpu_model']} ({summary}); {info['logical_cores']} logical cores "
            f"({info['usable_cores']} usable), "
            f"torch {info['torch_version']} with {info['torch_threads']} threads; Python {info['python']}; "
            f"load average {', '.join(f'{x:.2f}' for x in info['load_average'] or [])}")
