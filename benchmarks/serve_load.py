"""`cyclegan serve` under load, beside `cyclegan translate` on the same model, images and machine.

- CLI: `cyclegan translate MODEL FOLDER` on --requests PNGs and on a tenth of them; its images/s is the marginal
  rate between the two (start-up and model load cancel out), and the whole command's rate is shown too;
- load: --clients concurrent clients (threads, one keep-alive httpx connection each) sending --requests POSTs of
  those PNGs to one server on the CPU, twice: throughput, p50/p99 latency, errors (must be 0), and the server's
  resident memory after each round and its peak (growth between rounds beyond noise would be a leak);
- overload: a server with --overload-queue waiting places and --overload-clients clients that, as a well-behaved
  client does, send a request again after the Retry-After of its 503: how many 503s, that every accepted request
  is answered with a correct image, and that throughput and the accepted requests' latency stay bounded.

    python benchmarks/serve_load.py                       # ResNet-9, ngf 64, 256x256: the paper's generator
    python benchmarks/serve_load.py --requests 40 --ngf 16   # a quick look

Weights are untrained (speed does not depend on them). Writes benchmarks/results/serve_load.json and prints a
table. The target: the server's throughput within 10% of the CLI's images/s.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import common
from translate_speed import make_images, write_model

ADDRESS = re.compile(r"^cyclegan serve: (http://\S+/)")


class Server:
    """`cyclegan serve MODEL` on a free port of 127.0.0.1 until `stop()`."""

    def __init__(self, model: Path, *args: str, env: dict[str, str]) -> None:
        command = [sys.executable, "-m", "cyclegan", "serve", str(model), "--port", "0", "--device", "cpu", *args]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.url = ""
        self.lines: list[str] = []
        for line in self.process.stdout:
            self.lines.append(line)
            match = ADDRESS.match(line)
            self.url = match.group(1) if match else self.url
            if line.startswith("API: "):
                break
        if not self.url:
            raise RuntimeError("cyclegan serve did not start:\n" + "".join(self.lines))
        threading.Thread(target=lambda: [self.lines.append(line) for line in self.process.stdout], daemon=True).start()

    def memory(self) -> dict[str, int | None]:
        status = f"/proc/{self.process.pid}/status"
        return {"rss_bytes": common.proc_kib_field(status, "VmRSS"),
                "peak_rss_bytes": common.proc_kib_field(status, "VmHWM")}

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(60)


def cli_rate(model: Path, folder: Path, subset: Path, out: Path, env: dict[str, str], engine: str
             ) -> dict[str, Any]:
    """`cyclegan translate` on all images and on a subset: whole-command and marginal images/s."""
    def seconds(source: Path, count: int) -> float:
        command = [sys.executable, "-m", "cyclegan", "translate", str(model), str(source), "--out",
                   str(out / source.name), "--quiet", "--device", "cpu", "--engine", engine]
        result = common.run_process(command, env=env, capture_stderr=True)
        if result.returncode != 0:
            raise RuntimeError(f"cyclegan translate failed:\n{result.stderr}")
        return result.wall_seconds

    full, small = len(list(folder.iterdir())), len(list(subset.iterdir()))
    whole, part = seconds(folder, full), seconds(subset, small)
    return {"images": full, "seconds": whole, "images_per_second": full / whole, "subset_images": small,
            "subset_seconds": part, "marginal_images_per_second": (full - small) / (whole - part)}


def load(url: str, bodies: list[bytes], clients: int, size: int, retry: bool = False) -> dict[str, Any]:
    """`len(bodies)` POSTs from `clients` threads; latencies of answered requests, status counts (of every attempt),
    bad images. With `retry`, a 503 is sent again after its Retry-After."""
    import httpx
    from PIL import Image

    lock, queue = threading.Lock(), list(enumerate(bodies))
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    failures: list[str] = []

    start = threading.Barrier(clients + 1)

    def client(http: httpx.Client) -> None:
        with http:
            start.wait()  # clients are made first (each takes a while): then all begin together
            while True:
                with lock:
                    if not queue:
                        return
                    _, body = queue.pop()
                while True:
                    started = time.perf_counter()
                    try:
                        response = http.post("/v1/translate", content=body)
                    except httpx.HTTPError as error:
                        response = None
                        with lock:
                            failures.append(f"{type(error).__name__}: {error}")
                    if response is None or response.status_code != 503 or not retry:
                        break
                    with lock:
                        statuses["503"] = statuses.get("503", 0) + 1
                        if "retry-after" not in response.headers:
                            failures.append("503 without Retry-After")
                    time.sleep(float(response.headers.get("retry-after", 1)))
                if response is None:
                    continue
                elapsed = time.perf_counter() - started
                good = response.status_code != 200 or Image.open(io.BytesIO(response.content)).size == (size, size)
                with lock:
                    statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1
                    if response.status_code == 200:
                        latencies.append(elapsed)
                    if response.status_code == 503 and "retry-after" not in response.headers:
                        failures.append("503 without Retry-After")
                    if not good:
                        failures.append("a 200 answer that is not a correct image")

    threads = [threading.Thread(target=client, args=(httpx.Client(base_url=url, timeout=600),))
               for _ in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    answered = statuses.get("200", 0)
    ordered = sorted(latencies)
    return {"requests": len(bodies), "clients": clients, "seconds": wall, "ok": answered,
            "images_per_second": answered / wall, "statuses": statuses, "errors": failures,
            "latency_p50_seconds": _quantile(ordered, 0.5), "latency_p99_seconds": _quantile(ordered, 0.99)}


def _quantile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="Requests per load round (and CLI images).")
    parser.add_argument("--clients", type=int, default=8, help="Concurrent clients of the load rounds.")
    parser.add_argument("--size", type=int, default=256, help="Image side in pixels.")
    parser.add_argument("--arch", default="resnet_9blocks", help="Generator architecture.")
    parser.add_argument("--ngf", type=int, default=64, help="Generator width (64: the paper's).")
    parser.add_argument("--engine", default="auto", help="--engine of both the server and the CLI.")
    parser.add_argument("--overload-queue", type=int, default=2, help="The overload server's --queue-size.")
    parser.add_argument("--overload-clients", type=int, default=32, help="Clients of the overload round.")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "serve_load.json"),
                        help="Where the JSON goes.")
    return parser.parse_args(argv)


def run_rounds(args: argparse.Namespace, model: Path, bodies: list[bytes], env: dict[str, str]) -> dict[str, Any]:
    rounds: dict[str, Any] = {}
    server = Server(model, "--engine", args.engine, env=env)
    rounds["server_models"] = [line.strip() for line in server.lines if line.startswith("  ")]  # engine, device
    try:
        load(server.url, bodies[: args.clients], args.clients, args.size)  # first requests of each thread
        rounds["memory_before"] = server.memory()
        for name in ("load_1", "load_2"):
            rounds[name] = load(server.url, bodies, args.clients, args.size)
            rounds[name]["memory_after"] = server.memory()
    finally:
        rounds["exit_code"] = server.stop()
    server = Server(model, "--engine", args.engine, "--queue-size", str(args.overload_queue), env=env)
    try:
        rounds["overload"] = load(server.url, bodies, args.overload_clients, args.size, retry=True)
        rounds["overload"]["queue_size"] = args.overload_queue
    finally:
        rounds["overload_exit_code"] = server.stop()
    return rounds


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="serve-load-") as scratch:
        root = Path(scratch)
        env = {**os.environ, "CYCLEGAN_CACHE": str(root / "cache")}
        model = write_model(root, args.arch, args.ngf)
        folder, subset = root / "images", root / "subset"
        folder.mkdir()
        subset.mkdir()
        bodies = []
        for index, image in enumerate(make_images(args.requests, args.size)):
            image.save(folder / f"{index:04d}.png")
            if index < max(1, args.requests // 10):
                image.save(subset / f"{index:04d}.png")
            bodies.append((folder / f"{index:04d}.png").read_bytes())
        cli_rate(model, subset, subset, root / "warm", env, args.engine)  # an ONNX export on first use, cached
        payload: dict[str, Any] = {"settings": vars(args), "machine": common.machine()}
        payload["cli"] = cli_rate(model, folder, subset, root / "out", env, args.engine)
        payload.update(run_rounds(args, model, bodies, env))
    best = max(payload[name]["images_per_second"] for name in ("load_1", "load_2"))
    payload["throughput_ratio_to_cli"] = best / payload["cli"]["marginal_images_per_second"]
    payload["within_10_percent"] = payload["throughput_ratio_to_cli"] >= 0.9
    common.write_json(args.out, payload)
    print_table(payload)
    return 0


def print_table(payload: dict[str, Any]) -> None:
    cli = payload["cli"]
    rows = [["cyclegan translate (whole command)", cli["images"], "-", cli["images_per_second"], "-", "-", "-", "-"],
            ["cyclegan translate (marginal)", cli["images"] - cli["subset_images"], "-",
             cli["marginal_images_per_second"], "-", "-", "-", "-"]]
    for name in ("load_1", "load_2", "overload"):
        run = payload[name]
        memory = run.get("memory_after", {})
        rows.append([f"serve, {name.replace('_', ' round ')}", run["requests"], run["clients"],
                     run["images_per_second"], run["latency_p50_seconds"], run["latency_p99_seconds"],
                     ", ".join(f"{code}: {count}" for code, count in sorted(run["statuses"].items())),
                     len(run["errors"]) if not memory else f"{len(run['errors'])}; RSS "
                     f"{memory['rss_bytes'] / 2**20:.0f} MiB, peak {memory['peak_rss_bytes'] / 2**20:.0f} MiB"])
    print(common.format_table(["case", "requests", "clients", "images/s", "p50 s", "p99 s", "answers",
                               "errors; server memory after"], rows))
    before = payload["memory_before"]
    print(f"server before the load: RSS {before['rss_bytes'] / 2**20:.0f} MiB; throughput / CLI marginal rate: "
          f"{payload['throughput_ratio_to_cli']:.2f} (target >= 0.90)")
    print(common.describe_machine(payload["machine"]))


if __name__ == "__main__":
    sys.exit(main())
