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
