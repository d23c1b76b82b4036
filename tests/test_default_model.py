"""The bundled model: loads from the package, and gets obvious cases right (incl. negation)."""

import pytest

from kesheng.models.base import FORMAT_VERSION
from kesheng.stores.registry import load_model, resolve_model


@pytest.fixture(scope="module")
def bundled():
    return load_model()


def test_bundled_model_is_current(bundled):
    assert resolve_model().is_dir()
    assert bundled.meta_["format_version"] == FORMAT_VERSION
    assert bundled.metrics_["test"]["n"] > 0


def test_env_var_picks_the_model(monkeypatch, model_dir):
    monkeypatch.setenv("KESHENG_MODEL", str(model_dir))
    assert resolve_model() == model_dir


@pytest.mark.parametrize(
    "text,present,absent",
    [
        ("等了半小时都没人接电话", {"slow_response"}, {"opacity"}),
        ("修了三次还是不行，到现在都没解决", {"unresolved"}, set()),
        ("客服很不耐烦，说两句就把电话挂了", {"attitude"}, set()),
        ("这个月话费莫名其妙多扣了20元", {"opacity"}, {"attitude"}),
        # Positive mentions of attitude and speed, negated problems: no tags.
        ("客服态度很好，处理得很及时", set(), {"attitude", "slow_response"}),
        ("送餐一点也不慢", set(), {"slow_response"}),
        ("菜有点咸，分量还可以", set(), {"slow_response", "unresolved", "attitude", "opacity"}),
    ],
)
def test_obvious_cases(bundled, text, present, absent):
    (p,) = bundled.predict([text])
    assert present <= set(p.tags), p
    assert not (absent & set(p.tags)), p


@pytest.mark.parametrize("text,sentiment", [("非常满意，谢谢你们", "positive"), ("太差劲了，再也不来了", "negative"), ("请问怎么开发票？", "neutral")])
def test_obvious_sentiment(bundled, text, sentiment):
    assert bundled.predict([text])[0].sentiment == sentiment
