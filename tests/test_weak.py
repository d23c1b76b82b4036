"""Labeling functions: negation and scope handling on sentences written for the tests."""

import pytest

from kesheng.models.schema import DEFAULT_TAXONOMY
from kesheng.training.data import load_labeled
from kesheng.training.weak import LABELING_FUNCTIONS, WeakLabeler, _clauses
from tests.labeled_rows import labeled, write_jsonl

BY_NAME = {lf.name: lf for lf in LABELING_FUNCTIONS}


@pytest.mark.parametrize(
    "name,text,fires",
    [
        ("slow_word", "送餐太慢了", True),
        ("slow_word", "送餐不慢", False),  # negated
        ("slow_word", "网速太慢了", False),  # product slowness is out of scope
        ("slow_wait_duration", "等了四十分钟才有人接", True),
        ("opa_charge", "话费莫名其妙多扣了20元", True),
        ("opa_no_notice", "取消了也没通知我", True),
        ("att_bad", "客服态度太差", True),
        ("att_bad", "客服态度不差", False),
        ("att_good", "小哥态度很好", True),
        ("unres_still", "修了两次还是没修好", True),
        ("unres_runaround", "各部门踢皮球", True),
    ],
)
def test_labeling_function_scope(name, text, fires):
    assert BY_NAME[name].fires(_clauses(text)) is fires


def test_weak_labeler_measures_precision_and_gives_probabilities(tmp_path):
    rows = [labeled("等了两个小时才送到", ["slow_response"], id="a"), labeled("送餐太慢了", ["slow_response"], id="b"),
            labeled("客服态度太差", ["attitude"], id="c"), labeled("味道不错", [], "positive", id="d"),
            labeled("送得很快，好吃", [], "positive", id="e")]
    data = load_labeled(write_jsonl(tmp_path / "d.jsonl", rows))
    labeler = WeakLabeler().fit(data)
    report = {r["lf"]: r for r in labeler.report_}
    assert report["slow_word"]["precision"] == 1.0 and report["slow_word"]["fires"] == 1
    tags, sentiment = labeler.predict_proba(["外卖太慢了", "送得很快"])
    k = DEFAULT_TAXONOMY.names.index("slow_response")
    assert tags[0, k] > 0.5 > tags[1, k]
    assert sentiment.shape == (2, 3) and abs(sentiment.sum(axis=1) - 1).max() < 1e-9
