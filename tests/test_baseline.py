"""Baseline fitting details: partial labels, weights, degenerate label sets."""

import numpy as np
import pytest

from kesheng.models.baseline import TfidfLinearClassifier

TEXTS = ["等了两个小时才送到", "送餐太慢了", "客服态度太差", "味道不错", "送得很快，好吃", "骑手态度很好", "又慢又难吃", "客服挂我电话"] * 3


def tags(*rows):
    return np.array(rows * 3, dtype=np.int8)


def test_unlabeled_entries_are_left_out_of_their_head():
    y = tags([1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [1, 0, -1, 0], [-1, -1, 1, -1])
    sentiments = ["negative", "negative", "negative", "positive", "positive", "positive", None, "negative"] * 3
    model = TfidfLinearClassifier().fit(TEXTS, y, sentiments, sample_weight=np.linspace(0.1, 1.0, len(TEXTS)))
    predictions = model.predict(["送餐太慢了", "味道不错"])
    assert predictions[0].scores["slow_response"] > predictions[1].scores["slow_response"]


def test_tag_never_positive_stays_off_and_single_sentiment_is_handled():
    y = tags(*[[1, 0, 0, 0]] * 4, *[[0, 0, 0, 0]] * 4)
    model = TfidfLinearClassifier().fit(TEXTS, y, ["negative"] * len(TEXTS))
    (p,) = model.predict(["送餐太慢了"])
    assert p.scores["opacity"] < 1e-6 and p.sentiment == "negative"


def test_bad_label_values_are_rejected():
    with pytest.raises(ValueError, match="1, 0 or -1"):
        TfidfLinearClassifier().fit(TEXTS, np.full((len(TEXTS), 4), 2), ["negative"] * len(TEXTS))
    with pytest.raises(ValueError, match="unknown sentiment"):
        TfidfLinearClassifier().fit(TEXTS, np.zeros((len(TEXTS), 4)), ["angry"] * len(TEXTS))
    with pytest.raises(ValueError, match="shape"):
        TfidfLinearClassifier().fit(TEXTS, np.zeros((3, 4)), ["negative"] * len(TEXTS))


ESCALATING = ["再不解决我就投诉到工信部！！！", "你们TMD骗子公司，我要报警", "再这样我就携号转网"] * 3
CALM = ["送餐有点慢", "客服态度一般", "味道还行", "希望改进一下包装", "等了一会儿", "谢谢客服"] * 3


def _escalate_data(labels):
    texts = ESCALATING + CALM
    y = np.zeros((len(texts), 4), dtype=np.int8)
    return texts, y, ["negative"] * len(texts), np.array(labels, dtype=np.int8)


def test_escalate_head_learns_from_partial_labels_and_explains_itself():
    # Half the rows are not labeled for escalate (-1): they still train the tags and sentiment.
    labels = [1] * len(ESCALATING) + [0] * len(CALM)
    labels[::2] = [-1] * len(labels[::2])
    texts, y, sentiments, escalate = _escalate_data(labels)
    model = TfidfLinearClassifier().fit(texts, y, sentiments, escalate=escalate)
    assert model.has_escalate and model.escalate_threshold_ == 0.5
    threat, calm = model.predict(["不解决我就投诉到工信部！！！", "送餐有点慢"])
    assert threat.escalate is True and calm.escalate is False and threat.escalate_score > calm.escalate_score
    assert any(e.tag == "escalate" for e in threat.evidence) and not any(e.tag == "escalate" for e in calm.evidence)


@pytest.mark.parametrize("labels", [None, "all unlabeled", "one class only"])
def test_no_escalate_head_without_both_classes_and_predictions_say_unknown(labels, tmp_path):
    texts = ESCALATING + CALM
    escalate = {None: None, "all unlabeled": [-1] * len(texts), "one class only": [0] * len(texts)}[labels]
    model = TfidfLinearClassifier().fit(texts, np.zeros((len(texts), 4), np.int8), ["negative"] * len(texts), escalate=escalate)
    assert not model.has_escalate and model.escalate_threshold is None
    (p,) = TfidfLinearClassifier.load(model.save(tmp_path / "m")).predict(["再不解决我就投诉到工信部"])
    assert p.escalate is None and p.escalate_score is None  # unknown, not "no"
    with pytest.raises(ValueError, match="no escalate head"):
        model.set_escalate_threshold(0.3)


def test_bad_escalate_labels_and_thresholds_are_rejected():
    texts, y, sentiments, _ = _escalate_data([0] * (len(ESCALATING) + len(CALM)))
    with pytest.raises(ValueError, match="1, 0 or -1"):
        TfidfLinearClassifier().fit(texts, y, sentiments, escalate=[2] * len(texts))
    with pytest.raises(ValueError, match="shape"):
        TfidfLinearClassifier().fit(texts, y, sentiments, escalate=[1, 0])
    model = TfidfLinearClassifier().fit(texts, y, sentiments, escalate=[1] * len(ESCALATING) + [0] * len(CALM))
    for bad in (-0.1, 1.5, float("nan"), "0.5", True):
        with pytest.raises(ValueError, match="escalate threshold"):
            model.override_escalate_threshold(bad)
