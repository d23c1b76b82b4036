"""The HTTP API through TestClient: every route, every refusal, reload, auth, metrics."""

import json
import shutil
import time

import pytest

from kesheng.models import load_model
from kesheng.serve.api.observability import JsonFormatter
from kesheng.serve.api.settings import Settings, SettingsError
from kesheng.stores.feedback import FeedbackStore

TEXTS = ["等了半小时都没人接电话，问题到现在还没解决", "客服态度很好，谢谢", "", "收费明细一直不给解释"]


def test_tag_returns_one_result_per_comment_in_order_same_as_predict(api, model):
    client = api()
    body = {"comments": [{"id": f"T-{i}", "text": t} for i, t in enumerate(TEXTS)] + [{"text": "没有编号的评论"}]}
    response = client.post("/v1/tag", json=body)
    assert response.status_code == 200
    payload = response.json()
    assert payload["model_version"] == model.meta_["model_version"]
    expected = [p.to_dict(f"T-{i}") for i, p in enumerate(model.predict(TEXTS))]
    expected.append(model.predict(["没有编号的评论"])[0].to_dict(None))
    assert payload["results"] == json.loads(json.dumps(expected, ensure_ascii=False))
    assert payload["results"][2]["notes"] == ["empty text"]
    assert payload["results"][2]["sentiment"] is None and payload["results"][2]["sentiment_scores"] is None

    for comment, result in zip(body["comments"], payload["results"]):
        for evidence in result["evidence"]:
            assert comment["text"][evidence["start"] : evidence["end"]] == evidence["text"]
    assert response.headers["x-request-id"]


def test_integer_ids_are_echoed_unchanged(api):
    results = api().post("/v1/tag", json={"comments": [{"id": 7, "text": "好"}]}).json()["results"]
    assert results[0]["id"] == 7


@pytest.mark.parametrize(
    "body, status, loc, words",
    [
        ({"comments": []}, 422, "comments", "at least 1"),
        ({"comments": [{"text": "好"}] * 5}, 422, "comments", "at most 4"),
        ({"comments": [{"text": "好"}, {"text": "长" * 41}]}, 422, "comments[1].text", "at most 40 characters"),
        ({"comments": [{"text": 3}]}, 422, "comments[0].text", "valid string"),
        ({"comments": [{"id": "a", "text": 42}]}, 422, "comments[0].text", "string"),
        ({"comments": [{"text": "好", "channel": "app"}]}, 422, "comments[0].channel", "Extra inputs"),
        ({"comments": [{"text": "好"}], "extra": 1}, 422, "extra", "Extra inputs"),
        ({"comment": [{"text": "好"}]}, 422, "comments", "required"),
        ([{"text": "好"}], 422, "body", "JSON object"),
        ({"comments": [{"text": "好", "id": [1]}]}, 422, "comments[0].id", "string, an integer or null"),
        ({"comments": [{"text": "好", "id": True}]}, 422, "comments[0].id", "not bool"),
    ],
)
def test_bad_tag_requests_say_which_item_and_why(api, body, status, loc, words):
    response = api(max_comments=4, max_text_chars=40).post("/v1/tag", json=body)
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["errors"][0]["loc"] == loc
    assert words in payload["errors"][0]["msg"]
    assert payload["detail"].startswith(loc)


@pytest.mark.parametrize(
    "raw, content_type, status, words",
    [
        (b'{"comments": [', "application/json", 400, "not valid JSON"),
        (b"\xff\xfe\x00{", "application/json", 400, "not UTF-8"),
        ('{"comments": [{"text": "\u597d"}]}'.encode("gb18030"), "application/json", 400, "not UTF-8"),
        (b"comments=1", "application/x-www-form-urlencoded", 422, "JSON object"),
        (b"", "application/json", 422, "JSON object"),
        (b'{"comments": [{"text": "\\ud800"}]}', "application/json", 422, "unicode"),
    ],
)
def test_malformed_bodies_are_4xx_with_a_message(api, raw, content_type, status, words):
    response = api().post("/v1/tag", content=raw, headers={"content-type": content_type})
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_huge_bodies_are_refused_before_parsing(api):
    client = api(max_body_bytes=2048)
    declared = client.post("/v1/tag", content=b"x" * 4096, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and "limit is 2048" in declared.json()["detail"]

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(8):
            yield b"x" * 1024

    streamed = client.post("/v1/tag", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    assert client.post("/v1/tag", json={"comments": [{"text": "好"}]}).status_code == 200


def test_text_at_the_limit_is_accepted(api):
    response = api(max_text_chars=40).post("/v1/tag", json={"comments": [{"text": "等" * 40}]})
    assert response.status_code == 200


def test_health_ready_and_model_info(api, model):
    client = api()
    assert client.get("/v1/health").json() == {"status": "ok"}
    assert client.get("/v1/ready").json() == {"status": "ready", "model_version": model.meta_["model_version"]}
    info = client.get("/v1/model").json()
    assert info["model_type"] == "tfidf-linear"
    assert [label["name"] for label in info["labels"]] == list(model.taxonomy_.names)
    assert {label["name"]: label["threshold"] for label in info["labels"]} == model.thresholds_
    assert info["labels"][0]["zh"] == "响应缓慢"
    assert info["metrics"]["test"]["macro_f1"] == pytest.approx(model.metrics_["test"]["macro_f1"], abs=1e-4)


def test_unknown_route_is_json_404(api):
    response = api().get("/v1/nothing")
    assert response.status_code == 404 and response.json()["detail"] == "Not Found"


def test_openapi_documents_routes_limits_and_chinese_examples(api):
    spec = api(max_comments=10).get("/openapi.json").json()
    for path in ("/v1/tag", "/v1/feedback", "/v1/model", "/v1/health", "/v1/ready", "/v1/admin/reload", "/metrics"):
        assert path in spec["paths"]
    assert spec["components"]["schemas"]["TagRequest"]["properties"]["comments"]["maxItems"] == 10
    assert "等了半小时" in json.dumps(spec, ensure_ascii=False)


class TestAuth:
    def test_open_when_no_keys_are_configured(self, api):
        assert api().post("/v1/tag", json={"comments": [{"text": "好"}]}).status_code == 200

    def test_missing_key_is_401_wrong_key_403_right_key_200(self, api):
        client = api(api_keys=frozenset({"k-1", "k-2"}))
        body = {"comments": [{"text": "好"}]}
        missing = client.post("/v1/tag", json=body)
        assert missing.status_code == 401 and "X-API-Key" in missing.json()["detail"]
        assert client.post("/v1/tag", json=body, headers={"X-API-Key": "nope"}).status_code == 403
        assert client.post("/v1/tag", json=body, headers={"X-API-Key": "k-2"}).status_code == 200
        assert client.get("/v1/model").status_code == 401
        assert client.post("/v1/feedback", json={"text": "好", "tags": []}).status_code == 401
        # Probes need no key.
        assert client.get("/v1/health").status_code == 200 and client.get("/v1/ready").status_code == 200

    def test_admin_endpoint_is_disabled_without_admin_keys(self, api):
        response = api(api_keys=frozenset({"k"})).post("/v1/admin/reload", headers={"X-API-Key": "k"})
        assert response.status_code == 403 and "KESHENG_ADMIN_KEYS" in response.json()["detail"]

    def test_admin_key_is_separate_from_api_keys(self, api):
        client = api(api_keys=frozenset({"k"}), admin_keys=frozenset({"boss"}))
        assert client.post("/v1/admin/reload", headers={"X-API-Key": "k"}).status_code == 403
        assert client.post("/v1/admin/reload", headers={"X-API-Key": "boss"}).status_code == 200
        # An admin key also works for the ordinary routes.
        assert client.get("/v1/model", headers={"X-API-Key": "boss"}).status_code == 200


class TestReload:
    @pytest.fixture
    def model_copy(self, model_dir, tmp_path):
        copy = tmp_path / "served_model"
        shutil.copytree(model_dir, copy)
        return copy

    @staticmethod
    def _set_version(directory, version):
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        meta["model_version"] = version
        (directory / "meta.json").write_text(json.dumps(meta), encoding="utf-8")

    def test_admin_reload_swaps_the_model(self, api, model_copy):
        client = api(model_dir=model_copy, admin_keys=frozenset({"boss"}))
        self._set_version(model_copy, "v-next")
        response = client.post("/v1/admin/reload", headers={"X-API-Key": "boss"})
        assert response.status_code == 200 and response.json()["reloaded"] is True
        assert client.get("/v1/model").json()["model_version"] == "v-next"
        assert client.post("/v1/tag", json={"comments": [{"text": "好"}]}).json()["model_version"] == "v-next"

    def test_a_broken_model_is_refused_and_the_old_one_keeps_serving(self, api, model_copy, model):
        client = api(model_dir=model_copy, admin_keys=frozenset({"boss"}))
        (model_copy / "weights.safetensors").write_bytes(b"\x00" * 10)
        response = client.post("/v1/admin/reload", headers={"X-API-Key": "boss"})
        assert response.status_code == 409
        assert "weights" in response.json()["error"]
        tagged = client.post("/v1/tag", json={"comments": [{"text": "等了很久没人回"}]})
        assert tagged.status_code == 200 and tagged.json()["model_version"] == model.meta_["model_version"]
        # With keys configured /metrics needs one too (an admin key opens it).
        assert "kesheng_model_reloads_total{outcome=\"failed\"} 1.0" in client.get("/metrics", headers={"X-API-Key": "boss"}).text

    def test_watching_the_directory_picks_up_a_new_version(self, api, model_copy):
        client = api(model_dir=model_copy, reload_check_seconds=0.05)
        self._set_version(model_copy, "v-watched")
        deadline = time.monotonic() + 10
        while client.get("/v1/ready").json()["model_version"] != "v-watched":
            assert time.monotonic() < deadline, "the watcher did not reload"
            time.sleep(0.05)


class TestFeedback:
    def test_corrections_are_stored_with_the_judged_taxonomy(self, api, tmp_path, model):
        client = api()
        body = {"id": "T-9", "text": "等了很久", "tags": ["slow_response"], "sentiment": "negative", "annotator": "a1"}
        response = client.post("/v1/feedback", json=body)
        assert response.status_code == 201
        assert response.json()["feedback_id"] == 1
        client.post("/v1/feedback", json={"text": "其他问题", "tags": []})
        with FeedbackStore(tmp_path / "feedback.sqlite3") as store:
            first, second = list(store.records())
        assert (first.comment_id, first.text, first.tags, first.sentiment) == ("T-9", "等了很久", ("slow_response",), "negative")
        assert first.judged_tags == model.taxonomy_.names
        assert first.label("slow_response") == 1 and first.label("attitude") == 0 and first.label("billing") == -1
        assert second.sentiment is None and second.tags == ()
        assert first.escalate is None  # not judged: unknown, not "no"

    def test_a_corrected_escalate_flag_is_stored_and_read_by_training(self, api, tmp_path):
        client = api()
        body = {"text": "再不退款我就去12315投诉", "tags": ["unresolved"], "sentiment": "negative", "escalate": True}
        assert client.post("/v1/feedback", json=body).status_code == 201
        assert client.post("/v1/feedback", json={"text": "好", "tags": [], "escalate": "maybe"}).status_code == 422
        with FeedbackStore(tmp_path / "feedback.sqlite3") as store:
            (record,) = store.records()
        assert record.escalate is True
        from kesheng.models.schema import DEFAULT_TAXONOMY
        from kesheng.training.config import LabelSource
        from kesheng.training.sources import load_label_source

        rows, _ = load_label_source(LabelSource("feedback", str(tmp_path / "feedback.sqlite3")), DEFAULT_TAXONOMY)
        assert rows.escalate.tolist() == [1]

    @pytest.mark.parametrize(
        "body, loc, words",
        [
            ({"text": "好", "tags": ["billing"]}, "tags[0]", "unknown tag 'billing'"),
            ({"text": "好", "tags": ["attitude", "attitude"]}, "tags", "repeated"),
            ({"text": "", "tags": []}, "text", "at least 1"),
            ({"text": "好", "tags": [], "sentiment": "angry"}, "sentiment", "negative"),
            ({"text": "好"}, "tags", "required"),
            ({"text": "好", "tags": [], "labels": []}, "labels", "Extra inputs"),
        ],
    )
    def test_bad_feedback_is_refused_and_nothing_is_stored(self, api, tmp_path, body, loc, words):
        response = api().post("/v1/feedback", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["loc"] == loc and words in response.json()["errors"][0]["msg"]
        with FeedbackStore(tmp_path / "feedback.sqlite3") as store:
            assert len(store) == 0


def test_metrics_count_requests_tags_and_sentiments(api, model):
    client = api()
    client.post("/v1/tag", json={"comments": [{"text": t} for t in TEXTS]})
    client.post("/v1/tag", json={"comments": []})
    text = client.get("/metrics").text
    assert 'kesheng_http_requests_total{method="POST",route="/v1/tag",status="200"} 1.0' in text
    assert 'kesheng_http_requests_total{method="POST",route="/v1/tag",status="422"} 1.0' in text
    assert "kesheng_http_request_seconds_bucket" in text
    assert f"kesheng_comments_tagged_total {float(len(TEXTS))}" in text
    predictions = model.predict(TEXTS)
    for tag in model.taxonomy_.names:
        count = sum(tag in p.tags for p in predictions)
        if count:
            assert f'kesheng_tags_assigned_total{{tag="{tag}"}} {float(count)}' in text
    negatives = sum(p.sentiment == "negative" for p in predictions)
    assert f'kesheng_sentiments_total{{sentiment="negative"}} {float(negatives)}' in text
    escalated = sum(p.escalate is True for p in predictions)
    assert escalated and f"kesheng_escalations_total {float(escalated)}" in text


def test_results_carry_escalate_and_the_model_says_its_operating_point(api, model):
    text = "第三次打电话了还是没人管，再不解决我就投诉到工信部！！！"
    client = api(escalate_threshold=0.01)
    (result, blank) = client.post("/v1/tag", json={"comments": [{"id": 1, "text": text}, {"id": 2, "text": " "}]}).json()["results"]
    assert result["escalate"] is True and result["escalate_score"] == round(model.predict([text])[0].escalate_score, 4)
    assert any(e["tag"] == "escalate" and text[e["start"] : e["end"]] == e["text"] for e in result["evidence"])
    assert blank["escalate"] is None and blank["escalate_score"] is None
    info = client.get("/v1/model").json()["escalate"]
    assert info == {"threshold": 0.01, "model_threshold": model.escalate_threshold_, "overridden": True}
    assert api().get("/v1/model").json()["escalate"]["overridden"] is False
    # The override is the deployment's: the model object other tests share keeps its own threshold.
    assert model.escalate_threshold_override is None


def test_openapi_documents_escalate_with_a_chinese_example(api):
    schema = api().get("/openapi.json").json()
    result = schema["components"]["schemas"]["TagResult"]
    assert "escalate" in result["properties"] and "需升级处理" in result["properties"]["escalate"]["description"]
    example = result["examples"][0]
    assert example["escalate"] is True and any(e["tag"] == "escalate" and "工信部" in e["text"] for e in example["evidence"])


def test_request_ids_are_echoed_or_made(api):
    client = api()
    assert client.get("/v1/health", headers={"X-Request-ID": "ticket-42"}).headers["x-request-id"] == "ticket-42"
    made = client.get("/v1/health", headers={"X-Request-ID": "bad id\twith tab"}).headers["x-request-id"]
    assert made != "bad id\twith tab" and len(made) == 32


def test_log_lines_are_json_with_the_request_fields():
    import logging

    record = logging.LogRecord("kesheng.access", logging.INFO, __file__, 1, "request", (), None)
    record.fields = {"path": "/v1/tag", "status": 200, "ms": 1.5}
    entry = json.loads(JsonFormatter().format(record))
    assert entry["msg"] == "request" and entry["path"] == "/v1/tag" and entry["status"] == 200


class TestSettings:
    def test_read_from_environment(self, tmp_path):
        settings = Settings.from_env(
            {"KESHENG_MODEL": str(tmp_path), "KESHENG_API_KEYS": " a, b ,", "KESHENG_MAX_COMMENTS": "10"}
        )
        assert settings.model_dir == tmp_path and settings.api_keys == {"a", "b"} and settings.max_comments == 10

    def test_bad_values_name_the_variable(self):
        with pytest.raises(SettingsError, match="KESHENG_MAX_COMMENTS"):
            Settings.from_env({"KESHENG_MAX_COMMENTS": "many"})
        with pytest.raises(SettingsError, match="KESHENG_LOG_LEVEL"):
            Settings.from_env({"KESHENG_LOG_LEVEL": "loud"})
        with pytest.raises(SettingsError, match="KESHENG_ESCALATE_THRESHOLD"):
            Settings.from_env({"KESHENG_ESCALATE_THRESHOLD": "1.5"})
        assert Settings.from_env({"KESHENG_ESCALATE_THRESHOLD": "0.2"}).escalate_threshold == 0.2

    @pytest.mark.parametrize("variable", ["KESHENG_API_KEYS", "KESHENG_ADMIN_KEYS", "KESHENG_METRICS_KEYS"])
    @pytest.mark.parametrize("value", [",", " ", " , ", ",,"])
    def test_a_key_variable_holding_no_key_fails_closed(self, variable, value):
        # Set but empty after splitting is a mistake: it must not silently turn authentication off.
        with pytest.raises(SettingsError, match=f"{variable} is set but holds no key"):
            Settings.from_env({variable: value})


def test_a_missing_model_fails_at_startup(tmp_path):
    from fastapi.testclient import TestClient

    from kesheng.models import ModelLoadError
    from kesheng.serve.api.app import create_app

    app = create_app(Settings(model_dir=tmp_path / "absent", feedback_db=tmp_path / "f.sqlite3"))
    with pytest.raises(ModelLoadError, match="does not exist"):
        with TestClient(app):
            pass


def test_served_predictions_equal_a_fresh_load(api, model_dir):
    # The served object is the model directory's model, not some other state.
    text = "快递三天了还没到，客服一直推脱"
    served = api().post("/v1/tag", json={"comments": [{"text": text}]}).json()["results"][0]
    assert served == json.loads(json.dumps(load_model(model_dir).predict([text])[0].to_dict(None), ensure_ascii=False))


def test_null_or_missing_text_is_a_missing_text_result_not_a_422(api):
    client = api()
    response = client.post("/v1/tag", json={"comments": [{"id": "a", "text": None}, {"id": "b"}, {"id": "c", "text": "等了半小时都没人接电话"}]})
    assert response.status_code == 200, response.text
    first, second, third = response.json()["results"]
    assert first["notes"] == second["notes"] == ["missing text"] and first["sentiment"] is None
    assert third["tags"]


def test_probes_answer_head(api):
    client = api()
    assert client.head("/v1/health").status_code == 200
    assert client.head("/v1/ready").status_code == 200


def test_docs_page_loads_swagger_ui_from_the_package_not_a_cdn(api):
    client = api()
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn." not in page.text and "unpkg" not in page.text
    scripts = [src for src in ("swagger-ui-bundle.js", "swagger-ui.css") if src in page.text]
    assert scripts == ["swagger-ui-bundle.js", "swagger-ui.css"]
    for name in scripts:
        asset = client.get(f"/static-offline-docs/{name}")
        assert asset.status_code == 200 and len(asset.content) > 10_000


def test_compressed_bodies_are_refused_naming_the_encoding(api):
    import gzip

    body = gzip.compress(json.dumps({"comments": [{"text": "等了很久"}]}).encode())
    response = api().post("/v1/tag", content=body, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert response.status_code == 415 and "'gzip'" in response.json()["detail"]


def test_deeply_nested_json_gets_a_message_that_says_so(api):
    deep = '{"comments":' + "[" * 5000 + "]" * 5000 + "}"
    response = api().post("/v1/tag", content=deep, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "nested too deeply" in response.json()["detail"]


@pytest.mark.parametrize(
    "content, status",
    [(b"{bad json", 400), (b'{"comments": [{"text": "\\xff"}]}'.replace(b"\\xff", b"\xff"), 400), (b"x" * (9 * 1024 * 1024), 413)],
)
def test_400_and_413_bodies_have_the_shape_of_every_error(api, content, status):
    response = api().post("/v1/tag", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == status
    payload = response.json()
    assert set(payload) == {"detail", "errors"} and len(payload["errors"]) == 1
    assert set(payload["errors"][0]) == {"loc", "msg", "type"}


def test_feedback_accepts_chinese_tag_and_sentiment_names(api, tmp_path):
    client = api()
    response = client.post("/v1/feedback", json={"text": "等了一个小时没人理", "tags": ["响应缓慢", "attitude"], "sentiment": "负面"})
    assert response.status_code == 201, response.text
    from kesheng.stores.feedback import FeedbackStore

    with FeedbackStore(tmp_path / "feedback.sqlite3") as store:
        (record,) = list(store.records())
    assert record.tags == ("slow_response", "attitude") and record.sentiment == "negative"


# Bounded work: a character budget per request, admission per worker, a deadline, chunks.


def test_a_request_over_the_character_budget_is_413_before_tagging(api):
    client = api(max_request_chars=50, inline_chars=10)
    response = client.post("/v1/tag", json={"comments": [{"text": "等" * 30}, {"text": "慢" * 30}]})
    assert response.status_code == 413
    assert "60 characters" in response.json()["detail"] and "KESHENG_MAX_REQUEST_CHARS" in response.json()["detail"]
    assert client.post("/v1/tag", json={"comments": [{"text": "等" * 25}, {"text": "慢" * 25}]}).status_code == 200


def test_requests_tagged_in_chunks_equal_one_predict_call(api, model):
    # inline_chars=0: every request goes the threaded way, in chunks of at most 100 characters.
    client = api(inline_chars=0, predict_chunk_chars=100)
    texts = [TEXTS[i % len(TEXTS)] * (1 + i % 3) for i in range(30)] + [None, "再不解决我就投诉" * 20]
    response = client.post("/v1/tag", json={"comments": [{"id": i, "text": t} for i, t in enumerate(texts)]})
    assert response.status_code == 200
    expected = [p.to_dict(i) for i, p in enumerate(model.predict(texts))]
    assert response.json()["results"] == json.loads(json.dumps(expected, ensure_ascii=False))


def test_text_chunks_keep_order_and_stay_under_the_budget():
    from kesheng.serve.api.work import text_chunks

    texts = ["一" * 30, None, "二" * 50, "三" * 200, "", "四" * 10, "五" * 60]
    chunks = list(text_chunks(texts, 100))
    assert [t for chunk in chunks for t in chunk] == texts
    for chunk in chunks:
        assert len(chunk) == 1 or sum(len(t) for t in chunk if t) <= 100  # a longer text is a chunk alone
    assert ["三" * 200] in chunks


def test_a_busy_worker_answers_503_with_retry_after_without_reading_the_body(api):
    client = api(inline_chars=10, max_pending_chars=1_000, retry_after_seconds=7)
    predictor = client.app.state.predictor
    predictor.pending_chars = 900  # another request is being tagged
    try:
        big = client.post("/v1/tag", json={"comments": [{"text": "等" * 1_000}]})
        small_but_threaded = client.post("/v1/tag", json={"comments": [{"text": "等" * 200}]})
        predictor.pending_chars, predictor.chars_per_second = 1_000, 1.0  # full, and hours of work by the estimate
        inline = client.post("/v1/tag", json={"comments": [{"text": "等了很久"}]})
    finally:
        predictor.pending_chars, predictor.chars_per_second = 0, None
    assert big.status_code == 503 and big.headers["retry-after"] == "7" and "KESHENG_MAX_PENDING_CHARS" in big.json()["detail"]
    assert small_but_threaded.status_code == 503 and small_but_threaded.headers["retry-after"] == "7"
    assert inline.status_code == 200  # small requests keep flowing on the event loop
    assert 'kesheng_tag_requests_stopped_total{reason="busy"} 2.0' in client.get("/metrics").text
    assert client.post("/v1/tag", json={"comments": [{"text": "等" * 1_000}]}).status_code == 200  # idle again: admitted


class _CountingModel:
    """Wraps a model and counts its predict calls (chunks tagged)."""

    def __init__(self, model):
        self.model = model
        self.calls = 0

    def predict(self, texts):
        self.calls += 1
        return self.model.predict(texts)


def _predictor(**overrides):
    from kesheng.serve.api.work import Predictor

    return Predictor(Settings(**{"inline_chars": 0, "predict_chunk_chars": 100, **overrides}))


def test_work_stops_between_chunks_when_the_client_is_gone(model):
    import asyncio

    from kesheng.serve.api.work import ClientGone

    counting, predictor = _CountingModel(model), _predictor()

    async def gone() -> bool:
        return True

    with pytest.raises(ClientGone):
        asyncio.run(predictor.predict(counting, ["等了很久没人回复" * 10] * 20, time.monotonic() + 60, gone))
    assert counting.calls == 1 and predictor.pending_chars == 0  # 1 chunk of 20 tagged, the admission released
    predictor.close()


def test_a_request_past_its_deadline_stops_with_overloaded(model):
    import asyncio

    from kesheng.serve.api.work import Overloaded

    counting, predictor = _CountingModel(model), _predictor()

    async def here() -> bool:
        return False

    with pytest.raises(Overloaded, match="deadline") as refused:
        asyncio.run(predictor.predict(counting, ["等了很久没人回复" * 10] * 20, time.monotonic() - 1, here))
    assert refused.value.reason == "deadline" and counting.calls <= 1 and predictor.pending_chars == 0
    predictor.close()


def test_openapi_states_the_limits_and_the_503(api):
    spec = api(max_request_chars=12_345, request_deadline_seconds=7, graceful_timeout_seconds=9).get("/openapi.json").json()
    description = spec["info"]["description"]
    assert "12,345 characters per request" in description and "7 s" in description and "Retry-After" in description
    assert "Retry-After" in spec["paths"]["/v1/tag"]["post"]["responses"]["503"]["headers"]


class TestSettingsLimits:
    def test_graceful_timeout_must_exceed_the_deadline(self):
        with pytest.raises(SettingsError, match="graceful_timeout_seconds"):
            Settings.from_env({"KESHENG_REQUEST_DEADLINE_SECONDS": "30"})
        settings = Settings.from_env({"KESHENG_REQUEST_DEADLINE_SECONDS": "30", "KESHENG_GRACEFUL_TIMEOUT_SECONDS": "40"})
        assert settings.graceful_timeout_seconds > settings.request_deadline_seconds
        assert Settings().graceful_timeout_seconds > Settings().request_deadline_seconds

    def test_trusted_proxies_must_be_addresses(self):
        with pytest.raises(SettingsError, match="KESHENG_TRUSTED_PROXIES"):
            Settings.from_env({"KESHENG_TRUSTED_PROXIES": "10.0.0.0/8, proxy.local"})
        assert Settings.from_env({"KESHENG_TRUSTED_PROXIES": "10.0.0.0/8, ::1"}).trusted_proxies == ("10.0.0.0/8", "::1")


# Fail closed.


def test_auth_off_is_a_warning(api, capfd):
    api()
    warnings = [json.loads(line) for line in capfd.readouterr().err.splitlines() if '"WARNING"' in line]
    assert any("auth OFF" in entry["msg"] for entry in warnings)
    api(api_keys=frozenset({"k"}))
    assert "auth OFF" not in capfd.readouterr().err


class TestProtectedPages:
    PAGES = ("/metrics", "/docs", "/openapi.json", "/redoc")

    def test_open_without_any_key(self, api):
        client = api()
        assert all(client.get(page).status_code == 200 for page in self.PAGES)

    def test_closed_when_api_keys_are_set(self, api):
        client = api(api_keys=frozenset({"k"}), metrics_keys=frozenset({"scraper"}))
        for page in self.PAGES:
            assert client.get(page).status_code == 401, page
            assert client.get(page, headers={"X-API-Key": "wrong"}).status_code == 403, page
            assert client.get(page, headers={"X-API-Key": "k"}).status_code == 200, page
        # Prometheus sends its credentials as a bearer token.
        assert client.get("/metrics", headers={"Authorization": "Bearer scraper"}).status_code == 200
        # A metrics key opens no /v1 route.
        assert client.post("/v1/tag", json={"comments": [{"text": "好"}]}, headers={"X-API-Key": "scraper"}).status_code == 403

    def test_metrics_keys_alone_close_them(self, api):
        client = api(metrics_keys=frozenset({"scraper"}))
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"X-API-Key": "scraper"}).status_code == 200
        assert client.post("/v1/tag", json={"comments": [{"text": "好"}]}).status_code == 200

    def test_can_be_left_open_on_purpose(self, api):
        client = api(api_keys=frozenset({"k"}), open_metrics_and_docs=True)
        assert all(client.get(page).status_code == 200 for page in self.PAGES)


def test_a_body_without_a_valid_key_is_refused_before_it_is_read(api):
    client = api(api_keys=frozenset({"k"}), max_body_bytes=2048)
    oversized = b'{"comments": [' + b"x" * 10_000  # over the size limit and not JSON
    missing = client.post("/v1/tag", content=oversized, headers={"Content-Type": "application/json"})
    wrong = client.post("/v1/tag", content=oversized, headers={"Content-Type": "application/json", "X-API-Key": "no"})
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "ApiKey"
    assert wrong.status_code == 403  # not 413 or 400: the body was never looked at
    doubled = client.post("/v1/tag", json={"comments": [{"text": "好"}]}, headers=[("X-API-Key", "k"), ("X-API-Key", "k")])
    assert doubled.status_code == 401 and "one X-API-Key" in doubled.json()["detail"]


# The smaller items: headers, probes, redirects, forwarded addresses.


def test_every_response_says_nosniff(api):
    client = api(api_keys=frozenset({"k"}), max_body_bytes=1024)
    responses = [
        client.get("/v1/health"),
        client.get("/v1/nothing", headers={"X-API-Key": "k"}),
        client.post("/v1/tag", json={"comments": []}),
        client.post("/v1/tag", content=b"{" * 2000, headers={"X-API-Key": "k"}),
        client.post("/v1/tag", json={"comments": [{"text": "好"}]}, headers={"X-API-Key": "k"}),
    ]
    assert [r.status_code for r in responses] == [200, 404, 401, 413, 200]
    assert all(r.headers["x-content-type-options"] == "nosniff" for r in responses)


def test_probes_answer_options(api):
    client = api()
    for path in ("/v1/health", "/v1/ready"):
        response = client.options(path)
        assert response.status_code == 204 and set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}


def test_a_trailing_slash_is_not_redirected_to_the_host_header(api):
    response = api().post("/v1/tag/", json={"comments": [{"text": "好"}]}, headers={"Host": "evil.example"}, follow_redirects=False)
    assert response.status_code == 404 and "location" not in response.headers


@pytest.mark.parametrize(
    "peer, forwarded, trusted, logged",
    [
        ("203.0.113.9", "1.2.3.4", (), "203.0.113.9"),  # no trusted proxy: the header is the client's claim
        ("203.0.113.9", "1.2.3.4", ("10.0.0.0/8",), "203.0.113.9"),  # from an untrusted peer
        ("10.0.0.2", "1.2.3.4", ("10.0.0.0/8",), "1.2.3.4"),
        ("10.0.0.2", "6.6.6.6, 1.2.3.4, 10.0.0.7", ("10.0.0.0/8",), "1.2.3.4"),  # the left part is forgeable
        ("10.0.0.2", None, ("10.0.0.0/8",), "10.0.0.2"),
    ],
)
def test_forwarded_for_is_trusted_only_from_configured_proxies(peer, forwarded, trusted, logged):
    from kesheng.serve.api.observability import Metrics, RequestGuard
    from kesheng.serve.api.work import Predictor

    settings = Settings(trusted_proxies=trusted)
    guard = RequestGuard(None, settings=settings, metrics=Metrics(), predictor=Predictor(settings))
    headers = {b"x-forwarded-for": forwarded.encode()} if forwarded else {}
    assert guard._client({"client": (peer, 5555)}, headers) == logged


# The label store: readiness, a full disk, file modes.


class _FailingDb:
    """A SQLite connection that fails statements containing `failing` as a full or read-only disk would."""

    def __init__(self, db, failing: str, message: str):
        self.db, self.failing, self.message = db, failing, message

    def execute(self, sql, *args):
        import sqlite3

        if self.failing in sql:
            raise sqlite3.OperationalError(self.message)
        return self.db.execute(sql, *args)

    def close(self):
        self.db.close()


def test_a_full_disk_is_a_clear_503_and_nothing_is_claimed_stored(api, tmp_path, capfd):
    client = api()
    store = client.app.state.store
    store._db = _FailingDb(store._db, "INSERT INTO feedback", "database or disk is full")
    response = client.post("/v1/feedback", json={"text": "等了很久", "tags": ["slow_response"]})
    assert response.status_code == 503 and response.headers["retry-after"]
    assert "database or disk is full" in response.json()["detail"] and "nothing was stored" in response.json()["detail"]
    err = capfd.readouterr().err
    assert "label store refused a write" in err and "Traceback" not in err
    store._db = store._db.db
    assert len(store) == 0


def test_ready_says_when_the_label_store_cannot_take_writes(api, monkeypatch):
    import os
    from types import SimpleNamespace

    client = api()
    assert client.get("/v1/ready").status_code == 200
    store = client.app.state.store
    store._db = _FailingDb(store._db, "BEGIN IMMEDIATE", "attempt to write a readonly database")
    response = client.get("/v1/ready")
    assert response.status_code == 503 and "readonly" in response.json()["detail"]
    store._db = store._db.db
    assert client.get("/v1/ready").status_code == 200
    monkeypatch.setattr(os, "statvfs", lambda path: SimpleNamespace(f_bavail=3, f_frsize=4096))
    response = client.get("/v1/ready")
    assert response.status_code == 503 and "12,288 bytes free" in response.json()["detail"]


def test_store_files_are_not_world_readable(tmp_path):
    import os
    import stat

    path = tmp_path / "new.sqlite3"
    with FeedbackStore(path) as store:
        store.append(text="等了很久", tags=[], judged_tags=["slow_response"])
        for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            assert stat.S_IMODE(file.stat().st_mode) & 0o007 == 0, file
    old = tmp_path / "old.sqlite3"
    FeedbackStore(old).close()
    os.chmod(old, 0o644)  # made by an earlier kesheng
    FeedbackStore(old).close()
    assert stat.S_IMODE(old.stat().st_mode) == 0o640


def test_admission_refuses_work_it_could_not_finish_within_the_deadline(model):
    import asyncio

    from kesheng.serve.api.work import Overloaded

    predictor = _predictor(request_deadline_seconds=10, max_pending_chars=1_000_000)

    async def here() -> bool:
        return False

    predictor.pending_chars, predictor.chars_per_second = 5_000, 1_000.0  # 5 s of work queued
    with pytest.raises(Overloaded, match="about 5.0 s of work") as refused:
        asyncio.run(predictor.predict(model, ["等了很久没人回复" * 500], time.monotonic() + 60, here))  # 4,000 more: 9 s > 80% of 10 s
    assert refused.value.reason == "busy" and predictor.pending_chars == 5_000
    predictor.pending_chars, predictor.chars_per_second = 0, 1_000.0  # idle: admitted whatever the estimate says
    results = asyncio.run(predictor.predict(model, ["等了很久没人回复" * 500], time.monotonic() + 60, here))
    assert len(results) == 1 and predictor.pending_chars == 0 and predictor.chars_per_second != 1_000.0  # measured again
    predictor.close()


def test_a_request_that_cannot_finish_in_time_stops_as_soon_as_that_is_clear(model):
    import asyncio

    from kesheng.serve.api.work import Overloaded

    counting = _CountingModel(model)
    predictor = _predictor(request_deadline_seconds=60, graceful_timeout_seconds=90)
    # The speed this worker would measure under a heavy load: hours for the rest of the request.
    predictor._measured = lambda chars, seconds: setattr(predictor, "chars_per_second", 0.001)

    async def here() -> bool:
        return False

    with pytest.raises(Overloaded, match="deadline"):
        asyncio.run(predictor.predict(counting, ["等了很久没人回复" * 10] * 20, time.monotonic() + 60, here))
    assert counting.calls == 1 and predictor.pending_chars == 0  # 1 of 20 chunks, not 20 chunks then a 503
    predictor.close()
