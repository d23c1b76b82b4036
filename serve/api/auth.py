"""Who may call what: one rule, applied by the request guard before a body is read.

The /v1 route dependencies check the same keys again (and document them in OpenAPI); the guard
exists so that a request without a valid key is refused before its body is read or parsed.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from kesheng.serve.api.settings import Settings

__all__ = ["AccessRule", "PROTECTED_PAGES", "PUBLIC_PROBES", "access_rule", "key_refusal", "presented_key"]

# Liveness and readiness stay open: load balancers probe them without credentials.
PUBLIC_PROBES = frozenset({"/v1/health", "/v1/ready"})
# Pages that show traffic, failed-auth counts, the tag distribution or the whole API surface.
PROTECTED_PAGES = frozenset({"/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


@dataclass(frozen=True)
class AccessRule:
    accepted: frozenset[str]  # keys that open the path
    what: str  # how errors name the key ("API key", "admin key", "metrics key")
    bearer: bool = False  # also accept "Authorization: Bearer <key>" (Prometheus sends that)
    disabled: str | None = None  # the path is closed to every key, and why


def access_rule(settings: Settings, path: str) -> AccessRule | None:
    """The keys a path needs; None: open. Anything under /v1 but the probes counts as the API (fail closed)."""
    if path in PUBLIC_PROBES:
        return None
    if path.startswith("/v1/admin/"):
        if not settings.admin_keys:
            return AccessRule(frozenset(), "admin key", disabled="admin endpoints are disabled: set KESHENG_ADMIN_KEYS (or reload with SIGHUP)")
        return AccessRule(settings.admin_keys, "admin key")
    if path.startswith("/v1/"):
        return AccessRule(settings.api_keys | settings.admin_keys, "API key") if settings.api_keys else None
    if path in PROTECTED_PAGES and not settings.open_metrics_and_docs:
        accepted = settings.metrics_keys | settings.api_keys | settings.admin_keys
        return AccessRule(accepted, "metrics key", bearer=True) if accepted else None
    return None


def presented_key(headers: list[tuple[bytes, bytes]], bearer: bool) -> tuple[str | None, str | None]:
    """(the key sent, None) or (None, why the headers are refused): one X-API-Key header, or a bearer token."""
    keys = [value for name, value in headers if name == b"x-api-key"]
    if len(keys) > 1:
        return None, "send one X-API-Key header, not several"
    if keys:
        return keys[0].decode("latin-1"), None
    if bearer:
        for name, value in headers:
            scheme, _, token = value.decode("latin-1").partition(" ")
            if name == b"authorization" and scheme.lower() == "bearer" and token.strip():
                return token.strip(), None
    return None, None


def key_refusal(presented: str | None, accepted: frozenset[str], what: str) -> tuple[int, str] | None:
    """None when the key is accepted, else (status, message): 401 without a key, 403 with a wrong one."""
    if presented is None:
        return 401, f"missing {what}: send it in the X-API-Key header"
    # Constant-time comparison on bytes (compare_digest refuses non-ASCII str).
    if not any(hmac.compare_digest(presented.encode(), key.encode()) for key in accepted):
        return 403, f"{what} not accepted"
    return None
