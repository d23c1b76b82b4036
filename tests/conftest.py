import pytest

from kesheng.training.config import TrainConfig
from kesheng.training.train import train


@pytest.fixture(scope="session", autouse=True)
def isolated_model_choice(tmp_path_factory):
    """Tests never see a developer's promoted model or $KESHENG_MODEL (the default model is the bundled one) and never reach a hub."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("KESHENG_MODEL", raising=False)
        patch.setenv("KESHENG_REGISTRY", str(tmp_path_factory.mktemp("registry")))
        patch.setenv("HF_HUB_OFFLINE", "1")  # nothing is ever downloaded: a test that tries fails
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


# The tiny transformer: a BERT written by the tests (no download), trained in seconds. Shared by the
# transformer tests and the contract tests that run on every model type.


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("onnxruntime")
    from tests.transformer_fixtures import SEED_TEXTS, write_tiny_bert

    return write_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert", SEED_TEXTS)


@pytest.fixture(scope="session")
def tiny_trained(tiny_base, tmp_path_factory):
    """The full pipeline (fit with early stopping on dev, thresholds, test metrics, save) once."""
    from tests.transformer_fixtures import tiny_args, tiny_params

    directory = tmp_path_factory.mktemp("tmodel") / "transformer"
    config = TrainConfig(model_type="transformer", transformer=tiny_params(tiny_base), fine_tuning=tiny_args(), refit_with_dev=False)
    result = train(config, directory)
    return result, directory


@pytest.fixture(scope="session")
def tmodel(tiny_trained):
    return tiny_trained[0].model


@pytest.fixture(scope="session")
def tmodel_dir(tiny_trained):
    return tiny_trained[1]


@pytest.fixture(scope="session")
def every_tag_model(tmodel_dir):
    """The tiny model with all thresholds at 0: every tag fires, so evidence is always computed."""
    from kesheng.models import load_model

    model = load_model(tmodel_dir)
    model.set_thresholds({name: 0.0 for name in model.taxonomy_.names})
    return model


@pytest.fixture(params=["tfidf-linear", "transformer"])
def any_model(request):
    """Each model type, fitted: the contract tests run on all of them."""
    return request.getfixturevalue("model" if request.param == "tfidf-linear" else "every_tag_model")
