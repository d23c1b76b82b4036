"""Metrics from predictions: scikit-learn's, with explicit labels, and n/a where undefined."""

import numpy as np

from kesheng.models import Prediction
from kesheng.models.schema import DEFAULT_TAXONOMY
from kesheng.training.config import TrainConfig
from kesheng.training.data import LabeledSet
from kesheng.training.evaluate import evaluate_predictions, format_metrics
from kesheng.training.train import train
from tests.labeled_rows import labeled, write_jsonl

NAMES = DEFAULT_TAXONOMY.names


def _prediction(tags, sentiment):
    return Prediction(list(tags), {n: float(n in tags) for n in NAMES}, sentiment, {s: float(s == sentiment) for s in ("negative", "neutral", "positive")})


def _evaluate(rows, predicted, groups=None):
    tags = np.array([[int(n in t) for n in NAMES] for t, _ in rows], dtype=np.int8)
    data = LabeledSet([f"r{i}" for i in range(len(rows))], [f"评论{i}" for i in range(len(rows))], tags, [s for _, s in rows], DEFAULT_TAXONOMY, [])
    return evaluate_predictions(data, [_prediction(t, s) for t, s in predicted], groups)


def test_a_perfect_two_row_file_scores_one_not_a_third():
    rows = [(("slow_response",), "negative"), (("slow_response",), "negative")]
    metrics = _evaluate(rows, rows)
    assert metrics["sentiment"]["macro_f1"] == 1.0  # neutral and positive never occur: not averaged in as 0
    assert metrics["macro_f1"] == 1.0  # the three tags without positives are n/a, not 0
    assert metrics["tags"]["attitude"]["f1"] is None and metrics["tags"]["slow_response"]["f1"] == 1.0


def test_undefined_values_print_as_n_a_with_support_beside_every_f1():
    rows = [(("slow_response",), "negative"), ((), "positive"), (("opacity",), "negative"), ((), "neutral")]
    predicted = [(("slow_response",), "negative"), (("attitude",), "positive"), ((), "negative"), ((), "neutral")]
    metrics = _evaluate(rows, predicted, groups=["a", "a", "b", "b"])
    assert metrics["tags"]["attitude"]["f1"] == 0.0  # a false positive on a tag without positives is an error, F1 0
    assert metrics["tags"]["unresolved"]["f1"] is None and metrics["tags"]["unresolved"]["recall"] is None
    assert metrics["tags"]["opacity"]["precision"] is None and metrics["tags"]["opacity"]["recall"] == 0.0
    text = format_metrics(metrics, DEFAULT_TAXONOMY)
    assert "unresolved" in text and "n/a" in text
    assert "[a] n=2" in text and "slow_response=1.00(1)" in text and "opacity=n/a(0)" in text


def test_a_tag_with_too_few_test_positives_is_warned_about(tmp_path):
    test = write_jsonl(tmp_path / "test.jsonl", [labeled("等了半个小时才回复", ["slow_response"], id="t1")] + [labeled(f"菜有点咸{i}", [], "neutral", id=f"t{i + 2}") for i in range(5)])
    result = train(TrainConfig(test_file=str(test)))
    warnings = result.metrics["test"]["warnings"]
    assert any("'slow_response' has 1 positive(s)" in w for w in warnings)
    assert any("'attitude' has 0 positive(s)" in w for w in warnings)
    assert "warning: tag 'slow_response'" in format_metrics(result.metrics["test"], DEFAULT_TAXONOMY)


def test_escalate_threshold_is_the_highest_reaching_the_target_recall():
    from kesheng.training.evaluate import choose_escalate_threshold

    truth = np.array([1, 1, 1, 1, 0, 0, 0, -1], dtype=np.int8)
    scores = [0.9, 0.8, 0.4, 0.2, 0.7, 0.3, 0.1, 0.99]
    assert choose_escalate_threshold(truth, scores, 0.75, 2) == 0.4  # 3 of 4 positives kept
    assert choose_escalate_threshold(truth, scores, 1.0, 2) == 0.2
    assert choose_escalate_threshold(truth, scores, 0.75, 5) is None  # too few positives to choose


def test_escalate_metrics_say_n_a_for_a_model_without_the_head():
    from dataclasses import replace

    rows = [(("slow_response",), "negative"), ((), "positive")]
    tags = np.array([[int(n in t) for n in NAMES] for t, _ in rows], dtype=np.int8)
    data = LabeledSet(["a", "b"], ["再不解决我就报警", "好"], tags, ["negative", "positive"], DEFAULT_TAXONOMY, [], None, np.array([1, 0], np.int8))
    with_head = [replace(_prediction(t, s), escalate=e, escalate_score=float(e)) for (t, s), e in zip(rows, (True, False))]
    metrics = evaluate_predictions(data, with_head)
    assert metrics["escalate"]["available"] and metrics["escalate"]["f1"] == 1.0 and metrics["escalate"]["support"] == 1
    assert "需升级处理" in format_metrics(metrics, DEFAULT_TAXONOMY)
    without = evaluate_predictions(data, [_prediction(t, s) for t, s in rows])
    assert without["escalate"]["available"] is False
    assert "escalate: n/a" in format_metrics(without, DEFAULT_TAXONOMY)
