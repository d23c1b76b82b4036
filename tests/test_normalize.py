import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kesheng.nlp import normalize

CASES = [
    # (original, normalized)
    ("等了半小时", "等了半小时"),
    ("ＡＢＣ１２３，！", "abc123,!"),
    ("這個月話費多扣了", "这个月话费多扣了"),
    ("客服態度很差！！！", "客服态度很差!"),
    ("为什么？？？？", "为什么?"),
    ("好慢。。。。", "好慢。"),
    ("  前后\t空白\n\n换行  ", "前后 空白 换行"),
    ("详情见 https://t.cn/Abc123 请处理", "详情见 请处理"),
    ("@中国移动客服 话费怎么多了", "话费怎么多了"),
    ("@了半天没人理", "@了半天没人理"),
    ("太慢了👍🏻👍🏻", "太慢了👍👍"),
    ("生气[怒][抓狂]", "生气[怒][抓狂]"),
    ("控制\x00字符\x07在这", "控制 字符 在这"),
    ("零\u200b宽", "零宽"),
    ("著名的乾隆", "著名的乾隆"),  # valid simplified characters stay as they are
    ("", ""),
    ("   ", ""),
]


@pytest.mark.parametrize("original,expected", CASES)
def test_normalized_text(original, expected):
    assert normalize(original).text == expected


@pytest.mark.parametrize("original,expected", CASES)
def test_offsets_point_into_original(original, expected):
    norm = normalize(original)
    assert len(norm.starts) == len(norm.ends) == len(norm.text)
    for i, char in enumerate(norm.text):
        a, b = norm.starts[i], norm.ends[i]
        assert 0 <= a < b <= len(original)
        if char != " ":
            # The original range holds this character or its full-width/traditional form.
            assert b - a >= 1


def test_span_maps_back_to_original_words():
    original = "  @客服小王 你們的客服態度太差了！！！ 等了３０分鐘"
    norm = normalize(original)
    start = norm.text.index("态度太差")
    a, b = norm.to_original(start, start + 4)
    assert original[a:b] == "態度太差"
    start = norm.text.index("30分钟")
    a, b = norm.to_original(start, start + 4)
    assert original[a:b] == "３０分鐘"


def test_collapsed_punctuation_maps_to_whole_run():
    norm = normalize("太慢！！！")
    assert norm.text == "太慢!"
    assert norm.to_original(2, 3) == (2, 5)


def test_span_outside_text_is_rejected():
    with pytest.raises(ValueError):
        normalize("好").to_original(0, 2)


def test_non_string_is_rejected():
    with pytest.raises(TypeError):
        normalize(None)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("等了半天慢態度差！!？? \t\n@http://x.cn/a👍🏻[怒]ＡＢ") + ["\u200b", "\x00"]), max_size=60))
def test_offsets_are_monotonic_and_in_bounds(text):
    norm = normalize(text)
    assert len(norm.starts) == len(norm.ends) == len(norm.text)
    for a, b in zip(norm.starts, norm.ends):
        assert 0 <= a < b <= len(text)
    assert list(norm.starts) == sorted(norm.starts)
    assert list(norm.ends) == sorted(norm.ends)
