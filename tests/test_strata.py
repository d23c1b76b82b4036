"""Kinds of comment for the stratified share correction: one key per text, the same vectorized
over a file's column as one at a time."""

import pandas as pd
import pytest

from kesheng.nlp.strata import LENGTH_EDGES, comment_strata, comment_stratum, stratum_label


@pytest.mark.parametrize(
    "text, key, label",
    [
        ("无", "single:0", "单条 ≤20 字"),
        ("  快递太慢了  ", "single:0", "单条 ≤20 字"),  # surrounding blanks are not length
        ("等" * 20, "single:0", "单条 ≤20 字"),
        ("等" * 21, "single:1", "单条 21-40 字"),
        ("客服一直说在处理，可是到现在都没有人联系我，订单也没有任何进展，我已经打了五次电话了" * 2, "single:3", "单条 81-160 字"),
        ("我的快递三天没动\n客服说再等等\n今天还是没动", "multi:1", "多轮 21-40 字"),
        ("问题没解决\n" + "还是不行" * 50, "multi:4", "多轮 >160 字"),
        ("就一行\n", "single:0", "单条 ≤20 字"),  # a trailing line break is not a second turn
    ],
)
def test_each_text_has_one_kind_named_for_readers(text, key, label):
    assert comment_stratum(text) == key
    assert stratum_label(key) == label


def test_a_column_gets_the_same_kinds_as_one_text_at_a_time():
    texts = pd.Series(["无", "客服\n不理人", "好" * 45, "  ", "x" * 161 + "\n" + "y", "等" * 40, "等" * 41])
    assert comment_strata(texts).tolist() == [comment_stratum(t) for t in texts]
    assert len(LENGTH_EDGES) == 4 and list(LENGTH_EDGES) == sorted(LENGTH_EDGES)
