import json
from pathlib import Path

import pytest

from training.config import TrainConfig
from training.train import train

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
