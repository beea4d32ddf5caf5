"""A bounded queue in front of each device: requests are admitted up to a limit (the rest get 503 at once, before
their bodies are read), then translated one at a time on the device's own thread, off the event loop.

The event loop never runs a model, so it keeps answering `/healthz` and refusing excess requests during a long
translation. A request holds its admission from before its body is read until its answer is ready, so memory is
bounded by (queue_size + 1) requests per device. On shutdown the translation running on each device finishes and
the requests still waiting are rejected (`ShuttingDown`), so stopping takes one translation, not a queue's worth.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class QueueFull(Exception):
    """The device's queue is full; `retry_after` is a guess, in whole seconds, of when it has room."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the queue is full; retry after {retry_after} s")
        self.retry_after = retry_after


class ShuttingDown(Exception):
    """The server is stopping and takes no more work."""


@dataclass(frozen=True)
class Timed:
    """A job's result, with the seconds it waited for the device and the seconds it ran."""

    value: object
    queue_seconds: float
    run_seconds: float


class DeviceQueue:
    """Admission and turn-taking for one device. Call `admit()` around a whole request and `run(fn)` for its
    model call; both are for the event loop's thread only."""

    def __init__(self, name: str, queue_size: int) -> None:
        self.name = name
        self.capacity = queue_size + 1  # the one running, and those waiting
        self.admitted = 0
        self.closing = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"cyclegan-{name}")
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._busy = False
        self._mean_seconds = 1.0  # running mean of translation times, for Retry-After

    @property
    def translating(self) -> bool:
        """Whether this device is running a translation now."""
        return self._busy

    def retry_after(self) -> int:
        return max(1, min(60, math.ceil(self._mean_seconds * max(1, self.admitted))))

    @contextlib.asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Hold a place in this device's queue for one request, or raise QueueFull / ShuttingDown."""
        if self.closing:
            raise ShuttingDown()
        if self.admitted >= self.capacity:
            raise QueueFull(self.retry_after())
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    async def run(self, fn: Callable[[], T]) -> Timed:
        """Wait for this device's turn (first come, first served), then run `fn` on its thread."""
        loop = asyncio.get_running_loop()
        queued = time.perf_counter()
        turn: asyncio.Future[None] = loop.create_future()
        self._waiting.append(turn)
        self._hand_on()
        try:
            await turn
        except BaseException:
            if turn in self._waiting:
                self._waiting.remove(turn)
            elif turn.done() and not turn.cancelled() and turn.exception() is None:
                self._release()  # it was given the turn as it was cancelled: pass it on
            raise
        waited = time.perf_counter() - queued
        try:
            started = time.perf_counter()
            value = await loop.run_in_executor(self._executor, fn)
            seconds = time.perf_counter() - started
            self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * seconds
            return Timed(value, waited, seconds)
        finally:
            self._release()

    def _hand_on(self) -> None:
        while not self._busy and self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                self._busy = True
                turn.set_result(None)

    def _release(self) -> None:
        self._busy = False
        self._hand_on()

    def close(self) -> None:
        """Take no more requests, and reject those waiting for their turn (the running one finishes)."""
        self.closing = True
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_exception(ShuttingDown())

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
