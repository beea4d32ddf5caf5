"""`cyclegan serve` over real sockets: uvicorn on 127.0.0.1 started by the tests, driven with httpx. Every endpoint,
every error, hostile uploads, equality with `cyclegan translate`, the queue, tokens, CORS and SIGTERM."""

import asyncio
import io
import signal
import struct
import threading
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from cyclegan.cli.main import build_parser, main

from .helpers import SHARED, tiny_config
from .serve_helpers import running_server, tiny_run

OFFICIAL = SHARED / "fixtures" / "official"
PAINT = OFFICIAL / "G_resnet9_in_ngf16.pth"  # an official single-generator file: AtoB only
GRAY = OFFICIAL / "G_resnet9_none_ngf8_gray.pth"  # 1 channel in and out
LIMITS = ("--max-bytes", "2MB", "--max-pixels", "1000000")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("serve-model"))


@pytest.fixture(scope="module")
def server(run):
    with running_server(f"zebra={run}", f"paint={PAINT}", f"gray={GRAY}", *LIMITS) as started:
        yield started


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


def _png(array: np.ndarray, mode: str | None = None, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, "PNG", **options)
    return buffer.getvalue()


def _random(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    shape = (height, width, channels) if channels > 1 else (height, width)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def _check_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == status and body["error"] == code, body
    assert len(body["message"]) > 20 and "Traceback" not in response.text and "/tmp" not in response.text
    return body


def _bilevel_png(width: int, height: int) -> bytes:
    """A 1-bit PNG of zeros, written chunk by chunk: a few kB that decode to width x height pixels (a bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    compressed = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", compressed) + chunk(b"IEND", b"")


def _cli_output(run_or_file: Path, image: Path, tmp_path: Path, direction: str = "AtoB") -> np.ndarray:
    out = tmp_path / f"cli-{image.stem}-{direction}"
    assert main(["translate", str(run_or_file), str(image), "--out", str(out), "--direction", direction,
                 "--quiet", "--device", "cpu"]) == 0
    return np.asarray(Image.open(out / f"{image.stem}.png"))


def test_startup_prints_the_address_and_every_model(server):
    output = server.output()
    assert server.url.startswith("http://127.0.0.1:")
    for line in ("zebra: AtoB, BtoA (run folder run;", "paint: AtoB (official weights G_resnet9_in_ngf16.pth;",
                 "gray: AtoB (official weights"):
        assert line in output, output


def test_healthz_and_models(client, run):
    assert client.get("/healthz").json() == {"status": "ok", "models": 3, "queued": 0, "translating": 0}
    listing = client.get("/v1/models")
    assert listing.status_code == 200
    models = {model["name"]: model for model in listing.json()["models"]}
    assert list(models) == ["zebra", "paint", "gray"]
    assert models["zebra"]["directions"] == ["AtoB", "BtoA"]
    assert models["paint"]["directions"] == ["AtoB"]
    assert models["gray"]["channels"] == {"AtoB": {"in": 1, "out": 1}}
    assert models["zebra"]["source"] == "run folder run" and models["zebra"]["device"] == "cpu"
    assert listing.json()["limits"] == {"max_bytes": 2_000_000, "max_pixels": 1_000_000}
    assert str(run.parent) not in listing.text and str(OFFICIAL) not in listing.text  # no server paths


def test_openapi_describes_every_endpoint(client):
    spec = client.get("/openapi.json").json()
    assert {"/healthz", "/v1/models", "/v1/translate"} <= set(spec["paths"])
    translate = spec["paths"]["/v1/translate"]["post"]
    assert {parameter["name"] for parameter in translate["parameters"]} == {"model", "direction", "format"}
    assert {"200", "400", "401", "404", "413", "503"} <= set(translate["responses"])
    assert "multipart/form-data" in translate["requestBody"]["content"]


def test_the_page_and_its_assets_need_no_other_host(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "http" not in policy
    for asset in ("/static/app.js", "/static/style.css", "/docs"):
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert "http://" not in response.text and "https://" not in response.text, asset


@pytest.mark.parametrize("kind", ["rgb", "one_pixel", "sixteen_bit", "rgba", "grayscale", "jpeg", "palette"])
def test_output_equals_cyclegan_translate(client, run, tmp_path, kind):
    rng = np.random.default_rng(3)
    arrays = {"rgb": (_random(37, 53), None), "one_pixel": (_random(1, 1), None),
              "sixteen_bit": (rng.integers(0, 65536, (30, 41), dtype=np.uint16), None),
              "rgba": (_random(29, 35, 4), "RGBA"), "grayscale": (_random(33, 24, 1), "L"),
              "jpeg": (_random(40, 48), None), "palette": (_random(20, 20), None)}
    array, mode = arrays[kind]
    path = tmp_path / ("input.jpg" if kind == "jpeg" else "input.png")
    image = Image.fromarray(array, mode)
    (image.convert("P") if kind == "palette" else image).save(path)
    expected = _cli_output(run, path, tmp_path)
    raw = client.post("/v1/translate", params={"model": "zebra"}, content=path.read_bytes())
    assert raw.status_code == 200, raw.text
    assert raw.headers["content-type"] == "image/png"
    assert float(raw.headers["x-translation-seconds"]) > 0
    np.testing.assert_array_equal(_pixels(raw.content), expected)
    form = client.post("/v1/translate?model=zebra&direction=AtoB", files={"image": (path.name, path.read_bytes())})
    assert form.status_code == 200, form.text
    assert form.headers["content-disposition"] == 'inline; filename="input_AtoB.png"'
    np.testing.assert_array_equal(_pixels(form.content), expected)


def test_other_directions_models_and_formats(client, run, tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(_png(_random(24, 32, seed=5)))
    backward = client.post("/v1/translate?model=zebra&direction=BtoA", content=path.read_bytes())
    np.testing.assert_array_equal(_pixels(backward.content), _cli_output(run, path, tmp_path, "BtoA"))
    painted = client.post("/v1/translate?model=paint", content=path.read_bytes())  # its only direction
    np.testing.assert_array_equal(_pixels(painted.content), _cli_output(PAINT, path, tmp_path))
    gray = client.post("/v1/translate?model=gray", content=path.read_bytes())  # RGB in, a 1-channel model
    assert gray.status_code == 200 and Image.open(io.BytesIO(gray.content)).mode == "L"
    np.testing.assert_array_equal(_pixels(gray.content), _cli_output(GRAY, path, tmp_path))
    for encoding, kind in (("jpeg", "JPEG"), ("webp", "WEBP")):
        response = client.post(f"/v1/translate?model=zebra&format={encoding}", content=path.read_bytes())
        assert response.headers["content-type"] == f"image/{encoding}"
        assert Image.open(io.BytesIO(response.content)).format == kind


def test_bad_requests_get_4xx_json_and_the_server_stays_up(client, tmp_path):
    good = _png(_random(16, 16))
    text = b"these are not the pixels you are looking for\n" * 20
    checks = [
        (client.post("/v1/translate?model=zebra", content=text), 400, "not_an_image"),
        (client.post("/v1/translate?model=zebra", content=good[: len(good) // 2]), 400, "not_an_image"),
        (client.post("/v1/translate?model=zebra", content=b""), 400, "not_an_image"),
        (client.post("/v1/translate?model=zebra", files={"image": ("notes.txt", text)}), 400, "not_an_image"),
        (client.post("/v1/translate?model=zebra", files={"caption": (None, "no file")}), 400, "bad_request"),
        (client.post("/v1/translate", content=good), 400, "bad_request"),  # three models: which?
        (client.post("/v1/translate?model=horse", content=good), 404, "unknown_model"),
        (client.post("/v1/translate?model=paint&direction=BtoA", content=good), 400, "bad_request"),
        (client.post("/v1/translate?model=zebra&direction=sideways", content=good), 400, "bad_request"),
        (client.post("/v1/translate?model=zebra&format=gif", content=good), 400, "bad_request"),
        (client.post("/v1/translate?model=zebra", content=b"\0" * 2_000_001), 413, "too_large"),
        (client.post("/v1/translate?model=zebra", content=_png(np.zeros((1001, 1000, 3), np.uint8))), 413,
         "too_large"),
        (client.get("/v1/translate"), 405, "bad_request"),
        (client.get("/nowhere"), 404, "not_found"),
    ]
    for response, status, code in checks:
        _check_error(response, status, code)
    assert "notes.txt" in checks[3][0].json()["message"]
    assert "1000x1001" in checks[11][0].json()["message"]
    assert client.get("/healthz").json()["status"] == "ok"


def test_decompression_bombs_cost_nothing(client, server):
    def resident() -> int:
        status = Path(f"/proc/{server.process.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) * 1024

    before = resident()
    for width, height in ((1100, 1000), (40_000, 40_000)):  # over our limit; over Pillow's own guard too
        bomb = _bilevel_png(width, height)
        assert len(bomb) < 300_000  # 1.6 G pixels from a few hundred kB
        started = time.perf_counter()
        body = _check_error(client.post("/v1/translate?model=zebra", content=bomb), 413, "too_large")
        assert time.perf_counter() - started < 5, "the bomb was decoded"
        assert "scale it down" in body["message"]
    assert resident() - before < 100 * 2**20  # decoding either would take 1.6 GB or 137 MB


def test_no_file_of_the_server_is_reachable(client):
    for path in ("/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/static/",
                 "/static/index.html/../../pyproject.toml", "/..%2f..%2fetc%2fpasswd", "//etc/passwd"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "root:" not in response.text
    for model in ("../../etc/passwd", "/etc/passwd", str(PAINT), "pretrained:style_monet"):
        response = client.post("/v1/translate", params={"model": model}, content=_png(_random(8, 8)))
        _check_error(response, 404, "unknown_model")


def test_healthz_answers_during_a_long_translation(client, tmp_path):
    big = np.tile(np.linspace(0, 255, 1000, dtype=np.uint8)[None, :, None], (1000, 1, 3))  # 1 M pixels, compresses
    result: dict[str, httpx.Response] = {}
    worker = threading.Thread(target=lambda: result.update(
        response=client.post("/v1/translate?model=paint", content=_png(big))))
    worker.start()
    latencies, queued = [], []
    with httpx.Client(base_url=str(client.base_url), timeout=5) as other:
        while worker.is_alive():
            started = time.perf_counter()
            queued.append(other.get("/healthz").json()["queued"])
            latencies.append(time.perf_counter() - started)
            time.sleep(0.05)
    worker.join()
    assert result["response"].status_code == 200
    assert 1 in queued and len(latencies) >= 3, (queued, latencies)
    assert max(latencies) < 1.0, latencies


def test_token_guards_the_api_but_not_the_page_or_healthz(run):
    secret = "s3cret-" + "x" * 20
    with running_server(str(run), "--cors-origin", "http://allowed.test",
                        env={"CYCLEGAN_SERVE_TOKEN": secret}) as started, \
            httpx.Client(base_url=started.url, timeout=30) as http:
        assert "token required" in started.output()
        image = _png(_random(12, 12))
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": secret}):
            for response in (http.get("/v1/models", headers=headers), http.get("/openapi.json", headers=headers),
                             http.post("/v1/translate", content=image, headers=headers)):
                _check_error(response, 401, "unauthorized")
                assert response.headers["www-authenticate"] == "Bearer"
        auth = {"Authorization": f"Bearer {secret}"}
        assert http.get("/v1/models", headers=auth).status_code == 200
        assert http.post("/v1/translate", content=image, headers=auth).status_code == 200  # one model: no name
        for open_path in ("/", "/static/app.js", "/healthz"):
            assert http.get(open_path).status_code == 200, open_path
        preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
        allowed = http.options("/v1/translate", headers={"Origin": "http://allowed.test", **preflight})
        assert allowed.headers.get("access-control-allow-origin") == "http://allowed.test"
        other = http.options("/v1/translate", headers={"Origin": "http://elsewhere.test", **preflight})
        assert "access-control-allow-origin" not in other.headers


def test_cors_is_off_by_default(client):
    response = client.get("/v1/models", headers={"Origin": "http://elsewhere.test"})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers


def test_full_queue_gets_503_and_sigterm_finishes_the_running_translation(tmp_path):
    side = 2400  # the running translation takes seconds, so the waiting and the refused requests arrive during it
    big = _png(np.tile(np.linspace(0, 255, side, dtype=np.uint8)[None, :, None], (side, 1, 3)))
    small = _png(_random(16, 16))
    results: dict[str, httpx.Response | Exception] = {}

    def post(key: str, body: bytes) -> None:
        try:
            with httpx.Client(timeout=120) as http:
                results[key] = http.post(f"{server.url}v1/translate", content=body)
        except httpx.HTTPError as error:
            results[key] = error

    with running_server(str(PAINT), "--queue-size", "1") as server, httpx.Client(timeout=5) as probe:
        def health() -> dict:  # one kept-alive connection: polling must not starve the clients' threads
            return probe.get(f"{server.url}healthz").json()

        def queued() -> int:
            return health()["queued"]

        running = threading.Thread(target=post, args=("running", big))
        running.start()
        # Its translation has begun (admitted alone is not enough: a small request sent while the big one is still
        # uploading is translated first, as it reaches the device first).
        _wait_for(lambda: health() == {"status": "ok", "models": 1, "queued": 1, "translating": 1})
        waiting = threading.Thread(target=post, args=("waiting", small))
        waiting.start()
        _wait_for(lambda: queued() == 2)
        full = httpx.post(f"{server.url}v1/translate", content=small, timeout=30)
        body = _check_error(full, 503, "busy")
        assert int(full.headers["retry-after"]) >= 1 and "retry in" in body["message"]
        server.process.send_signal(signal.SIGTERM)
        running.join(120)
        waiting.join(120)
        assert server.process.wait(60) == 0
    assert results["running"].status_code == 200, results
    assert Image.open(io.BytesIO(results["running"].content)).size == (side, side)
    _check_error(results["waiting"], 503, "shutting_down")
    assert "cyclegan serve: stopped" in server.output()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}healthz", timeout=5)


def _wait_for(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_options_and_their_defaults():
    args = build_parser().parse_args(["serve", "runs/x"])
    assert (args.host, args.port, args.token, args.cors_origin) == ("127.0.0.1", 8000, None, [])
    assert args.max_pixels == 4096 * 4096 and args.max_bytes == 50 * 2**20 and args.queue_size == 16
    args = build_parser().parse_args(["serve", "a=runs/x", "--token", "t0ken", "--max-bytes", "1MB"])
    assert args.token == "t0ken" and args.max_bytes == 10**6


def test_bad_start_up_arguments_are_clear_errors(tmp_path, capsys, run):
    assert main(["serve", str(tmp_path / "missing"), "--port", "0"]) == 2
    assert "missing" in capsys.readouterr().err
    assert main(["serve", f"a={run}", f"a={PAINT}", "--port", "0"]) == 2
    assert "two models are named a" in capsys.readouterr().err
    with running_server(str(run)) as started:
        port = started.url.rsplit(":", 1)[1].strip("/")
        assert main(["serve", str(run), "--port", port]) == 2
        assert "choose another --port" in capsys.readouterr().err


def _in_process_app():
    from cyclegan.serve import ServedModel, create_app
    from cyclegan.translate import Translator

    translator = Translator.from_config(tiny_config(Path("unused"), Path("unused")), engine="torch")
    return create_app({"x": ServedModel("x", translator, "test")}), translator


def _call(app, method: str, path: str, **options) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await http.request(method, path, **options)

    return asyncio.run(call())


def test_a_failing_model_gets_500_json_without_a_traceback():
    app, translator = _in_process_app()

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals at /srv/models")

    translator.translate_images = broken
    response = _call(app, "POST", "/v1/translate", content=_png(_random(8, 8)))
    body = _check_error(response, 500, "internal")
    assert "secret" not in response.text and "log" in body["message"]


def test_once_stopping_healthz_and_new_requests_get_503():
    from cyclegan.serve import begin_shutdown

    app, _ = _in_process_app()
    assert _call(app, "GET", "/healthz").status_code == 200
    assert _call(app, "POST", "/v1/translate", content=_png(_random(8, 8))).status_code == 200
    begin_shutdown(app)
    health = _call(app, "GET", "/healthz")
    assert health.status_code == 503 and health.json()["status"] == "shutting_down"
    refused = _call(app, "POST", "/v1/translate", content=_png(_random(8, 8)))
    _check_error(refused, 503, "shutting_down")
    assert refused.headers["retry-after"] == "5"
