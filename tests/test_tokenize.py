import pytest

from kesheng.nlp import WordTokenizer, normalize


@pytest.fixture(scope="module")
def tokenizer():
    return WordTokenizer.shared()


def words(tokenizer, text):
    return [t.word for t in tokenizer.tokenize(text)]


def negated(tokenizer, text):
    return [t.word for t in tokenizer.tokenize(text) if t.negated]


@pytest.mark.parametrize("term", ["转人工", "工单", "催单", "退款", "扣费", "套餐", "踢皮球", "不耐烦", "营业厅", "骑手"])
def test_domain_words_stay_whole(tokenizer, term):
    assert term in words(tokenizer, f"我说{term}的事")


@pytest.mark.parametrize(
    "text,expected_negated",
    [
        ("送餐不慢", ["慢"]),
        ("一点也不敷衍", ["敷衍"]),
        ("没等多久", ["等", "多久"]),
        ("客服态度很好", []),
        ("客服很不耐烦", []),  # 不耐烦 is a word, not a negation of 耐烦
        ("不慢，但是态度差", ["慢"]),  # scope ends at the clause boundary
    ],
)
def test_negation_scope(tokenizer, text, expected_negated):
    assert negated(tokenizer, text) == expected_negated


def test_offsets_index_the_text(tokenizer):
    text = normalize("等了半小時都沒人接電話[怒]").text
    for token in tokenizer.tokenize(text):
        assert text[token.start : token.end] == token.word


def test_weibo_codes_are_single_tokens(tokenizer):
    assert "[抓狂]" in words(tokenizer, "又掉线了[抓狂]")
