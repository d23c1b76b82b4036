"""One model's scores with bootstrap intervals (what benchmarks/bench_quality.py prints)."""

import numpy as np

from kesheng.models import Prediction
from kesheng.models.schema import DEFAULT_TAXONOMY
from kesheng.training.compare import score_intervals
from kesheng.training.data import LabeledSet

NAMES = DEFAULT_TAXONOMY.names


def _prediction(tags, sentiment):
    scores = {n: float(n in tags) for n in NAMES}
    return Prediction(list(tags), scores, sentiment, {s: float(s == sentiment) for s in ("negative", "neutral", "positive")})


def _data(rows):
    tags = np.array([[int(n in t) for n in NAMES] for t, _ in rows], dtype=np.int8)
    return LabeledSet([f"r{i}" for i in range(len(rows))], [f"评论{i}" for i in range(len(rows))], tags, [s for _, s in rows], DEFAULT_TAXONOMY, [])


def test_perfect_predictions_score_one_with_a_degenerate_interval():
    rows = [(("slow_response",), "negative"), (("opacity", "attitude"), "negative"), ((), "positive"), (("unresolved",), "neutral")] * 10
    scores = score_intervals(_data(rows), [_prediction(t, s) for t, s in rows], n_bootstrap=200)
    assert scores["macro_f1"] == {"value": 1.0, "low": 1.0, "high": 1.0}
    assert scores["sentiment_macro_f1"]["value"] == 1.0
    assert scores["tags"]["slow_response"]["positives"] == 10


def test_intervals_contain_the_point_and_narrow_with_more_comments():
    rng = np.random.default_rng(3)
    def sample(n):
        rows = [(tuple(t for t in NAMES if rng.random() < 0.3), "negative") for _ in range(n)]
        flipped = [(tuple(t for t in NAMES if (t in tags) != (rng.random() < 0.2)), s) for tags, s in rows]
        return score_intervals(_data(rows), [_prediction(t, s) for t, s in flipped], n_bootstrap=300)
    small, large = sample(100), sample(1600)
    for scores in (small, large):
        m = scores["macro_f1"]
        assert m["low"] <= m["value"] <= m["high"]
    width = lambda s: s["macro_f1"]["high"] - s["macro_f1"]["low"]  # noqa: E731
    assert width(large) < width(small) / 2
