"""The HTTP API the ticketing system calls: `create_app()` (uvicorn --factory kesheng.serve.api.app:create_app)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from importlib import metadata

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from kesheng.serve.api.model_holder import ModelHolder, ReloadOutcome
from kesheng.serve.api.observability import Metrics, RequestGuard, configure_logging
from kesheng.serve.api.routes import build_router, metrics_route
from kesheng.serve.api.schemas import build_request_models
from kesheng.serve.api.settings import Settings
from kesheng.serve.api.work import GIL_SWITCH_SECONDS, Predictor
from kesheng.stores.feedback import FeedbackStore, FeedbackStoreError

__all__ = ["create_app"]

log = logging.getLogger("kesheng.serve")

DESCRIPTION = """
客声 kesheng: service-quality tags (响应缓慢 slow_response, 解决不彻底 unresolved, 服务态度 attitude,
信息不透明 opacity; none = 其他) and sentiment for Chinese customer feedback.

`POST /v1/tag` returns, per comment and in request order, the same object as a line of
`kesheng tag`: tags above their thresholds, a probability per tag, sentiment, and evidence spans
whose offsets index the text as sent. Errors are JSON `{{"detail": ..., "errors": [{{"loc", "msg", "type"}}]}}`
naming the item, e.g. `comments[3].text`.

**Limits** (this server's settings): {max_comments:,} comments and {max_text_chars:,} characters per comment,
{max_request_chars:,} characters per request in all (413 over it: split the batch), bodies up to
{max_body_bytes:,} bytes. Each request is answered within {deadline:g} s of its arrival: a worker
that is busy, or a request it cannot finish in time, is answered **503 with `Retry-After`**
({retry_after} s): retry then, or send fewer characters. Work stops when the client disconnects.

**Keys**: with `KESHENG_API_KEYS` set, every /v1 route but /v1/health and /v1/ready needs one in
`X-API-Key` (401 missing, 403 wrong), checked before the body is read; /metrics and these docs need
an API, admin or `KESHENG_METRICS_KEYS` key (`X-API-Key` or `Authorization: Bearer`).
"""


def create_app(settings: Settings | None = None, holder: ModelHolder | None = None) -> FastAPI:
    """The app; `holder`: a model already loaded and checked (`kesheng serve` with one worker), else loaded at startup."""
    settings = settings if settings is not None else Settings.from_env()
    configure_logging(settings.log_level)
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.store = FeedbackStore(settings.feedback_db)  # before the holder: readiness reads both
        loaded = holder
        if loaded is None:
            loaded = ModelHolder(settings.model_dir, settings.escalate_threshold)
            await anyio.to_thread.run_sync(loaded.load)
        app.state.holder = loaded
        log.info("serving %s from %s; label store %s", loaded.version, loaded.model_dir, settings.feedback_db)
        if settings.api_keys:
            log.info("auth on: /v1 routes need one of %d API keys", len(settings.api_keys))
        else:
            # Loud on purpose: an open API is a deliberate choice, never a silent default in production.
            log.warning("auth OFF: KESHENG_API_KEYS is not set, so anyone who reaches this port can call every /v1 route")
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
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
            app.state.predictor.close()

    # The docs page loads Swagger UI from files the package ships, not from a CDN: it works offline.
    app = FastAPIOffline(
        title="客声 kesheng API",
        version=_package_version(),
        description=DESCRIPTION.format(
            max_comments=settings.max_comments, max_text_chars=settings.max_text_chars,
            max_request_chars=settings.max_request_chars, max_body_bytes=settings.max_body_bytes,
            deadline=settings.request_deadline_seconds, retry_after=settings.retry_after_seconds,
        ),
        lifespan=lifespan,
        # No redirect from /v1/tag/ to /v1/tag: Starlette builds that Location from the Host header.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.metrics = metrics

    async def reload_model(only_if_changed: bool) -> ReloadOutcome:
        outcome = await anyio.to_thread.run_sync(lambda: app.state.holder.reload(only_if_changed=only_if_changed))
        state = "reloaded" if outcome.reloaded else ("failed" if outcome.error else "unchanged")
        metrics.reloads.labels(state).inc()
        return outcome

    app.state.reload_model = reload_model
    app.state.predictor = Predictor(settings)
    app.add_middleware(RequestGuard, settings=settings, metrics=metrics, predictor=app.state.predictor)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(FeedbackStoreError, _store_error)
    app.add_exception_handler(Exception, _internal_error)
    app.include_router(build_router(build_request_models(settings)))
    app.add_api_route(
        "/metrics", metrics_route, methods=["GET"], response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    )
    return app


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
    kind = {400: "body_invalid", 413: "request_too_large", 503: "overloaded"}.get(exc.status_code)
    errors = [{"loc": "body", "msg": detail, "type": kind}] if kind else []
    return JSONResponse({"detail": detail, "errors": errors}, status_code=exc.status_code, headers=exc.headers)


async def _store_error(request: Request, exc: FeedbackStoreError) -> JSONResponse:
    # A known condition (disk full, read-only file): one line in the log, not a traceback, and a
    # 503 that says the correction was not stored, so the caller keeps it and sends it again.
    log.error("label store refused a write on %s: %s", request.url.path, exc)
    detail = f"the label store cannot take corrections now ({exc}); nothing was stored: send it again later"
    return JSONResponse(
        {"detail": detail, "errors": [{"loc": "body", "msg": detail, "type": "store_unavailable"}]},
        status_code=503, headers={"Retry-After": str(request.app.state.settings.retry_after_seconds)},
    )


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    # Not logged here: Starlette re-raises after this answer and the server logs the traceback once.
    return JSONResponse({"detail": "internal error; see the server log", "errors": []}, status_code=500)
