"""How a worker process spends its CPU and memory on /v1/tag: bounded per request and in all.

Small requests are tagged on the event loop, merged when they arrive together. Bigger ones are
admitted while the characters already admitted in this process stay under a budget (else 503 with
Retry-After at once: never an unbounded queue), then tagged in chunks of a few thousand
characters, so that memory follows the chunk and not the request, and between chunks the work
stops when the request's deadline has passed or its client has gone.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Awaitable, Callable, Iterator, Sequence

import anyio

from kesheng.models import Prediction, TagClassifier
from kesheng.serve.api.settings import Settings

__all__ = ["ClientGone", "Overloaded", "Predictor", "text_chunks"]


class Overloaded(Exception):
    """The request was not (or not fully) tagged: the worker is busy or the deadline passed; answer 503."""

    def __init__(self, detail: str, reason: str):
        super().__init__(detail)
        self.detail = detail
        self.reason = reason  # "busy" or "deadline": the metrics label


class ClientGone(Exception):
    """The client closed the connection; the rest of its request was not tagged."""


def text_chunks(texts: Sequence[str | None], max_chars: int) -> Iterator[list[str | None]]:
    """Consecutive runs of texts of at most max_chars characters in all (a longer text is a run alone)."""
    run: list[str | None] = []
    size = 0
    for text in texts:
        length = len(text) if text else 0
        if run and size + length > max_chars:
            yield run
            run, size = [], 0
        run.append(text)
        size += length
    if run:
        yield run


class Predictor:
    """The /v1/tag work policy of one worker process (see the module docstring)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        # Threads of their own for big requests, each holding one chunk (this bounds the memory of
        # tagging), at a lower CPU priority than the event loop that answers small requests.
        self.threads = ThreadPoolExecutor(settings.predict_threads, thread_name_prefix="kesheng-predict", initializer=_lower_priority)
        self.batcher = _LoopBatcher()
        # Characters of admitted threaded requests not tagged yet; only the event loop changes it.
        self.pending_chars = 0
        # This process's recent tagging speed (characters per second of a chunk, wall clock, so
        # CPU contention counts); None until a chunk has been tagged.
        self.chars_per_second: float | None = None

    def close(self) -> None:
        self.threads.shutdown(wait=False, cancel_futures=True)

    def _busy(self, chars: int) -> bool:
        """Admitting `chars` more would exceed the budget, or the deadline at the speed measured lately.

        An idle worker admits any request the character budget allows: the speed is only a guess.
        """
        if not self.pending_chars:
            return False
        after = self.pending_chars + chars
        if after > self.settings.max_pending_chars:
            return True
        return self.chars_per_second is not None and after / self.chars_per_second > DEADLINE_SHARE * self.settings.request_deadline_seconds

    def surely_busy(self, body_bytes: int) -> bool:
        """True when a body this big would be refused (503) after parsing anyway: refuse it before reading.

        JSON spends at most 6 bytes on a character (a \\uXXXX escape), so the body holds at least
        body_bytes / 6 characters. A body that may hold a small request is always read: small requests
        are tagged on the event loop, outside admission.
        """
        chars = body_bytes // 6
        return chars > self.settings.inline_chars and self._busy(chars)

    def busy_message(self) -> str:
        settings = self.settings
        speed = f", about {self.pending_chars / self.chars_per_second:.1f} s of work" if self.chars_per_second else ""
        return (
            f"this worker is busy ({self.pending_chars:,} characters waiting to be tagged{speed}; it admits up to "
            f"{settings.max_pending_chars:,} (KESHENG_MAX_PENDING_CHARS) that it can tag within the deadline); "
            f"retry after {settings.retry_after_seconds} s"
        )

    async def predict(
        self, model: TagClassifier, texts: list[str | None], deadline: float, disconnected: Callable[[], Awaitable[bool]]
    ) -> list[Prediction]:
        """One prediction per text, in order; raises Overloaded or ClientGone instead of finishing late."""
        settings = self.settings
        chars = sum(len(t) for t in texts if t)
        if chars <= settings.inline_chars:
            # A thread hop costs more than tagging one short comment (GIL handoff).
            return await self.batcher.predict(model, texts)
        if self._busy(chars):
            raise Overloaded(self.busy_message(), "busy")
        self.pending_chars += chars
        left = chars
        try:
            results: list[Prediction] = []
            for chunk in text_chunks(texts, settings.predict_chunk_chars):
                # Waiting for a thread is cancelled at the deadline; a chunk already running finishes
                # (a fraction of a second) and its result is dropped.
                timed = None
                with anyio.move_on_after(deadline - time.monotonic()):
                    timed = await asyncio.get_running_loop().run_in_executor(self.threads, _timed_predict, model, chunk)
                if timed is None or time.monotonic() > deadline:
                    raise Overloaded(self._late_message(), "deadline")
                part, seconds = timed
                done = sum(len(t) for t in chunk if t)
                self._measured(done, seconds)
                self.pending_chars -= done
                left -= done
                if left and self.chars_per_second and left / self.chars_per_second > deadline - time.monotonic():
                    # Even alone it would finish late: stop now and leave the CPU to work that can finish.
                    raise Overloaded(self._late_message(), "deadline")
                results.extend(part)
                if len(results) < len(texts) and await disconnected():
                    raise ClientGone()
            return results
        finally:
            self.pending_chars -= left
            if not self.pending_chars:
                _return_freed_memory()

    def _late_message(self) -> str:
        settings = self.settings
        return (
            f"not tagged within the {settings.request_deadline_seconds:g} s deadline (KESHENG_REQUEST_DEADLINE_SECONDS): "
            f"the server is busy; retry after {settings.retry_after_seconds} s or send fewer characters per request"
        )

    def _measured(self, chars: int, seconds: float) -> None:
        speed = chars / max(seconds, 1e-6)
        previous = self.chars_per_second
        self.chars_per_second = speed if previous is None else SPEED_WEIGHT * speed + (1 - SPEED_WEIGHT) * previous


def _timed_predict(model: TagClassifier, texts: list[str | None]) -> tuple[list[Prediction], float]:
    started = time.perf_counter()
    return model.predict(texts), time.perf_counter() - started


class _LoopBatcher:
    """Merges the predict calls queued in one event-loop iteration; no timer, so no added wait."""

    def __init__(self):
        self._pending: list[tuple[TagClassifier, list[str | None], asyncio.Future]] = []

    async def predict(self, model: TagClassifier, texts: list[str | None]) -> list[Prediction]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((model, texts, future))
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        by_model: dict[int, list] = {}
        for item in pending:  # a reload may put two models in one iteration
            by_model.setdefault(id(item[0]), []).append(item)
        for items in by_model.values():
            texts = [text for _, item_texts, _ in items for text in item_texts]
            try:
                predictions = items[0][0].predict(texts)
            except Exception as exc:  # noqa: BLE001 - handed to each waiting request
                for _, _, future in items:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for _, item_texts, future in items:
                if not future.done():
                    future.set_result(predictions[start : start + len(item_texts)])
                start += len(item_texts)


# Admitted work must fit in this share of the deadline at the measured speed; the rest of the
# deadline absorbs a slower chunk and the answer's own time.
DEADLINE_SHARE = 0.8
# Weight of the newest chunk in the measured speed (an exponential moving average): a few chunks
# follow a change of load, one odd chunk does not swing it.
SPEED_WEIGHT = 0.3

# How often (seconds) the thread holding the GIL hands it over: the event loop waits at most this
# long for a tagging thread before answering a small request (Python's default is 5 ms).
GIL_SWITCH_SECONDS = 0.001

# Niceness of the tagging threads: under a CPU shortage the kernel runs the event loop (small
# requests, health checks) first. Linux renices one thread by its id; elsewhere nothing changes.
PREDICT_THREAD_NICENESS = 5


def _lower_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PREDICT_THREAD_NICENESS)
    except (OSError, AttributeError):
        pass


def _load_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


_malloc_trim = _load_malloc_trim()


def _return_freed_memory() -> None:
    # glibc keeps the heap pages a big request freed; giving them back when the worker goes idle
    # keeps its resident size near its start instead of at its peak (a millisecond or so).
    if _malloc_trim is not None:
        _malloc_trim(0)
