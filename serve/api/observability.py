"""Prometheus metrics, JSON logs, and the ASGI guard every request passes through.

The guard is plain ASGI (not BaseHTTPMiddleware) because it runs on every request: it checks the
key before reading the body and reads the body itself, so a request without a valid key or with
an oversized body is refused before anything parses it, and a slow or vanished client only ever
holds an await, never a worker thread.
"""

from __future__ import annotations

import collections
import ipaddress
import json
import logging
import os
import re
import time
import uuid
from typing import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest, multiprocess

from kesheng.models import Prediction
from kesheng.serve.api.auth import access_rule, key_refusal, presented_key
from kesheng.serve.api.settings import Settings
from kesheng.serve.api.work import Predictor

__all__ = ["JsonFormatter", "Metrics", "RequestGuard", "configure_logging"]

access_log = logging.getLogger("kesheng.access")

# The *_created series double the output for no use in dashboards.
disable_created_metrics()

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
# Label values are bounded: arbitrary methods or paths from scanners must not grow the series.
_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: easy for log shippers, no parsing rules to maintain."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    for name in ("kesheng", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    # Our access log replaces uvicorn's plain-text one.
    logging.getLogger("uvicorn.access").disabled = True


class Metrics:
    """Request, latency, comment, tag and sentiment counters for one app.

    With several worker processes (PROMETHEUS_MULTIPROC_DIR set, as `kesheng serve --workers N`
    does) the values live in shared files and /metrics aggregates all workers.
    """

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("kesheng_http_requests", "HTTP requests", ["method", "route", "status"], registry=r)
        self.latency = Histogram(
            "kesheng_http_request_seconds", "Request latency", ["route"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.comments = Counter("kesheng_comments_tagged", "Comments tagged", registry=r)
        self.tags = Counter("kesheng_tags_assigned", "Tags assigned, per tag", ["tag"], registry=r)
        self.sentiments = Counter("kesheng_sentiments", "Sentiments predicted", ["sentiment"], registry=r)
        self.escalations = Counter("kesheng_escalations", "Comments flagged escalate=true (need a person now)", registry=r)
        self.feedback = Counter("kesheng_feedback_stored", "Corrections stored in the label store", registry=r)
        self.reloads = Counter("kesheng_model_reloads", "Model reload attempts", ["outcome"], registry=r)
        self.refused = Counter(
            "kesheng_tag_requests_stopped", "/v1/tag requests not tagged in full: busy (503), deadline (503), client_gone",
            ["reason"], registry=r,
        )

    def record_predictions(self, predictions: Iterable[Prediction]) -> None:
        # Counted first: each labels().inc() takes a lock (and writes a file in multiprocess mode).
        tags: collections.Counter[str] = collections.Counter()
        sentiments: collections.Counter[str] = collections.Counter()
        comments = escalations = 0
        for prediction in predictions:
            comments += 1
            escalations += prediction.escalate is True
            tags.update(prediction.tags)
            if prediction.sentiment is not None:
                sentiments[prediction.sentiment] += 1
        for tag, count in tags.items():
            self.tags.labels(tag).inc(count)
        for sentiment, count in sentiments.items():
            self.sentiments.labels(sentiment).inc(count)
        self.comments.inc(comments)
        if escalations:
            self.escalations.inc(escalations)

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            return generate_latest(merged)
        return generate_latest(self.registry)


class RequestGuard:
    """Keys, body size limit, request id, security headers, latency metrics and one access-log line per request."""

    def __init__(self, app, settings: Settings, metrics: Metrics, predictor: Predictor):
        self.app = app
        self.settings = settings
        self.predictor = predictor
        self.max_body_bytes = settings.max_body_bytes
        self.metrics = metrics
        self.trusted_proxies = tuple(ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # The request's deadline runs from here (routes read it from the scope state).
        scope.setdefault("state", {})["arrived"] = time.monotonic()
        raw_headers = scope.get("headers") or []
        headers = dict(raw_headers)
        supplied_id = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = supplied_id if _REQUEST_ID.match(supplied_id) else uuid.uuid4().hex
        status = 500

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # nosniff: a browser never runs a JSON error that echoes input as HTML or script.
                extra = [(b"x-request-id", request_id.encode()), (b"x-content-type-options", b"nosniff")]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            refusal = self._key_refusal(scope["path"], raw_headers)
            if refusal is not None:
                code, detail, kind = refusal
                await _send_json(send_with_id, code, _error(detail, kind), [(b"www-authenticate", b"ApiKey")] if code == 401 else [])
                return
            coding = headers.get(b"content-encoding", b"identity").decode("latin-1").strip().lower()
            if coding not in ("", "identity"):
                # Decompressing would let a small body expand without bound past the size limit.
                detail = f"Content-Encoding {coding!r} is not accepted: send the JSON uncompressed (UTF-8)"
                await _send_json(send_with_id, 415, _error(detail, "unsupported_content_encoding"))
                return
            declared = headers.get(b"content-length", b"")
            if scope["path"] == "/v1/tag" and declared.isdigit() and self.predictor.surely_busy(int(declared)):
                # Reading and parsing a big body only to refuse it would spend the CPU admission saves.
                self.metrics.refused.labels("busy").inc()
                retry = [(b"retry-after", str(self.settings.retry_after_seconds).encode())]
                await _send_json(send_with_id, 503, _error(self.predictor.busy_message(), "overloaded"), retry)
                return
            body, refusal_text = await self._read_body(headers, receive)
            if refusal_text is not None:
                await _send_json(send_with_id, 413, _error(refusal_text, "body_too_large"))
            elif body and (encoding_problem := _not_utf8(body)):
                await _send_json(send_with_id, 400, _error(encoding_problem, "body_not_utf8"))
            elif body is not None:
                await self.app(scope, _replay(body, receive), send_with_id)
        finally:
            route = scope.get("route")
            route_path = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - started
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.metrics.requests.labels(method, route_path, str(status)).inc()
            self.metrics.latency.labels(route_path).observe(elapsed)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "request",
                    extra={
                        "fields": {
                            "request_id": request_id,
                            "method": scope["method"],
                            "path": scope["path"],
                            "status": status,
                            "ms": round(elapsed * 1000, 2),
                            "client": self._client(scope, headers),
                        }
                    },
                )

    def _key_refusal(self, path: str, raw_headers: list[tuple[bytes, bytes]]) -> tuple[int, str, str] | None:
        """(status, message, error type) when the path needs a key this request lacks; checked before the body is read."""
        rule = access_rule(self.settings, path)
        if rule is None:
            return None
        if rule.disabled is not None:
            return 403, rule.disabled, "forbidden"
        key, problem = presented_key(raw_headers, rule.bearer)
        if problem is not None:
            return 401, problem, "unauthorized"
        refusal = key_refusal(key, rule.accepted, rule.what)
        if refusal is None:
            return None
        return refusal[0], refusal[1], "unauthorized" if refusal[0] == 401 else "forbidden"

    def _client(self, scope, headers: dict) -> str:
        """The peer's address; behind a trusted proxy, the last address its X-Forwarded-For chain did not add itself."""
        peer = (scope.get("client") or ("", 0))[0]
        forwarded = headers.get(b"x-forwarded-for")
        if not forwarded or not self._trusted(peer):
            return peer
        hops = [hop.strip() for hop in forwarded.decode("latin-1").split(",") if hop.strip()]
        # Read from the right: each trusted proxy appended the address it saw; the first
        # untrusted one is the client (anything left of it is whatever the client claimed).
        for hop in reversed(hops):
            if not self._trusted(hop):
                return hop[:64]
        return peer

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted_proxies)

    async def _read_body(self, headers: dict, receive) -> tuple[bytes | None, str | None]:
        """(body, None), (None, why refused), or (None, None) when the client went away."""
        limit = self.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return None, "invalid Content-Length header"
            if int(declared) > limit:
                return None, f"request body is {int(declared)} bytes; the limit is {limit} (KESHENG_MAX_BODY_BYTES)"
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None, None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None, f"request body exceeds the limit of {limit} bytes (KESHENG_MAX_BODY_BYTES)"
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None


def _not_utf8(body: bytes) -> str | None:
    # JSON on the wire is UTF-8 (RFC 8259); say so instead of a generic parse error.
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"request body is not UTF-8: byte 0x{body[exc.start]:02x} at offset {exc.start} (send UTF-8 JSON)"
    return None


def _replay(body: bytes, receive):
    delivered = False

    async def replay():
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _error(detail: str, kind: str) -> dict:
    """The error body every route uses: a sentence, and the item list validation errors have."""
    return {"detail": detail, "errors": [{"loc": "body", "msg": detail, "type": kind}]}


async def _send_json(send, status: int, payload: dict, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})
