"""The data scientist's loop: taxonomy as data, partial labels, label sources, compare, promote, suggest."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kesheng.cli.main import app
from kesheng.models import DEFAULT_TAXONOMY
from kesheng.models.card import CARD_FILE
from kesheng.models.schema import Taxonomy, TaxonomyError, UnknownLabelError
from kesheng.stores.feedback import FeedbackStore
from kesheng.stores.registry import Registry, load_model
from kesheng.training.active import suggest
from kesheng.training.compare import compare_models, format_comparison
from kesheng.training.config import LabelSource, TrainConfig
from kesheng.training.corpus import merge_label_rows, read_label_file
from kesheng.training.data import DataValidationError, LabeledSet, load_labeled
from kesheng.training.evaluate import evaluate_predictions
from kesheng.training.sources import load_label_source, merge_by_text
from kesheng.training.train import train
from tests.labeled_rows import labeled, write_jsonl

runner = CliRunner()
FIVE = [*DEFAULT_TAXONOMY.to_list(), {"name": "billing_dispute", "zh": "费用争议", "description": "disputed charges or refunds"}]

# Team-written sentences for an example fifth tag (money disputes) and hard negatives.
BILLING = [
    "这个月话费多扣了五十块，没人给我解释",
    "退款说三天到账，两周了钱还没退回来",
    "明明取消了会员还是被自动扣费",
    "押金一直不退，打电话也没用",
    "下单时说好的优惠价，结账却按原价收",
    "同一笔订单被扣了两次钱",
    "莫名其妙多了一笔服务费，我根本没用过",
    "套餐说好每月五十，账单上却是八十",
    "配送费比页面上写的多收了十块",
    "赔偿金额和承诺的不一样，少给了一半",
    "充值成功了余额却没到账，钱被吞了",
    "违约金是哪来的？签约时没人说过",
]
NOT_BILLING = [
    "东西挺贵的，不太值这个价",
    "请问这个套餐多少钱一个月",
    "快递太慢了，等了一个星期",
    "客服态度很差，爱答不理",
    "菜很好吃，下次还来",
    "房间干净，服务周到",
    "问题反映了三次还没解决",
    "价格实惠，质量也不错",
    "物流信息一直不更新，也没人通知",
    "打了好几次电话都没人接",
    "东西收到了，和描述一致",
    "电话排队排了半小时",
]


def _taxonomy_file(tmp_path: Path, tags=FIVE, **extra) -> Path:
    path = tmp_path / "taxonomy.json"
    path.write_text(json.dumps({"version": 1, "tags": tags, **extra}, ensure_ascii=False), encoding="utf-8")
    return path


def _billing_file(tmp_path: Path) -> Path:
    rows = [{"id": f"b{i}", "text": t, "billing_dispute": 1} for i, t in enumerate(BILLING)]
    rows += [{"id": f"n{i}", "text": t, "billing_dispute": 0} for i, t in enumerate(NOT_BILLING)]
    return write_jsonl(tmp_path / "billing.jsonl", rows)


class TestTaxonomyAsData:
    def test_a_file_defines_tags_renames_and_retired_tags(self, tmp_path):
        taxonomy = Taxonomy.from_file(_taxonomy_file(tmp_path, renamed={"money": "billing_dispute"}, retired=["legacy"]))
        assert taxonomy.names[-1] == "billing_dispute" and taxonomy.zh("billing_dispute") == "费用争议"
        assert taxonomy.label_name("money") == "billing_dispute"
        assert taxonomy.label_name("legacy") is None
        with pytest.raises(UnknownLabelError, match="'refund' is not a tag"):
            taxonomy.label_name("refund")

    @pytest.mark.parametrize(
        "tags, extra, words",
        [
            ([*FIVE, FIVE[0]], {}, "duplicate tag names"),
            (FIVE, {"renamed": {"money": "refunds"}}, "'refunds' is not a tag"),
            (FIVE, {"retired": ["attitude"]}, "'attitude' is still a tag"),
            (FIVE, {"colour": "red"}, "unknown keys"),
            ([{"name": "Bad Name", "zh": "坏"}], {}, "lowercase ASCII identifier"),
            ([{"name": "x"}], {}, "each tag needs name and zh"),
            ([], {}, "at least one tag"),
        ],
    )
    def test_inconsistent_taxonomies_are_refused_with_the_reason(self, tmp_path, tags, extra, words):
        with pytest.raises(TaxonomyError, match=words):
            Taxonomy.from_file(_taxonomy_file(tmp_path, tags=tags, **extra))

    def test_unreadable_taxonomy_file(self, tmp_path):
        path = tmp_path / "t.json"
        path.write_text("{not json", encoding="utf-8")
        with pytest.raises(TaxonomyError, match="not valid JSON"):
            Taxonomy.from_file(path)

    def test_a_fifth_tag_through_config_only(self, tmp_path, api):
        config = TrainConfig(taxonomy=str(_taxonomy_file(tmp_path)))
        config.train_files.append(str(_billing_file(tmp_path)))
        result = train(config, tmp_path / "five")
        model = load_model(tmp_path / "five")
        assert model.taxonomy_.names == (*DEFAULT_TAXONOMY.names, "billing_dispute")
        # Rows without a billing label (the whole seed corpus) do not count as negatives.
        assert result.metrics["test"]["tags"]["billing_dispute"]["n"] < result.metrics["test"]["n"]
        scores = model.predict(["明明取消了会员还是被自动扣费，钱也不退"])[0].scores
        assert set(scores) == set(model.taxonomy_.names)
        # The API and the model card follow the model's taxonomy.
        client = api(model_dir=tmp_path / "five")
        assert [label["zh"] for label in client.get("/v1/model").json()["labels"]][-1] == "费用争议"
        feedback = client.post("/v1/feedback", json={"text": "多扣了钱", "tags": ["billing_dispute"]})
        assert feedback.status_code == 201 and "billing_dispute" in feedback.json()["judged_tags"]
        assert "费用争议" in (tmp_path / "five" / CARD_FILE).read_text(encoding="utf-8")

    def test_labels_for_a_tag_the_taxonomy_dropped_fail_before_training(self, tmp_path):
        config = TrainConfig()  # the four default tags
        config.train_files.append(str(_billing_file(tmp_path)))
        with pytest.raises(DataValidationError, match="billing_dispute.*no such tag"):
            train(config, tmp_path / "never")
        assert not (tmp_path / "never").exists()


class TestPartialLabels:
    def test_unlabeled_rows_are_not_negatives(self, tmp_path):
        positives = ["收费明细看不懂也没人解释", "突然多了一项费用没有任何说明", "扣费原因不告诉我"]
        negatives = ["菜很好吃", "房间很干净", "快递很快", "服务很好", "价格便宜", "下次还来"]
        texts = positives * 3 + negatives * 3
        n_tags = len(DEFAULT_TAXONOMY.names)
        opacity = DEFAULT_TAXONOMY.names.index("opacity")

        def fit(unlabeled_value):
            tags = np.zeros((len(texts), n_tags), dtype=np.int8)
            tags[: len(positives), opacity] = 1
            # The later copies of the positives are unlabeled for opacity (or, wrongly, 0).
            tags[len(positives) : 3 * len(positives), opacity] = unlabeled_value
            from kesheng.models.baseline import TfidfLinearClassifier

            return TfidfLinearClassifier().fit(texts, tags, ["negative"] * len(texts))

        masked = fit(-1).predict(positives)
        as_negative = fit(0).predict(positives)
        for m, n in zip(masked, as_negative):
            assert m.scores["opacity"] > n.scores["opacity"] + 0.1

    def test_metrics_skip_unlabeled_fields(self):
        from kesheng.models import Prediction

        tags = np.array([[1, -1, 0, 0], [0, -1, 0, 0], [-1, -1, 1, 0]], dtype=np.int8)
        data = LabeledSet(["a", "b", "c"], ["x", "y", "z"], tags, ["negative", None, "positive"], DEFAULT_TAXONOMY, [])

        def p(tags, sentiment):
            return Prediction(tags, {n: 0.0 for n in DEFAULT_TAXONOMY.names}, sentiment, {"negative": 0, "neutral": 0, "positive": 0})

        metrics = evaluate_predictions(data, [p(["slow_response"], "negative"), p(["unresolved"], "neutral"), p([], "positive")])
        assert metrics["tags"]["slow_response"]["n"] == 2 and metrics["tags"]["slow_response"]["f1"] == 1.0
        assert metrics["tags"]["unresolved"]["n"] == 0
        # unresolved has no labels, opacity no positives and no predicted positives: F1 undefined, not averaged.
        assert metrics["macro_f1"] == pytest.approx((1.0 + 0.0) / 2)
        assert metrics["sentiment"]["n"] == 2 and metrics["sentiment"]["accuracy"] == 1.0
        assert metrics["other"]["support"] + metrics["other"]["fp"] + metrics["other"]["tn"] == 0  # no complete row


class TestLabelFiles:
    def test_by_id_rows_with_some_tags_and_no_sentiment(self, tmp_path):
        path = write_jsonl(tmp_path / "l.jsonl", [{"id": "stc3-1", "opacity": 1, "split": "dev"}, {"id": "stc3-2", "sentiment": "neutral"}])
        first, second = read_label_file(path)
        assert first["opacity"] == 1 and first["slow_response"] == -1 and first["sentiment"] is None
        assert second["opacity"] == -1 and second["sentiment"] == "neutral"

    def test_unknown_retired_and_renamed_fields(self, tmp_path):
        path = write_jsonl(tmp_path / "l.jsonl", [{"id": "stc3-1", "money": 1, "legacy": 1, "attitude": 0}])
        with pytest.raises(DataValidationError, match="not in the taxonomy"):
            read_label_file(path)
        taxonomy = Taxonomy.from_file(_taxonomy_file(tmp_path, renamed={"money": "billing_dispute"}, retired=["legacy"]))
        (row,) = read_label_file(path, taxonomy)
        assert row["billing_dispute"] == 1 and row["attitude"] == 0 and "legacy" not in row

    def test_files_join_by_id_and_conflicts_are_reported_and_unlabeled(self):
        names = DEFAULT_TAXONOMY.names
        base = {n: -1 for n in names}
        a = [{"id": "x", "sentiment": "negative", "split": "test", **base, "opacity": 1}]
        b = [{"id": "x", "sentiment": "positive", **base, "opacity": 1, "attitude": 0}]
        (row,), conflicts = merge_label_rows({"a.jsonl": a, "b.jsonl": b}, DEFAULT_TAXONOMY)
        assert row["opacity"] == 1 and row["attitude"] == 0 and row["split"] == "test"
        assert row["sentiment"] is None
        assert [(c.field, c.values, c.sources) for c in conflicts] == [("sentiment", ("negative", "positive"), ("a.jsonl", "b.jsonl"))]

    def test_one_id_in_two_splits_is_an_error(self):
        base = {n: 0 for n in DEFAULT_TAXONOMY.names}
        rows = {"a": [{"id": "x", "sentiment": None, "split": "train", **base}], "b": [{"id": "x", "sentiment": None, "split": "test", **base}]}
        with pytest.raises(DataValidationError, match="one id in two splits"):
            merge_label_rows(rows, DEFAULT_TAXONOMY)

    def test_a_text_file_with_an_unknown_label_column_is_refused(self, tmp_path):
        path = write_jsonl(tmp_path / "x.jsonl", [{"text": "多扣了钱", "refund": 1, "channel": "app"}, {"text": "好", "refund": 0, "channel": "web"}])
        with pytest.raises(DataValidationError, match=r"\['refund'\] hold 0/1 labels"):
            load_labeled(path)


class TestLabelSources:
    def test_feedback_store_rows_know_which_tags_were_judged(self, tmp_path):
        with FeedbackStore(tmp_path / "f.sqlite3") as store:
            store.append("等了很久", ["slow_response"], DEFAULT_TAXONOMY.names, "negative", comment_id="T-1")
            store.append("扣费不明", ["opacity"], DEFAULT_TAXONOMY.names)
        five = Taxonomy.from_file(_taxonomy_file(tmp_path))
        data, conflicts = load_label_source(LabelSource("feedback", str(tmp_path / "f.sqlite3")), five)
        assert data.ids == ["T-1", "feedback-2"] and not conflicts
        assert data.tags[0].tolist() == [1, 0, 0, 0, -1]  # billing_dispute did not exist when it was judged
        assert data.sentiments == ["negative", None]

    def test_label_studio_export_with_two_annotators_who_disagree(self, tmp_path):
        def annotation(tags, sentiment):
            return {"was_cancelled": False, "result": [
                {"from_name": "tags", "type": "choices", "value": {"choices": tags}},
                {"from_name": "sentiment", "type": "choices", "value": {"choices": [sentiment]}},
            ]}

        tasks = [
            {"id": 1, "data": {"text": "客服态度差，等了很久"}, "annotations": [annotation(["服务态度", "slow_response"], "负面"), annotation(["attitude"], "negative")]},
            {"id": 2, "data": {"text": "很满意"}, "annotations": [annotation([], "positive"), {"was_cancelled": True, "result": []}]},
        ]
        path = tmp_path / "ls.json"
        path.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
        data, conflicts = load_label_source(LabelSource("label_studio", str(path)), DEFAULT_TAXONOMY)
        assert data.tags[0].tolist() == [-1, 0, 1, 0]  # slow_response: the annotators disagree
        assert [c.field for c in conflicts] == ["slow_response"]
        assert data.tags[1].tolist() == [0, 0, 0, 0] and data.sentiments == ["negative", "positive"]

    def test_label_studio_min_export_and_unknown_choice(self, tmp_path):
        path = tmp_path / "min.json"
        path.write_text(json.dumps([{"id": 5, "text": "多收钱", "tags": {"choices": ["退款问题"]}}], ensure_ascii=False), encoding="utf-8")
        with pytest.raises(DataValidationError, match="退款问题"):
            load_label_source(LabelSource("label_studio", str(path)), DEFAULT_TAXONOMY)

    def test_argilla_nested_and_flattened_records(self, tmp_path):
        nested = {"id": "r1", "fields": {"text": "电话一直打不通"}, "responses": {
            "tags": [{"value": ["slow_response"], "status": "submitted"}, {"value": ["opacity"], "status": "draft"}],
            "sentiment": [{"value": "negative", "status": "submitted"}]}}
        flat = {"id": "r2", "text": "信息不透明", "tags.responses": [["opacity"]], "tags.responses.status": ["submitted"], "sentiment.responses": ["neutral"]}
        path = tmp_path / "argilla.jsonl"
        path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in (nested, flat)), encoding="utf-8")
        data, conflicts = load_label_source(LabelSource("argilla", str(path)), DEFAULT_TAXONOMY)
        assert not conflicts  # the draft response does not count
        assert data.tags.tolist() == [[1, 0, 0, 0], [0, 0, 0, 1]] and data.sentiments == ["negative", "neutral"]

    def test_the_same_comment_in_two_sources_is_merged_and_conflicts_reported(self):
        names = DEFAULT_TAXONOMY.names
        a = LabeledSet(["1"], ["客服态度很差！"], np.array([[0, 0, 1, -1]], np.int8), ["negative"], DEFAULT_TAXONOMY, [], ["a"])
        b = LabeledSet(["T9"], ["客服态度很差"], np.array([[0, -1, 0, 1]], np.int8), [None], DEFAULT_TAXONOMY, [], ["b"])
        merged, conflicts = merge_by_text([a, b], DEFAULT_TAXONOMY)
        assert len(merged) == 1
        assert dict(zip(names, merged.tags[0].tolist())) == {"slow_response": 0, "unresolved": 0, "attitude": -1, "opacity": 1}
        assert [(c.field, c.sources) for c in conflicts] == [("attitude", ("a", "b"))]

    def test_training_reads_the_feedback_store(self, tmp_path):
        with FeedbackStore(tmp_path / "f.sqlite3") as store:
            for text in BILLING[:6]:
                store.append(text, ["opacity"], DEFAULT_TAXONOMY.names, "negative")
        config = TrainConfig(label_sources=[LabelSource("feedback", str(tmp_path / "f.sqlite3"))])
        result = train(config)
        seed_rows = sum(1 for path in config.train_files for line in open(path, encoding="utf-8") if line.strip())
        counts = result.metrics["data"]
        assert counts["n_fit"] + counts["n_dev"] + counts["n_test"] == seed_rows + 6


@pytest.fixture(scope="module")
def weaker(tmp_path_factory):
    """A model trained on 120 seed comments: worse than the session model."""
    seed_rows = [json.loads(line) for line in open(TrainConfig().train_files[0], encoding="utf-8")][:120]
    path = write_jsonl(tmp_path_factory.mktemp("weak") / "few.jsonl", seed_rows)
    directory = tmp_path_factory.mktemp("weaker") / "model"
    train(TrainConfig(train_files=[str(path)]), directory)
    return directory


class TestCompareAndPromote:
    @pytest.fixture
    def test_file(self, tmp_path):
        rows = [labeled("等了一个小时都没人回复", ["slow_response"]), labeled("客服很不耐烦，直接挂电话", ["attitude"]),
                labeled("问题反映了三次还没解决", ["unresolved"]), labeled("莫名多了一笔费用也没人解释", ["opacity"]),
                labeled("菜很好吃，下次再来", [], "positive"), labeled("物流一直不更新", ["opacity", "slow_response"]),
                labeled("请问怎么开发票", [], "neutral"), labeled("态度好，解决得很快", [], "positive")]
        return write_jsonl(tmp_path / "test.jsonl", rows)

    def test_compare_gives_intervals_and_disagreements(self, model, weaker, test_file):
        data = load_labeled(test_file)
        result = compare_models(model, load_model(weaker), data, n_bootstrap=200)
        for name, entry in result["tags"].items():
            for side in ("a", "b"):
                assert entry[side]["low"] <= entry[side]["value"] + 1e-9 <= entry[side]["high"] + 2e-9
            predicted_a = [name in p.tags for p in model.predict(data.texts)]
            predicted_b = [name in p.tags for p in load_model(weaker).predict(data.texts)]
            assert entry["disagreements"] == sum(x != y for x, y in zip(predicted_a, predicted_b))
        text = format_comparison(result)
        assert "macro-F1 (common)" in text
        # Thresholds beside the scores: a tag's F1 moves with its threshold.
        weaker_model = load_model(weaker)
        assert f"{model.thresholds_['opacity']:.2f}/{weaker_model.thresholds_['opacity']:.2f}" in text

    def test_promote_makes_tag_and_serve_use_the_model(self, model_dir, tmp_path, monkeypatch):
        monkeypatch.delenv("KESHENG_MODEL", raising=False)
        monkeypatch.setenv("KESHENG_REGISTRY", str(tmp_path / "registry"))
        from kesheng.stores.registry import resolve_model

        assert "default_model" in str(resolve_model())
        result = runner.invoke(app, ["promote", str(model_dir), "--reason", "first"])
        assert result.exit_code == 0, result.output
        registry = Registry()
        assert resolve_model() == registry.current_link
        assert load_model().meta_["model_version"] == load_model(model_dir).meta_["model_version"]
        assert [p.reason for p in registry.history()] == ["first"]
        assert "first" in runner.invoke(app, ["models"]).output

    def test_a_worse_model_is_not_promoted_without_force(self, model_dir, weaker, test_file, tmp_path, monkeypatch):
        monkeypatch.setenv("KESHENG_REGISTRY", str(tmp_path / "registry"))
        assert runner.invoke(app, ["promote", str(model_dir)]).exit_code == 0
        current = Registry().current_version()
        refused = runner.invoke(app, ["promote", str(weaker), "--data", str(test_file)])
        assert refused.exit_code == 2 and "not promoted" in refused.output
        assert Registry().current_version() == current
        forced = runner.invoke(app, ["promote", str(weaker), "--data", str(test_file), "--force"])
        assert forced.exit_code == 0 and Registry().current_version() != current

    def test_the_first_promotion_is_compared_with_the_bundled_model(self, weaker, test_file, tmp_path, monkeypatch):
        monkeypatch.setenv("KESHENG_REGISTRY", str(tmp_path / "registry"))
        from kesheng.models import bundled_model_path

        bundled = load_model(bundled_model_path()).meta_["model_version"]
        result = runner.invoke(app, ["promote", str(weaker), "--data", str(test_file), "--force"])
        assert result.exit_code == 0, result.output
        assert f"vs {bundled}" in Registry().history()[-1].reason

    def test_a_broken_model_is_never_promoted(self, tmp_path, monkeypatch):
        monkeypatch.setenv("KESHENG_REGISTRY", str(tmp_path / "registry"))
        (tmp_path / "broken").mkdir()
        result = runner.invoke(app, ["promote", str(tmp_path / "broken")])
        assert result.exit_code == 2 and "meta.json" in result.output
        assert Registry().current() is None

    def test_evaluating_with_labels_the_model_does_not_know_fails_clearly(self, model_dir, tmp_path):
        path = write_jsonl(tmp_path / "l.jsonl", [{"text": "多扣钱", "tags": ["billing_dispute"], "sentiment": "negative"}])
        result = runner.invoke(app, ["evaluate", "--data", str(path), "--model", str(model_dir)])
        assert result.exit_code == 2 and "billing_dispute" in result.output


class TestSuggest:
    def test_valid_distinct_rows_skipping_duplicates_and_labeled(self, model):
        texts = [*BILLING, *NOT_BILLING, BILLING[0] + "！", None, "", "  "]
        picked = suggest(model, texts, 10, already_labeled=[NOT_BILLING[0]])
        indices = [s.index for s in picked]
        assert len(picked) == 10 and len(set(indices)) == 10
        assert [s.rank for s in picked] == list(range(1, 11))
        assert all(texts[i] and texts[i].strip() for i in indices)
        assert len(BILLING) + len(NOT_BILLING) not in indices  # the near-copy of BILLING[0] is the same comment
        assert 0 not in [i for i in indices if texts[i] == NOT_BILLING[0]] and NOT_BILLING[0] not in [texts[i] for i in indices]
        assert all(0.0 <= s.uncertainty <= 1.0 and s.reason for s in picked)

    def test_more_requested_than_available(self, model):
        assert len(suggest(model, ["a", "b", "a"], 10)) == 2

    def test_cli_writes_label_studio_tasks(self, model_dir, tmp_path):
        source = write_jsonl(tmp_path / "u.jsonl", [{"id": f"u{i}", "text": t} for i, t in enumerate(BILLING + NOT_BILLING)])
        out = tmp_path / "tasks.json"
        result = runner.invoke(app, ["suggest", "-i", str(source), "-o", str(out), "-n", "5", "--model", str(model_dir)])
        assert result.exit_code == 0, result.output
        tasks = json.loads(out.read_text(encoding="utf-8"))
        assert len(tasks) == 5 and all(t["data"]["id"].startswith("u") for t in tasks)
        assert tasks[0]["predictions"][0]["result"][0]["from_name"] == "tags"
        # The labeling config they fit is written beside them: the controls the pre-annotations name.
        import xml.etree.ElementTree as ElementTree

        config = ElementTree.fromstring((tmp_path / "tasks.label_config.xml").read_text(encoding="utf-8"))
        controls = {c.get("name"): c for c in config.iter("Choices")}
        assert set(controls) == {"tags", "sentiment", "escalate"} and controls["tags"].get("choice") == "multiple"
        assert {c.get("value") for c in controls["escalate"].iter("Choice")} == {"yes", "no"}
        # The pre-annotation answers the escalate control with one of its own choices.
        escalate = [r for r in tasks[0]["predictions"][0]["result"] if r["from_name"] == "escalate"]
        assert len(escalate) == 1 and escalate[0]["value"]["choices"][0] in ("yes", "no")
        assert [c.get("value") for c in controls["tags"]] == list(DEFAULT_TAXONOMY.names)
        assert "响应缓慢" in controls["tags"][0].get("html")
        predicted = {v for t in tasks for r in t["predictions"][0]["result"] for v in r["value"]["choices"]}
        assert predicted <= {c.get("value") for control in controls.values() for c in control}
        again = runner.invoke(app, ["suggest", "-i", str(source), "-o", str(out), "--model", str(model_dir)])
        assert again.exit_code == 2 and "exists" in again.output


def test_check_labels_reports_conflicts(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [labeled("客服态度很差", ["attitude"])])
    b = write_jsonl(tmp_path / "b.jsonl", [labeled("客服态度很差！", [])])
    result = runner.invoke(app, ["check-labels", "--data", str(a), "--data", str(b)])
    assert result.exit_code == 0, result.output
    assert "1 conflicting label" in result.output and "attitude" in result.output


def test_model_directories_carry_a_card(model_dir, model):
    card = (model_dir / CARD_FILE).read_text(encoding="utf-8")
    assert model.meta_["model_version"] in card and "响应缓慢" in card and "Macro-F1" in card
    assert os.path.getsize(model_dir / CARD_FILE) > 500


class TestEscalateInTheLoop:
    """Escalate goes through the same retraining loop as the tags: files, tools, compare, promote."""

    def test_a_label_file_may_label_escalate_alone_by_id_or_with_texts(self, tmp_path):
        by_id = write_jsonl(tmp_path / "esc.jsonl", [{"id": "stc3-1", "escalate": 1}, {"id": "stc3-2", "escalate": 0}])
        rows = read_label_file(by_id)
        assert [r["escalate"] for r in rows] == [1, 0] and all(r["slow_response"] == -1 and r["sentiment"] is None for r in rows)
        bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": "stc3-1", "escalate": "yes"}, {"id": "stc3-2"}])
        with pytest.raises(DataValidationError) as error:
            read_label_file(bad)
        assert "escalate not 0/1" in str(error.value) and "no labels" in str(error.value)
        with_texts = load_labeled(write_jsonl(tmp_path / "t.jsonl", [{"text": "我要投诉到工信部", "escalate": 1}, {"text": "还行", "escalate": ""}]))
        assert with_texts.escalate.tolist() == [1, -1] and (with_texts.tags == -1).all()

    def test_files_joined_by_id_merge_escalate_by_the_one_rule(self):
        base = {name: -1 for name in DEFAULT_TAXONOMY.names}
        a = [{"id": "x", "sentiment": "negative", "split": "train", "escalate": 1, **base}]
        b = [{"id": "x", "sentiment": None, "escalate": 0, **base}]
        (row,), conflicts = merge_label_rows({"a.jsonl": a, "b.jsonl": b}, DEFAULT_TAXONOMY)
        assert row["escalate"] == -1 and [c.field for c in conflicts] == ["escalate"]

    def test_label_studio_and_argilla_escalate_choices(self, tmp_path):
        def annotation(escalate):
            return {"result": [{"from_name": "tags", "value": {"choices": ["unresolved"]}}, {"from_name": "escalate", "value": {"choices": [escalate]}}]}

        tasks = [
            {"id": 1, "data": {"text": "再不解决就找媒体曝光"}, "annotations": [annotation("yes"), annotation("需升级处理")]},
            {"id": 2, "data": {"text": "问题还没解决"}, "annotations": [annotation("no"), annotation("yes")]},
        ]
        path = tmp_path / "ls.json"
        path.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
        data, conflicts = load_label_source(LabelSource("label_studio", str(path)), DEFAULT_TAXONOMY)
        assert data.escalate.tolist() == [1, -1] and [c.field for c in conflicts] == ["escalate"]
        record = {"id": "r1", "fields": {"text": "骗子公司"}, "responses": {"escalate": [{"value": "yes", "status": "submitted"}]}}
        path = tmp_path / "argilla.jsonl"
        path.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
        data, _ = load_label_source(LabelSource("argilla", str(path)), DEFAULT_TAXONOMY)
        assert data.escalate.tolist() == [1]
        path.write_text(json.dumps({**record, "responses": {"escalate": [{"value": "maybe"}]}}, ensure_ascii=False), encoding="utf-8")
        with pytest.raises(DataValidationError, match="escalate not yes/no"):
            load_label_source(LabelSource("argilla", str(path)), DEFAULT_TAXONOMY)

    def test_a_version_1_feedback_store_is_migrated_and_old_rows_stay_unjudged(self, tmp_path):
        import sqlite3

        path = tmp_path / "old.sqlite3"
        db = sqlite3.connect(path)  # a store as kesheng wrote it before escalate existed
        db.executescript(
            "CREATE TABLE feedback (seq INTEGER PRIMARY KEY AUTOINCREMENT, received_at TEXT NOT NULL, comment_id TEXT, "
            "text TEXT NOT NULL, tags TEXT NOT NULL, judged_tags TEXT NOT NULL, sentiment TEXT, model_version TEXT, annotator TEXT, note TEXT);"
            "CREATE TABLE store_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "INSERT INTO store_info VALUES ('schema_version', '1');"
            "INSERT INTO feedback (received_at, text, tags, judged_tags, sentiment) VALUES "
            "('2026-11-01T00:00:00', '等了很久', '[\"slow_response\"]', '[\"slow_response\", \"unresolved\", \"attitude\", \"opacity\"]', 'negative');"
        )
        db.close()
        with FeedbackStore(path) as store:
            store.append("我要报警", [], DEFAULT_TAXONOMY.names, escalate=True)
            old, new = store.records()
        assert old.escalate is None and new.escalate is True

    def test_check_labels_counts_escalate(self, tmp_path):
        path = write_jsonl(tmp_path / "l.jsonl", [{"text": "投诉到工信部", "escalate": 1, "sentiment": "negative"}, {"text": "还行", "escalate": 0}])
        result = runner.invoke(app, ["check-labels", "--data", str(path)])
        assert result.exit_code == 0, result.output
        assert "escalate           labeled      2  positive      1" in result.output

    def test_the_threshold_is_tuned_on_dev_for_recall_and_reported(self, trained, model):
        result, _ = trained
        dev = result.metrics["dev_before_refit"]["escalate"]
        assert dev["available"] and dev["recall"] >= TrainConfig().escalate_recall
        assert 0.0 < model.escalate_threshold_ < 1.0
        assert result.metrics["test"]["escalate"]["available"]

    def test_promotion_is_refused_when_the_candidate_loses_the_escalate_head(self, model, tmp_path):
        from kesheng.training.compare import promotion_check

        rows = [json.loads(line) for line in open(TrainConfig().train_files[0], encoding="utf-8")]
        no_escalate = write_jsonl(tmp_path / "no_escalate.jsonl", [{k: v for k, v in r.items() if k != "escalate"} for r in rows])
        candidate = train(TrainConfig(train_files=[str(no_escalate)])).model
        assert not candidate.has_escalate
        data = load_labeled(write_jsonl(tmp_path / "t.jsonl", [labeled("等了一个小时都没人回复", ["slow_response"]) | {"escalate": 0}]))
        check = promotion_check(model, candidate, data)
        assert not check.allowed and "escalate head lost" in check.summary
        assert "escalate F1" in format_comparison(compare_models(model, model, load_labeled(write_jsonl(tmp_path / "e.jsonl", [
            labeled("再不解决我就投诉到工信部！！！", ["unresolved"]) | {"escalate": 1}, labeled("还行", [], "neutral") | {"escalate": 0}]))))
