"""The HTTP API the ticketing system calls: `create_app()` (uvicorn --factory kesheng.serve.api.app:create_app)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from importlib import metadata

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from kesheng.models import Prediction, TagClassifier
from kesheng.serve.api.model_holder import ModelHolder, ReloadOutcome
from kesheng.serve.api.observability import Metrics, RequestGuard, configure_logging
from kesheng.serve.api.routes import build_router, metrics_route
from kesheng.serve.api.schemas import build_request_models
from kesheng.serve.api.settings import Settings
from kesheng.stores.feedback import FeedbackStore

__all__ = ["create_app"]

log = logging.getLogger("kesheng.serve")

DESCRIPTION = """
客声 kesheng: service-quality tags (响应缓慢 slow_response, 解决不彻底 unresolved, 服务态度 attitude,
信息不透明 opacity; none = 其他) and sentiment for Chinese customer feedback.

`POST /v1/tag` returns, per comment and in request order, the same object as a line of
`kesheng tag`: tags above their thresholds, a probability per tag, sentiment, and evidence spans
whose offsets index the text as sent. Errors are JSON `{"detail": ..., "errors": [{"loc", "msg", "type"}]}`
naming the item, e.g. `comments[3].text`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings if settings is not None else Settings.from_env()
    configure_logging(settings.log_level)
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        holder = ModelHolder(settings.model_dir, settings.escalate_threshold)
        await anyio.to_thread.run_sync(holder.load)
        app.state.holder = holder
        app.state.store = FeedbackStore(settings.feedback_db)
        log.info(
            "serving %s from %s; label store %s; auth %s",
            holder.version, holder.model_dir, settings.feedback_db, "on" if settings.api_keys else "off",
        )
        loop = asyncio.get_running_loop()
        hup_installed = _install_sighup(loop, lambda: loop.create_task(app.state.reload_model(only_if_changed=False)))
        watcher = loop.create_task(_watch(app, settings.reload_check_seconds)) if settings.reload_check_seconds else None
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
            if hup_installed:
                loop.remove_signal_handler(signal.SIGHUP)
            app.state.store.close()

    # The docs page loads Swagger UI from files the package ships, not from a CDN: it works offline.
    app = FastAPIOffline(
        title="客声 kesheng API",
        version=_package_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics

    async def reload_model(only_if_changed: bool) -> ReloadOutcome:
        outcome = await anyio.to_thread.run_sync(lambda: app.state.holder.reload(only_if_changed=only_if_changed))
        state = "reloaded" if outcome.reloaded else ("failed" if outcome.error else "unchanged")
        metrics.reloads.labels(state).inc()
        return outcome

    app.state.reload_model = reload_model
    app.state.predict = _predictor(settings)
    app.add_middleware(RequestGuard, max_body_bytes=settings.max_body_bytes, metrics=metrics)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
    app.include_router(build_router(build_request_models(settings)))
    app.add_api_route(
        "/metrics", metrics_route, methods=["GET"], response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    )
    return app


def _predictor(settings: Settings):
    """Small requests are tagged on the event loop, big ones in a thread so the loop stays free.

    A thread hop costs more than tagging one short comment (GIL handoff), and a process is
    CPU-bound either way: concurrency comes from worker processes, not threads. Small requests
    that arrive together are tagged in one predict call (one vectorized pass instead of many).
    """
    limiter = anyio.CapacityLimiter(settings.predict_threads)
    batcher = _LoopBatcher()

    async def predict(model: TagClassifier, texts: list[str]) -> list[Prediction]:
        if sum(len(t) for t in texts if t) <= settings.inline_chars:
            return await batcher.predict(model, texts)
        return await anyio.to_thread.run_sync(model.predict, texts, limiter=limiter)

    return predict


class _LoopBatcher:
    """Merges the predict calls queued in one event-loop iteration; no timer, so no added wait."""

    def __init__(self):
        self._pending: list[tuple[TagClassifier, list[str], asyncio.Future]] = []

    async def predict(self, model: TagClassifier, texts: list[str]) -> list[Prediction]:
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


def _install_sighup(loop: asyncio.AbstractEventLoop, callback) -> bool:
    # Only possible in the main thread of a single-process server; uvicorn's multi-worker
    # supervisor keeps SIGHUP for itself (use reload_check_seconds there).
    try:
        loop.add_signal_handler(signal.SIGHUP, callback)
    except (NotImplementedError, RuntimeError, ValueError, AttributeError):
        return False
    return True


async def _watch(app: FastAPI, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        await app.state.reload_model(only_if_changed=True)


def _package_version() -> str:
    try:
        return metadata.version("kesheng")
    except metadata.PackageNotFoundError:
        return "0"


def _location(loc: tuple) -> str:
    parts = [p for p in loc if p != "body"] if len(loc) > 1 else list(loc)
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = []
    status = 422
    for error in exc.errors():
        kind = error.get("type", "value_error")
        message = str(error.get("msg", "invalid"))
        loc = tuple(error.get("loc", ()))
        if kind == "json_invalid":
            status = 400
            position = f" at character {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
            message = f"request body is not valid JSON ({error.get('ctx', {}).get('error', message)}{position})"
            loc = ("body",)
        elif loc == ("body",) and kind in ("model_attributes_type", "dict_type", "missing"):
            message = "request body must be a JSON object (Content-Type: application/json)"
        errors.append({"loc": _location(loc), "msg": message, "type": kind})
    if not errors:
        errors.append({"loc": "body", "msg": "invalid request", "type": "value_error"})
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return JSONResponse({"detail": f"{errors[0]['loc']}: {errors[0]['msg']}{more}", "errors": errors}, status_code=status)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = str(exc.detail)
    if isinstance(exc.__cause__, RecursionError):
        detail = "request body is JSON nested too deeply to parse; send a flat {\"comments\": [...]} object"
    errors = [{"loc": "body", "msg": detail, "type": "body_invalid"}] if exc.status_code == 400 else []
    return JSONResponse({"detail": detail, "errors": errors}, status_code=exc.status_code, headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "internal error; see the server log", "errors": []}, status_code=500)
