import pytest

from kesheng.nlp import WordTokenizer, normalize
from kesheng.nlp.tokenize import BACKENDS


@pytest.fixture(scope="module", params=BACKENDS)
def tokenizer(request):
    """Every test runs on both segmenters: jieba-rs (the default) and jieba (the fallback)."""
    return WordTokenizer(backend=request.param)


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


@pytest.mark.parametrize(
    "text",
    [
        "客服态度很差，打客服电话没人接，转人工也没用",
        "工作人员让我去别的营业厅办理，来回跑了三趟",
        "外卖小哥送餐超时一个小时，骑手还不接电话，催单也没人理",
        "套餐扣费不明不白，客服踢皮球，工单提交三次都没回复",
        "酒店前台办理入住很快，房间干净，早餐丰富",
        "等了半小时都没人接电话[怒]，再不解决我就投诉到12315",
    ],
)
def test_both_segmenters_cut_our_sentences_the_same(text):
    cut = {backend: [(t.word, t.start, t.end, t.negated) for t in WordTokenizer(backend=backend).tokenize(normalize(text).text)] for backend in BACKENDS}
    assert cut["rjieba"] == cut["jieba"]


def test_the_default_segmenter_is_jieba_rs_and_survives_a_copy_to_another_process():
    import pickle

    tokenizer = WordTokenizer()
    assert tokenizer.backend == "rjieba"
    copy = pickle.loads(pickle.dumps(tokenizer))
    assert copy.backend == "rjieba" and words(copy, "我要转人工") == words(tokenizer, "我要转人工")
    with pytest.raises(ValueError, match="backend"):
        WordTokenizer(backend="pkuseg")
