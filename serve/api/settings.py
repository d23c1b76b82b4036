"""API settings, read from KESHENG_* environment variables (what `kesheng serve` sets too)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["Settings", "SettingsError"]

ENV_PREFIX = "KESHENG_"


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
    # Requests with at most this many characters in all are tagged on the event loop (a few ms
    # for the baseline); bigger ones go to a thread so health checks and small requests keep flowing.
    inline_chars: int = Field(1_000, ge=0)
    # Threads tagging big requests at once in one process (bounds memory; more would only share the GIL).
    predict_threads: int = Field(2, ge=1, le=64)
    # uvicorn worker processes (used by `kesheng serve`); one model copy each.
    workers: int = Field(1, ge=1, le=64)
    # This deployment's escalate operating point, instead of the model's own (tuned on dev for
    # recall, see its card): lower flags more messages for a person. None: the model's.
    escalate_threshold: float | None = Field(None, ge=0.0, le=1.0)
    # One structured (JSON) log line per request at INFO; WARNING keeps only problems.
    log_level: str = "INFO"

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
            if name in ("api_keys", "admin_keys"):
                values[name] = frozenset(k.strip() for k in raw.split(",") if k.strip())
                if not values[name]:
                    # Fail closed: a variable set to "," or " " is a mistake, not "no authentication".
                    raise SettingsError(f"invalid settings: {key} is set but holds no key ({raw!r}); unset it to run without keys")
            else:
                values[name] = raw
        values.update(overrides)
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{_env_key(str(e['loc'][0])) if e['loc'] else ENV_PREFIX}: {e['msg']}" for e in exc.errors()
            )
            raise SettingsError(f"invalid settings: {problems}") from exc
