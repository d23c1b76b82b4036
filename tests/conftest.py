import pytest

from kesheng.training.config import TrainConfig
from kesheng.training.train import train


@pytest.fixture(scope="session", autouse=True)
def isolated_model_choice(tmp_path_factory):
    """Tests never see a developer's promoted model or $KESHENG_MODEL: "the default model" is the bundled one."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("KESHENG_MODEL", raising=False)
        patch.setenv("KESHENG_REGISTRY", str(tmp_path_factory.mktemp("registry")))
        yield


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

    from kesheng.serve.api.app import create_app
    from kesheng.serve.api.settings import Settings

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
