"""The ASGI app: the page, `/healthz`, `/v1/models`, `/v1/translate` and the OpenAPI spec.

Every answer that is not an image is JSON; every error is `{"status", "error", "message"}` with a message that
says what to do, and never a traceback or a path of the server's disk. Requests reach files only through the
page's assets (read once, at start, from serve/static/), and models only by the names they were given at start.
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import AsyncIterator
from importlib import resources

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from .. import __version__
from ..io.images import ENCODINGS, ImageError, ImageTooLarge, decode_image, encode_image
from ..translate import TranslationError
from .errors import ApiError, ErrorBody, add_error_handlers
from .models import ServedModel
from .settings import ServeSettings
from .uploads import read_upload
from .work import DeviceQueue, QueueFull, ShuttingDown

# The page's assets, the only files a request can reach: serve/static/, read once at start. index.html is `/`,
# docs.html `/docs`, every other file `/static/NAME`.
ASSET_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml"}
# The page may load nothing but its own assets and the images it makes (blob:): no CDN, fonts or beacons.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
                                           "base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}
TIMING_HEADERS = ("X-Translation-Seconds", "X-Queue-Seconds", "Server-Timing", "Content-Disposition")


def create_app(models: dict[str, ServedModel], settings: ServeSettings | None = None) -> FastAPI:
    """The app serving `models` (loaded Translators, by name) under `settings`."""
    settings = settings or ServeSettings()
    if not models:
        raise ValueError("a server needs at least one model")
    queues = {device: DeviceQueue(device, settings.queue_size) for device in {m.device for m in models.values()}}
    assets = page_assets()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for queue in queues.values():
            queue.close()
            queue.shutdown()

    app = FastAPI(title="cyclegan serve", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None, description="Translate images with CycleGAN models (Zhu et al., ICCV 2017). "
                  "Errors are JSON: {status, error, message}.")
    app.state.queues = queues  # for begin_shutdown
    add_error_handlers(app)
    if settings.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], expose_headers=list(TIMING_HEADERS))
    for route, (body, kind) in assets.items():
        app.add_api_route(route, _asset(body, kind), methods=["GET"], include_in_schema=False)
    _add_api_routes(app, models, queues, settings)
    return app


def page_assets() -> dict[str, tuple[bytes, str]]:
    """Each asset's route, bytes and media type."""
    routes = {"index.html": "/", "docs.html": "/docs"}
    assets = {}
    for item in resources.files(__package__).joinpath("static").iterdir():
        kind = ASSET_TYPES.get("." + item.name.rsplit(".", 1)[-1])
        if kind is not None and item.is_file():
            assets[routes.get(item.name, f"/static/{item.name}")] = (item.read_bytes(), kind)
    return assets


def begin_shutdown(app: FastAPI) -> None:
    """Refuse new work and reject the requests waiting for a device; call on the event loop's thread."""
    for queue in app.state.queues.values():
        queue.close()


def _asset(body: bytes, kind: str):
    async def asset() -> Response:
        return Response(body, media_type=kind, headers=PAGE_HEADERS)

    return asset


def _check_token(request: Request, settings: ServeSettings) -> None:
    if settings.token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), settings.token.encode()):
        raise ApiError(401, "unauthorized", "this server needs a token: send the header 'Authorization: Bearer "
                       "TOKEN' with the token it was started with (--token)", {"WWW-Authenticate": "Bearer"})


def _add_api_routes(app: FastAPI, models: dict[str, ServedModel], queues: dict[str, DeviceQueue],
                    settings: ServeSettings) -> None:
    @app.get("/healthz", summary="Liveness: answers while translations run (503 once stopping); needs no token")
    async def healthz() -> JSONResponse:
        closing = any(queue.closing for queue in queues.values())
        return JSONResponse({"status": "shutting_down" if closing else "ok", "models": len(models),
                             "queued": sum(queue.admitted for queue in queues.values()),
                             "translating": sum(queue.translating for queue in queues.values())},
                            503 if closing else 200)

    @app.get("/v1/models", summary="The models served: names, directions, channels, source",
             responses={401: {"model": ErrorBody}})
    async def list_models(request: Request) -> dict[str, object]:
        _check_token(request, settings)
        return {"models": [model.describe() for model in models.values()],
                "limits": {"max_bytes": settings.max_bytes, "max_pixels": settings.max_pixels},
                "formats": list(ENCODINGS)}

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        _check_token(request, settings)
        return JSONResponse(app.openapi())

    @app.post("/v1/translate", summary="Translate one image; returns the translated image",
              response_class=Response, openapi_extra=TRANSLATE_BODY, responses=TRANSLATE_RESPONSES)
    async def translate(request: Request,
                        model: str | None = Query(None, description="A name from /v1/models (optional when one "
                                                  "model is served)"),
                        direction: str | None = Query(None, description="AtoB or BtoA (default: AtoB, or the "
                                                      "model's only direction)"),
                        format: str = Query("png", description="png, jpeg or webp")) -> Response:  # noqa: A002
        _check_token(request, settings)
        served = _pick_model(models, model)
        direction = _pick_direction(served, direction)
        if format not in ENCODINGS:
            raise ApiError(400, "bad_request", f"format={format!r} is not offered; use png, jpeg or webp")
        queue = queues[served.device]
        try:
            async with queue.admit():
                return await _translate(request, served, direction, format, queue, settings)
        except QueueFull as full:
            raise ApiError(503, "busy", f"the server is busy: {queue.capacity} requests are already queued for "
                           f"{queue.name}; retry in {full.retry_after} s", {"Retry-After": str(full.retry_after)}
                           ) from None
        except ShuttingDown:
            raise ApiError(503, "shutting_down", "the server is shutting down; send the request again (to another "
                           "instance, or once it is back)", {"Retry-After": "5", "Connection": "close"}) from None


async def _translate(request: Request, served: ServedModel, direction: str, encoding: str, queue: DeviceQueue,
                     settings: ServeSettings) -> Response:
    translator = served.translator
    upload = await read_upload(request, settings.max_bytes)
    try:
        image = await run_in_threadpool(decode_image, upload.data, translator.source_channels(direction),
                                        settings.max_pixels, upload.described)
    except ImageTooLarge as error:
        raise ApiError(413, "too_large", str(error)) from None
    except ImageError as error:
        raise ApiError(400, "not_an_image", str(error)) from None

    def work():
        return translator.translate_images([image], direction, max_memory=settings.max_memory)[0]

    try:
        timed = await queue.run(work)
    except TranslationError as error:
        raise ApiError(400, "bad_request", str(error)) from None
    body = await run_in_threadpool(encode_image, timed.value, encoding)
    headers = {"X-Translation-Seconds": f"{timed.run_seconds:.3f}", "X-Queue-Seconds": f"{timed.queue_seconds:.3f}",
               "Server-Timing": f"queue;dur={timed.queue_seconds * 1000:.1f}, "
                                f"translate;dur={timed.run_seconds * 1000:.1f}",
               "Content-Disposition": f'inline; filename="{upload.stem}_{direction}.{encoding}"'}
    return Response(body, media_type=ENCODINGS[encoding][1], headers=headers)


def _pick_model(models: dict[str, ServedModel], name: str | None) -> ServedModel:
    if name is None:
        if len(models) == 1:
            return next(iter(models.values()))
        raise ApiError(400, "bad_request", f"name the model: ?model= one of {', '.join(models)}")
    if name not in models:
        shown = name if len(name) <= 64 else name[:64] + "..."
        raise ApiError(404, "unknown_model", f"there is no model {shown!r}; use one of {', '.join(models)} "
                       "(GET /v1/models)")
    return models[name]


def _pick_direction(served: ServedModel, direction: str | None) -> str:
    direction = direction or served.default_direction()
    if direction not in ("AtoB", "BtoA"):
        raise ApiError(400, "bad_request", f"direction={direction[:16]!r}; use AtoB or BtoA")
    if direction not in served.directions:
        raise ApiError(400, "bad_request", f"model {served.name!r} translates {' and '.join(served.directions)} "
                       f"only; use direction={served.directions[0]}")
    return direction


_IMAGE_CONTENT = {kind: {"schema": {"type": "string", "format": "binary"}}
                  for kind in ("image/png", "image/jpeg", "image/webp")}
TRANSLATE_BODY = {"requestBody": {"required": True, "description": "The image: its file's bytes as the body, or "
                                  "multipart/form-data with one file field (e.g. `image`).",
                                  "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                      "format": "binary"}},
                                              "multipart/form-data": {"schema": {
                                                  "type": "object", "properties": {"image": {
                                                      "type": "string", "format": "binary"}}}}}}}
TRANSLATE_RESPONSES = {
    200: {"description": "The translated image (X-Translation-Seconds: the model's time)", "content": _IMAGE_CONTENT},
    400: {"model": ErrorBody, "description": "not an image, unsupported mode, or bad parameters"},
    401: {"model": ErrorBody, "description": "a token is needed"},
    404: {"model": ErrorBody, "description": "unknown model"},
    413: {"model": ErrorBody, "description": "too many bytes or pixels"},
    503: {"model": ErrorBody, "description": "the queue is full (see Retry-After), or the server is stopping"},
}
