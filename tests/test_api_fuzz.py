"""Property-based fuzzing of the API from its own OpenAPI schema: no input makes it answer 5xx."""

import tempfile
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from kesheng.serve.api.app import create_app
from kesheng.serve.api.settings import Settings
from kesheng.stores.registry import resolve_model

pytestmark = pytest.mark.slow

# The schema is loaded when the module is collected, so the app is built here (on the bundled
# model; schemathesis's fixture loader does not work with pytest 9.2). Small limits let the
# fuzzer reach the refusals: too many comments, too long, too big.
_store_dir = tempfile.TemporaryDirectory(prefix="kesheng-fuzz-")
app = create_app(
    Settings(
        model_dir=resolve_model(),
        feedback_db=Path(_store_dir.name) / "feedback.sqlite3",
        max_comments=8,
        max_text_chars=200,
        max_body_bytes=4096,
        log_level="WARNING",
    )
)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture(scope="module", autouse=True)
def running_app():
    with TestClient(app):  # runs the lifespan: model loaded, label store open
        yield
    _store_dir.cleanup()


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_makes_the_api_fail(case):
    # Unknown tag names pass the schema (a model's taxonomy is data) and are refused with 422,
    # so "every schema-valid body is accepted" is not a property of this API; the rest is.
    case.call_and_validate(
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    )
