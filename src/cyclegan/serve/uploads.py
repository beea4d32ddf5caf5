"""A request's image: its raw body, or the one file of a multipart form, read with a byte limit so that an
oversized upload is refused (413) without being held in memory."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi import Request
from starlette.formparsers import MultiPartException, MultiPartParser

from ..io.images import printable_path
from .errors import ApiError


@dataclass(frozen=True)
class Upload:
    """An uploaded image's bytes, and its file's name where a form gave one (its last part only)."""

    data: bytes
    filename: str | None = None

    @property
    def described(self) -> str:
        """How messages name it."""
        return f"the upload {self.filename!r}" if self.filename else "the upload"

    @property
    def stem(self) -> str:
        """A safe stem for the output's file name: "my photo.jpg" -> my_photo."""
        stem = (self.filename or "").rsplit(".", 1)[0]
        return re.sub(r"[^A-Za-z0-9_.-]", "_", stem)[:80].strip("._") or "translated"


async def read_upload(request: Request, max_bytes: int) -> Upload:
    """The uploaded image. Raises ApiError 413 past `max_bytes` (declared or sent), 400 for a form without a
    file."""
    too_large = ApiError(413, "too_large", f"the upload is larger than this server's limit of {max_bytes} bytes; "
                         "send a smaller file (the limit is --max-bytes)")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        return Upload(bytes(body))
    return await _form_file(request, bytes(body), max_bytes)


async def _form_file(request: Request, body: bytes, max_bytes: int) -> Upload:
    async def stream():
        yield body

    try:
        form = await MultiPartParser(request.headers, stream(), max_files=1, max_fields=16,
                                     max_part_size=max_bytes).parse()
    except MultiPartException as error:
        raise ApiError(400, "bad_request", f"the multipart form cannot be read ({error}); send one file field "
                       "named image, or the image's bytes as the body") from None
    try:
        files = [value for value in form.values() if not isinstance(value, str)]
        if not files:
            raise ApiError(400, "bad_request", "the form holds no file; send the image as a file field named "
                           "image, or its bytes as the body")
        upload = files[0]
        data = await upload.read()
        name = printable_path(upload.filename or "").replace("\\", "/").rsplit("/", 1)[-1][:120]
        return Upload(data, name or None)
    finally:
        await form.close()
