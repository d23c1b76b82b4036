"""The /v1 routes: a few lines each; the work is in models (predict, the label store)."""

# No `from __future__ import annotations`: FastAPI must see the request classes built per app.

import time

import anyio
from fastapi import APIRouter, HTTPException, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader

from kesheng.models import SENTIMENTS
from kesheng.models.base import FORMAT_VERSION
from kesheng.serve.api.auth import key_refusal
from kesheng.serve.api.schemas import ErrorResponse, FeedbackAccepted, ModelInfo, RequestModels, TagResponse
from kesheng.serve.api.work import ClientGone, Overloaded

__all__ = ["build_router"]

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="Needed only when the server has API keys.")

ERRORS = {
    400: {"model": ErrorResponse, "description": "Body is not JSON / not UTF-8"},
    401: {"model": ErrorResponse, "description": "API key missing"},
    403: {"model": ErrorResponse, "description": "API key not accepted"},
    413: {"model": ErrorResponse, "description": "Body over the size limit, or more characters than a request may hold"},
    422: {"model": ErrorResponse, "description": "Which item is invalid and why"},
}
OVERLOADED = {
    503: {
        "model": ErrorResponse,
        "description": "The worker is busy or the request missed its deadline: retry after the `Retry-After` header's seconds",
        "headers": {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}},
    }
}
# What a client that closed its connection is logged with (nginx's code): no answer reaches it.
CLIENT_CLOSED = 499


def _check_key(presented: str | None, accepted: frozenset[str], what: str) -> None:
    refusal = key_refusal(presented, accepted, what)
    if refusal is not None:
        status, detail = refusal
        raise HTTPException(status, detail, headers={"WWW-Authenticate": "ApiKey"} if status == 401 else None)


# Dependencies are async: a sync one would cost a thread hop on every request. The request guard
# has already refused a request without a valid key before reading its body; these say so in OpenAPI.
async def require_api_key(request: Request, key: str | None = Security(api_key_header)) -> None:
    accepted = request.app.state.settings.api_keys
    if accepted:
        _check_key(key, accepted | request.app.state.settings.admin_keys, "API key")


async def require_admin_key(request: Request, key: str | None = Security(api_key_header)) -> None:
    accepted = request.app.state.settings.admin_keys
    if not accepted:
        raise HTTPException(403, "admin endpoints are disabled: set KESHENG_ADMIN_KEYS (or reload with SIGHUP)")
    _check_key(key, accepted, "admin key")


def build_router(request_models: RequestModels) -> APIRouter:
    TagRequest = request_models.tag_request
    FeedbackRequest = request_models.feedback_request
    router = APIRouter(prefix="/v1")

    @router.post(
        "/tag", response_model=TagResponse, responses={**ERRORS, **OVERLOADED}, dependencies=[Security(require_api_key)]
    )
    async def tag(body: TagRequest, request: Request):
        """Tags, scores, sentiment, escalation and evidence per comment: one result per comment, in order."""
        settings = request.app.state.settings
        texts = [comment.text for comment in body.comments]
        chars = sum(len(t) for t in texts if t)
        if chars > settings.max_request_chars:
            raise HTTPException(
                413, f"the comments hold {chars:,} characters in all; a request may hold {settings.max_request_chars:,} "
                "(KESHENG_MAX_REQUEST_CHARS): send them in several requests",
            )
        model = request.app.state.holder.model  # one model for the whole request, even during a reload
        # The deadline runs from the request's arrival (the guard's clock), body reading included.
        deadline = request.scope.get("state", {}).get("arrived", time.monotonic()) + settings.request_deadline_seconds
        try:
            predictions = await request.app.state.predictor.predict(model, texts, deadline, request.is_disconnected)
        except Overloaded as exc:
            request.app.state.metrics.refused.labels(exc.reason).inc()
            raise HTTPException(503, exc.detail, headers={"Retry-After": str(settings.retry_after_seconds)}) from None
        except ClientGone:
            request.app.state.metrics.refused.labels("client_gone").inc()
            return Response(status_code=CLIENT_CLOSED)
        request.app.state.metrics.record_predictions(predictions)
        results = [p.to_dict(comment.id) for p, comment in zip(predictions, body.comments, strict=True)]
        return JSONResponse({"model_version": str(model.meta_["model_version"]), "results": results})

    @router.post(
        "/feedback", status_code=201, response_model=FeedbackAccepted,
        responses={**ERRORS, 503: {"model": ErrorResponse, "description": "The label store cannot take writes (disk full, read-only): nothing was stored; retry later"}},
        dependencies=[Security(require_api_key)],
    )
    def feedback(body: FeedbackRequest, request: Request):
        """An agent's corrected labels for a comment; stored durably before the 201 is sent."""
        taxonomy = request.app.state.holder.model.taxonomy_
        tags = []
        for i, name in enumerate(body.tags):
            if name not in taxonomy.names and name not in {t.zh for t in taxonomy.tags}:
                message = f"unknown tag {name!r}; this model's tags: {list(taxonomy.names)} (or their Chinese names)"
                raise RequestValidationError([{"type": "value_error", "loc": ("body", "tags", i), "msg": message}])
            tags.append(taxonomy.label_name(name))  # Chinese names are accepted, as in Label Studio imports
        record = request.app.state.store.append(
            text=body.text, tags=tags, judged_tags=taxonomy.names, sentiment=body.sentiment,
            comment_id=None if body.id is None else str(body.id), model_version=body.model_version,
            annotator=body.annotator, note=body.note, escalate=body.escalate,
        )
        request.app.state.metrics.feedback.inc()
        return FeedbackAccepted(feedback_id=record.seq, received_at=record.received_at, judged_tags=list(record.judged_tags))

    @router.get("/model", response_model=ModelInfo, responses=ERRORS, dependencies=[Security(require_api_key)])
    async def model_info(request: Request):
        """The model serving now: version, type, tags with Chinese names and thresholds, metrics."""
        holder = request.app.state.holder
        model = holder.model
        labels = [
            {"name": t.name, "zh": t.zh, "description": t.description, "threshold": model.thresholds_[t.name]}
            for t in model.taxonomy_.tags
        ]
        return ModelInfo(
            model_version=str(model.meta_["model_version"]), model_type=model.model_type,
            format_version=int(model.meta_.get("format_version", FORMAT_VERSION)), labels=labels,
            sentiments=list(SENTIMENTS), metrics=model.metrics_, loaded_at=holder.loaded_at or "",
            escalate=None if not model.has_escalate else {
                "threshold": model.escalate_threshold, "model_threshold": model.escalate_threshold_,
                "overridden": model.escalate_threshold_override is not None,
            },
        )

    @router.get("/health")
    async def health():
        """Liveness: the process answers."""
        return {"status": "ok"}

    @router.get("/ready", responses={503: {"model": ErrorResponse, "description": "No working model, or the label store cannot take writes"}})
    async def ready(request: Request):
        """Readiness: a model is loaded and answered its self-check, and the label store takes writes."""
        holder = getattr(request.app.state, "holder", None)
        if holder is None or not holder.ready:
            raise HTTPException(503, "model not loaded")
        problem = await anyio.to_thread.run_sync(request.app.state.store.write_problem)
        if problem is not None:
            raise HTTPException(503, f"label store cannot take writes: {problem}")
        return {"status": "ready", "model_version": holder.version}

    async def probe_options():
        return Response(status_code=204, headers={"Allow": "GET, HEAD, OPTIONS"})

    # Load balancers probe with HEAD, and some with OPTIONS; kept out of the schema (one operation each).
    for path, handler in (("/health", health), ("/ready", ready)):
        router.add_api_route(path, handler, methods=["HEAD"], include_in_schema=False)
        router.add_api_route(path, probe_options, methods=["OPTIONS"], include_in_schema=False)

    @router.post("/admin/reload", responses=ERRORS, dependencies=[Security(require_admin_key)])
    async def reload(request: Request):
        """Load the model directory again; the old model keeps serving if the new one fails (409)."""
        outcome = await request.app.state.reload_model(only_if_changed=False)
        return JSONResponse(outcome.__dict__, status_code=409 if outcome.error else 200)

    return router


def metrics_route(request: Request) -> Response:
    """Prometheus text format."""
    return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
