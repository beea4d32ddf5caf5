"""The server's errors: `ApiError` raised anywhere in a request becomes `{"status", "error", "message"}` JSON,
and so does every other failure (unknown address, malformed parameters, a bug: 500, logged, never a traceback)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

logger = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    """Every error's JSON body (for the OpenAPI spec)."""

    status: int
    error: str
    message: str


class ApiError(Exception):
    """An answer other than an image: HTTP status, a short code, a message saying what to do, extra headers."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON answer; the message as a sentence (the library's messages are written for a terminal's
    `cyclegan: error: ...` line), so that a page can show it as it is."""
    message = message[:1].upper() + message[1:]
    message = message if message.endswith((".", "!", "?")) else message + "."
    return JSONResponse({"status": status, "error": code, "message": message}, status, headers=headers)


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.code, error.message, error.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        messages = {404: "there is nothing at this address; the API is described at /docs",
                    405: "this address does not take that method; see /docs"}
        message = messages.get(error.status_code, "the request could not be served; see /docs")
        return error_response(error.status_code, "not_found" if error.status_code == 404 else "bad_request",
                              message, dict(error.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(400, "bad_request", "the request's parameters are malformed; see /docs")

    @app.exception_handler(Exception)
    async def internal(request: Request, error: Exception) -> JSONResponse:
        logger.exception("request %s %s failed", request.method, request.url.path)
        return error_response(500, "internal", "the server failed to answer (its log says why); try again, or "
                              "report it if it keeps happening")
