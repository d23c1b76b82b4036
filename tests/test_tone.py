"""Tone features for the escalate head: what n-grams miss after normalization."""

import pytest

from kesheng.models.features import FeatureParams, TfidfFeaturizer
from kesheng.nlp.tone import tone_marks


def _features(text: str) -> set[str]:
    return {feature for feature, _, _ in tone_marks(text)}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("再不解决我就投诉！！！", {"t:!!", "t:!!!"}),
        ("到底怎么回事？？", {"t:??"}),
        ("这也行？！", {"t:?!"}),
        ("你们TMD的客服", {"t:profanity"}),
        ("SB客服", {"t:profanity"}),
        ("尼玛，又断网", {"t:profanity"}),
        ("@工信部 管管吧", {"t:@mention", "t:authority", "t:@authority"}),
        ("已经打了12315", {"t:authority"}),
        ("@小王 谢谢你", {"t:@mention"}),
    ],
)
def test_tone_marks_find_each_signal(text, expected):
    assert _features(text) == expected


@pytest.mark.parametrize("text", ["USB接口松了", "价格3150元", "好的！", "atm取不出钱", "客服很耐心，谢谢"])
def test_no_tone_marks_where_there_is_no_tone(text):
    assert _features(text) == set()


def test_marks_index_the_original_text():
    text = "１２３１５已经打过了，你们等着！！！"
    for feature, start, end in tone_marks(text):
        assert 0 <= start < end <= len(text)
    assert ("t:authority", 0, 5) in tone_marks(text)  # full-width digits are still the consumer hotline


def test_the_featurizer_keeps_a_removed_mention_as_a_feature_with_a_span():
    featurizer = TfidfFeaturizer(FeatureParams())
    analysis = featurizer.analyze("@工信部 三天没人管")
    assert "工信部" not in analysis.normalized.text  # normalization drops @-mentions as noise...
    assert "t:@authority" in analysis.features  # ...but the tone feature keeps the threat
    for feature, start, end in zip(analysis.features, analysis.starts, analysis.ends):
        assert 0 <= start < end <= len(analysis.normalized.text), feature
    assert "t:@authority" not in TfidfFeaturizer(FeatureParams(tone=False)).analyze("@工信部 三天没人管").features
