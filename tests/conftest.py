import json
import os
import tempfile
from pathlib import Path

import pytest

from training.config import TrainConfig
from training.train import train

# Tests never see a developer's promoted model or $KESHENG_MODEL: "the default model" is the bundled one.
os.environ.pop("KESHENG_MODEL", None)
os.environ["KESHENG_REGISTRY"] = tempfile.mkdtemp(prefix="kesheng-test-registry-")

TAGS = ("slow_response", "unresolved", "attitude", "opacity")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def labeled(text: str, tags=(), sentiment="negative", id=None) -> dict:
    row = {"text": text, "sentiment": sentiment, **{t: int(t in tags) for t in TAGS}}
    if id is not None:
        row["id"] = id
    return row


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A baseline trained on the bundled seed corpus, saved once per test session."""
    directory = tmp_path_factory.mktemp("model") / "baseline"
    result = train(TrainConfig(), directory)
    return result, directory


@pytest.fixture(scope="session")
def model(trained):
    return trained[0].model


@pytest.fixture(scope="session")
def model_dir(trained):
    return trained[1]


@pytest.fixture
def api(model_dir, tmp_path):
    """A TestClient on a fresh app (lifespan run) serving the session model; call with Settings overrides."""
    from fastapi.testclient import TestClient

    from serve.app import create_app
    from serve.settings import Settings

    clients = []

    def start(**overrides):
        settings = Settings(**{"model_dir": model_dir, "feedback_db": tmp_path / "feedback.sqlite3", **overrides})
        client = TestClient(create_app(settings), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)
