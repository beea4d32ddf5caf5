"""The server's settings: one frozen dataclass, filled by `cyclegan serve`'s options (cli/serve.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeSettings:
    """Limits and access of one server.

    max_bytes: largest request body accepted (413 above). max_pixels: largest image, checked from its header
    before decoding, so a decompression bomb costs nothing (413 above); 4096 x 4096 by default. queue_size:
    requests that may wait per device while one is translated (503 with Retry-After beyond). max_memory: bytes one
    translation may take; a larger image is translated in exact tiles (tiling/). token: if set, /v1/* and
    /openapi.json need `Authorization: Bearer TOKEN`. cors_origins: origins allowed to call the API from their
    pages (none by default: CORS off).
    """

    max_bytes: int = 50 * 2**20
    max_pixels: int = 4096 * 4096
    queue_size: int = 16
    max_memory: int | None = 2 * 10**9
    token: str | None = None
    cors_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels", "queue_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (0 if name == "queue_size" else 1):
                raise ValueError(f"{name}={value!r}; give a whole number of at least "
                                 f"{0 if name == 'queue_size' else 1}")
        if self.token is not None and not self.token.strip():
            raise ValueError("token is empty; give a long random string (e.g. from `openssl rand -hex 32`) or none")
