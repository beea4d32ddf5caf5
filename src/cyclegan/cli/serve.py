"""`cyclegan serve`: a page and an HTTP API translating images with one or more models, under uvicorn."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import threading

from PIL import Image

from ..config import PRECISIONS, ConfigError
from ..engines import DEFAULT_ENGINE, ENGINES
from .translate import _at_least_one, _EpilogKeptFormatter, parse_size

INSTALL_HINT = 'pip install "cyclegan[serve]"'
TOKEN_VARIABLE = "CYCLEGAN_SERVE_TOKEN"  # the token, when --token is not given

EPILOG = """\
examples:
  cyclegan serve runs/horse2zebra                           # one model, http://127.0.0.1:8000/
  cyclegan serve zebra=runs/h2z monet=pretrained:style_monet
  cyclegan serve zebra=runs/h2z --host 0.0.0.0 --token "$(openssl rand -hex 32)"

API: POST /v1/translate?model=NAME&direction=AtoB (the image as the body or a multipart file) returns a PNG
(format=jpeg|webp for others); GET /v1/models; GET /healthz; the spec at /openapi.json, readable at /docs.
Errors are JSON {status, error, message}: 400 not an image, 401 token needed, 404 unknown model, 413 too many
bytes or pixels, 503 queue full (Retry-After) or shutting down.

On any address but 127.0.0.1 give a --token (or $CYCLEGAN_SERVE_TOKEN). SIGTERM or Ctrl-C: the translation
running finishes and is answered, those waiting get 503, then the server exits.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="a browser page and an HTTP API translating images with trained or pretrained models",
        formatter_class=_EpilogKeptFormatter, usage="cyclegan serve MODEL [MODEL ...] [options]",
        description="Serve a page (drop an image, get it translated) and an HTTP API. Each MODEL is what "
                    "`cyclegan translate` takes (a run folder, checkpoint, official .pth file or folder, exported "
                    ".onnx file) or pretrained:NAME, optionally named: NAME=MODEL. Models load once, at start.",
        epilog=EPILOG)
    parser.add_argument("models", nargs="+", metavar="MODEL",
                        help="[NAME=]SOURCE: e.g. runs/h2z, zebra=runs/h2z, monet=pretrained:style_monet "
                             "(default name: the folder's or file's name, or the pretrained name).")
    parser.add_argument("--host", default="127.0.0.1",
                        help="Address to listen on; 0.0.0.0 (all interfaces) only with --token.")
    parser.add_argument("--port", type=int, default=8000, help="Port to listen on (0: any free port).")
    parser.add_argument("--token", default=os.environ.get(TOKEN_VARIABLE) or None,
                        help="Require 'Authorization: Bearer TOKEN' on the API (not on the page's files or "
                             f"/healthz); default ${TOKEN_VARIABLE}, else none.")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps.")
    parser.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE,
                        help="What runs the generators, as for `cyclegan translate` (auto: onnxruntime on "
                             "AVX-512 CPUs where installed, else torch).")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="float32 (exact), or bf16/fp16 autocast (faster where supported; a few 8-bit steps "
                             "off).")
    parser.add_argument("--max-memory", type=parse_size, default=parse_size("2GB"), metavar="SIZE",
                        help="Memory for one translation; larger images are translated in exact tiles.")
    parser.add_argument("--max-bytes", type=parse_size, default=parse_size("50MiB"), metavar="SIZE",
                        help="Largest upload accepted (413 above).")
    parser.add_argument("--max-pixels", type=_at_least_one, default=4096 * 4096, metavar="N",
                        help="Largest image accepted, in pixels, read from its header before decoding (413 "
                             "above: decompression bombs cost nothing).")
    parser.add_argument("--queue-size", type=int, default=16, metavar="N",
                        help="Requests that may wait per device while one is translated; more get 503 with "
                             "Retry-After.")
    parser.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                        help="Let pages from ORIGIN (e.g. https://example.org) call the API; repeatable. Default: "
                             "none (CORS off).")
    parser.add_argument("--base-url", default=None,
                        help="Where pretrained:NAME models are downloaded from (default: the official address, or "
                             "$CYCLEGAN_PRETRAINED_URL).")
    parser.add_argument("--shutdown-timeout", type=_at_least_one, default=60, metavar="SECONDS",
                        help="On SIGTERM, how long the running translations may take to finish before the server "
                             "stops anyway.")
    parser.add_argument("--access-log", action="store_true", help="Log every request (uvicorn's access log).")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..serve import ServeSettings, begin_shutdown, create_app, load_models, parse_model_spec
    except ImportError as error:
        raise ConfigError(f"cyclegan serve needs FastAPI, uvicorn and python-multipart ({error}); "
                          f"{INSTALL_HINT}") from None
    try:
        settings = ServeSettings(max_bytes=args.max_bytes, max_pixels=args.max_pixels, queue_size=args.queue_size,
                                 max_memory=args.max_memory, token=args.token, cors_origins=tuple(args.cors_origin))
    except ValueError as error:
        raise ConfigError(str(error)) from None
    # Pillow's own guard must not refuse what --max-pixels allows (the server checks its limit first).
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, args.max_pixels)
    specs = [parse_model_spec(text) for text in args.models]
    listener = _listen(args.host, args.port)
    models = load_models(specs, args.device, args.engine, args.precision, args.base_url)
    app = create_app(models, settings)
    host, port = listener.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"cyclegan serve: http://{shown}:{port}/", flush=True)
    for model in models.values():
        info = model.describe()
        print(f"  {model.name}: {', '.join(model.directions)} ({info['source']}; {info['engine']} on "
              f"{info['device']})", flush=True)
    print(f"API: http://{shown}:{port}/v1/translate, docs at /docs{'; token required' if args.token else ''}. "
          "Stop with Ctrl-C.", flush=True)
    if args.token is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"cyclegan: warning: listening on {args.host} without a token: anyone who can reach this machine can "
              f"use it; give --token (or ${TOKEN_VARIABLE})", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, log_level="info" if args.access_log else "warning", access_log=args.access_log,
                            timeout_graceful_shutdown=args.shutdown_timeout, server_header=False)
    _stoppable_server(uvicorn, config, lambda: begin_shutdown(app)).run(sockets=[listener])
    print("cyclegan serve: stopped", flush=True)
    return 0


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, opened before the models load so a taken port fails fast."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                               flags=socket.AI_PASSIVE)[0]
        listener = socket.socket(family, kind, protocol)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(2048)
    except (OSError, OverflowError) as error:
        raise ConfigError(f"cannot listen on {host}:{port} ({error}); choose another --port (or --host)") from None
    return listener


def _stoppable_server(uvicorn, config, on_stop):
    """uvicorn's server, telling the app (`on_stop`, on the event loop) at the first stop signal, so that the
    requests waiting for a device are rejected while the running ones finish; after that graceful stop the
    command returns normally (exit 0) instead of dying by the signal, as uvicorn would. Made here so that `--help`
    needs no uvicorn."""
    import asyncio

    class Server(uvicorn.Server):
        loop: asyncio.AbstractEventLoop | None = None

        @contextlib.contextmanager
        def capture_signals(self):
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            originals = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in originals.items():
                    signal.signal(sig, handler)

        async def serve(self, sockets=None) -> None:
            self.loop = asyncio.get_running_loop()
            await super().serve(sockets)

        def handle_exit(self, sig, frame) -> None:
            if self.loop is not None and not self.should_exit:
                self.loop.call_soon_threadsafe(on_stop)
            super().handle_exit(sig, frame)

    return Server(config)
