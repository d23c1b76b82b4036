"""API settings, read from KESHENG_* environment variables (what `kesheng serve` sets too)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = ["Settings", "SettingsError"]

ENV_PREFIX = "KESHENG_"
# Comma-separated key lists; one set but holding no key is refused (fail closed).
KEY_SETTINGS = ("api_keys", "admin_keys", "metrics_keys")


def _env_key(field_name: str) -> str:
    # The model directory shares its variable with the CLI's default-model lookup.
    return ENV_PREFIX + ("MODEL" if field_name == "model_dir" else field_name.upper())


class SettingsError(ValueError):
    """An environment variable has a value the service cannot use."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    # None: $KESHENG_MODEL's fallback, the bundled model. Env: KESHENG_MODEL
    model_dir: Path | None = None
    # A ticket batch larger than this is refused (413) rather than holding a worker for seconds.
    max_comments: int = Field(256, ge=1, le=100_000)
    # Longer comments are refused with the item's index; the tagger itself has no length limit.
    max_text_chars: int = Field(5_000, ge=1, le=10_000_000)
    # Refused before parsing. The default fits max_comments x max_text_chars with JSON's \uXXXX escapes.
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    # Empty: no authentication. Otherwise every /v1 call except health/ready needs one (X-API-Key).
    api_keys: frozenset[str] = frozenset()
    # Keys allowed to call /v1/admin/*; empty disables the admin endpoints (SIGHUP still reloads).
    admin_keys: frozenset[str] = frozenset()
    # SQLite label store that /v1/feedback appends to and retraining reads.
    feedback_db: Path = Path("kesheng_feedback.sqlite3")
    # Poll the model directory this often and reload when its model_version changes (0: never),
    # the way to reload every worker of a multi-process server at once, e.g. after `promote`.
    reload_check_seconds: float = Field(0.0, ge=0.0)
    # Characters in all the comments of one /v1/tag request (about a second of CPU for the
    # baseline): over it the request is refused (413) before any tagging, so one request cannot
    # hold a worker for long. Bounds what max_comments x max_text_chars would allow.
    max_request_chars: int = Field(100_000, ge=1, le=100_000_000)
    # Characters tagged per predict call: memory is bounded by this, not by the request, and the
    # deadline and a client that went away are checked between chunks (about 0.1 s apart).
    predict_chunk_chars: int = Field(10_000, ge=100, le=10_000_000)
    # Characters of admitted threaded requests (tagging or waiting) per worker process; a request
    # that would go over is answered 503 with Retry-After at once instead of queueing without bound.
    max_pending_chars: int = Field(200_000, ge=1, le=1_000_000_000)
    # Seconds a request may take from arrival to answer; past it the work stops and the answer is
    # 503 with Retry-After (the server is overloaded: retry later or send less).
    request_deadline_seconds: float = Field(10.0, gt=0.0, le=3600.0)
    # Retry-After (seconds) sent with every 503 for overload or a missed deadline.
    retry_after_seconds: int = Field(2, ge=1, le=3600)
    # Seconds a stopping server (SIGTERM) waits for requests in flight; above the deadline so that
    # every admitted request finishes with its own answer instead of being cut off.
    graceful_timeout_seconds: float = Field(15.0, gt=0.0, le=3600.0)
    # Keys for /metrics and the docs (/docs, /redoc, /openapi.json), as X-API-Key or
    # "Authorization: Bearer <key>" (what Prometheus sends). API and admin keys are accepted there
    # too: with any key configured those pages are closed unless open_metrics_and_docs is set.
    metrics_keys: frozenset[str] = frozenset()
    # True: /metrics and the docs stay open even when keys are set (a scraper on a private network).
    open_metrics_and_docs: bool = False
    # Peers (IP addresses or networks, comma-separated) whose X-Forwarded-For names the client in
    # the access log; any other peer is logged as itself, so a client cannot forge its address.
    trusted_proxies: tuple[str, ...] = ()
    # Requests with at most this many characters in all are tagged on the event loop (a few ms
    # for the baseline); bigger ones go to a thread so health checks and small requests keep flowing.
    inline_chars: int = Field(1_000, ge=0)
    # Threads tagging big requests in one process, each one chunk at a time. One: more would only
    # share the GIL, and take it more often from the event loop that answers small requests
    # (admitted requests take turns chunk by chunk).
    predict_threads: int = Field(1, ge=1, le=64)
    # uvicorn worker processes (used by `kesheng serve`); one model copy each.
    workers: int = Field(1, ge=1, le=64)
    # This deployment's escalate operating point, instead of the model's own (tuned on dev for
    # recall, see its card): lower flags more messages for a person. None: the model's.
    escalate_threshold: float | None = Field(None, ge=0.0, le=1.0)
    # One structured (JSON) log line per request at INFO; WARNING keeps only problems.
    log_level: str = "INFO"

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ValueError(f"trusted_proxies: {entry!r} is not an IP address or network") from exc
        return value

    @model_validator(mode="after")
    def _graceful_after_deadline(self) -> "Settings":
        if self.graceful_timeout_seconds <= self.request_deadline_seconds:
            raise ValueError(
                f"graceful_timeout_seconds ({self.graceful_timeout_seconds:g}) must exceed request_deadline_seconds "
                f"({self.request_deadline_seconds:g}): a stopping server would cut off requests it admitted"
            )
        return self

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("log_level must be DEBUG, INFO, WARNING or ERROR")
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Settings from KESHENG_<FIELD> variables (KESHENG_MODEL for model_dir); keys are comma-separated."""
        environ = os.environ if environ is None else environ
        values: dict = {}
        for name in cls.model_fields:
            key = _env_key(name)
            raw = environ.get(key)
            if raw is None or raw == "":
                continue
            if name in KEY_SETTINGS:
                values[name] = frozenset(k.strip() for k in raw.split(",") if k.strip())
                if not values[name]:
                    # Fail closed: a variable set to "," or " " is a mistake, not "no authentication".
                    raise SettingsError(f"invalid settings: {key} is set but holds no key ({raw!r}); unset it to run without keys")
            elif name == "trusted_proxies":
                values[name] = tuple(p.strip() for p in raw.split(",") if p.strip())
            else:
                values[name] = raw
        values.update(overrides)
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{_env_key(str(e['loc'][0]))}: {e['msg']}" if e["loc"] else str(e["msg"]).removeprefix("Value error, ") for e in exc.errors()
            )
            raise SettingsError(f"invalid settings: {problems}") from exc
