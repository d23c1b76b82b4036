"""Problem shares corrected for the tagging model's known errors, with 95% intervals.

A raw share (comments the model tagged X / comments) is biased: the model misses some true X
(recall, the true-positive rate TPR) and tags some comments that are not X (the false-positive
rate FPR). With both rates measured on labeled rows the model never trained on, the true share
p satisfies raw = p·TPR + (1 − p)·FPR, so

    adjusted classify-and-count (ACC):   p = (raw − FPR) / (TPR − FPR), clipped to [0, 1]

and its probabilistic variant (PACC) does the same with mean scores in place of 0/1 tags
(Forman 2008; Bella et al. 2010; QuaPy's ACC and PACC). The interval is a parametric bootstrap
that carries both sources of error: TPR and FPR are drawn from their Beta posteriors given the
stored counts (Jeffreys prior), the raw share from the binomial of the file's comments, and the
estimate is recomputed per draw. Rates differ by kind of comment (a complaint thread against a
single review, and by length: `kesheng.nlp.strata`), so where the stored rates have a cell per
kind, each kind's share in the file is corrected with its own rates and the estimates are summed
weighted by the file's counts (stratified ACC); a kind without usable rates contributes its raw
share. The rates live in the model directory's metrics.json
(`share_correction`, written by training and by `kesheng evaluate --store-rates`); a file tagged
by a model without them gets raw shares, labeled as such.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from kesheng.models.base import METRICS_FILE, ModelLoadError, read_json, read_model_version
from kesheng.nlp.strata import LENGTH_EDGES
from kesheng.stores.registry import known_model_dir

__all__ = [
    "METHODS",
    "ShareCell",
    "ShareEstimate",
    "ShareRates",
    "TagRates",
    "acc",
    "estimate_share",
    "estimate_stratified_share",
    "load_share_rates",
    "pacc",
    "rates_from_metrics",
]

SHARE_CORRECTION = "share_correction"  # metrics.json key (kesheng.training.evaluate.SHARE_CORRECTION; analysis never imports training)
METHODS = ("acc", "pacc")
BOOTSTRAP_DRAWS = 4000  # enough for stable 2.5/97.5 percentiles (their Monte Carlo error is well under 0.5 point)
# Below this TPR − FPR the classifier barely separates the tag from the rest: dividing by it
# would turn noise into a share, so the raw share is shown instead.
MIN_SEPARATION = 0.2


@dataclass(frozen=True)
class ScoreMoments:
    n: int  # labeled rows
    mean: float  # mean score among them
    sd: float  # standard deviation of the score among them


@dataclass(frozen=True)
class TagRates:
    tp: int  # labeled positives the model tagged
    fn: int  # labeled positives it missed
    fp: int  # labeled negatives it tagged
    tn: int  # labeled negatives it left untagged
    score_positive: ScoreMoments | None = None  # the tag's score among labeled positives (for PACC)
    score_negative: ScoreMoments | None = None  # and among labeled negatives

    @property
    def tpr(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def fpr(self) -> float:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else float("nan")


@dataclass(frozen=True)
class ShareRates:
    measured_on: str  # which labeled rows the rates come from (shown in the report)
    tags: dict[str, TagRates]  # per tag
    other: TagRates | None = None  # "no tag at all" (其他) as a tag of its own
    # The same rates per kind of comment (kesheng.nlp.strata key -> rates measured on those rows); empty: pooled only.
    strata: dict[str, "ShareRates"] = field(default_factory=dict)
    length_edges: tuple[int, ...] = LENGTH_EDGES  # the length bands the strata keys were computed with


@dataclass(frozen=True)
class ShareEstimate:
    count: int  # comments tagged
    n: int  # comments (the denominator)
    raw: float  # count / n
    estimate: float  # the corrected share (the raw share when method is "raw")
    ci_low: float | None  # 95% interval; None when there is nothing to estimate (n = 0)
    ci_high: float | None
    method: str  # "acc", "pacc" or "raw" (no usable rates)


def _moments(entry) -> ScoreMoments | None:
    if not isinstance(entry, Mapping) or entry.get("mean") is None or entry.get("sd") is None:
        return None
    return ScoreMoments(int(entry["n"]), float(entry["mean"]), float(entry["sd"]))


def _tag_rates(entry: Mapping) -> TagRates:
    counts = {k: int(entry[k]) for k in ("tp", "fn", "fp", "tn")}
    if any(v < 0 for v in counts.values()):
        raise ValueError(f"negative counts {counts}")
    return TagRates(**counts, score_positive=_moments(entry.get("score_positive")), score_negative=_moments(entry.get("score_negative")))


def rates_from_metrics(metrics: Mapping) -> ShareRates | None:
    """The share-correction block of a model's metrics.json, or None when it has none."""
    block = metrics.get(SHARE_CORRECTION) if isinstance(metrics, Mapping) else None
    if not block:
        return None
    try:
        pooled = _cell_rates(block, str(block.get("measured_on", "")))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None  # an unreadable block is treated as absent: raw shares, labeled as such
    try:
        strata = block.get("strata") or {}
        cells = {str(key): _cell_rates(cell, pooled.measured_on) for key, cell in strata.get("cells", {}).items()}
        edges = tuple(int(edge) for edge in strata.get("length_edges", LENGTH_EDGES))
    except (KeyError, TypeError, ValueError, AttributeError):
        return pooled  # unreadable strata: the pooled rates still hold
    return ShareRates(pooled.measured_on, pooled.tags, pooled.other, cells, edges)


def _cell_rates(block: Mapping, measured_on: str) -> ShareRates:
    tags = {name: _tag_rates(entry) for name, entry in block["tags"].items()}
    other = _tag_rates(block["other"]) if block.get("other") else None
    return ShareRates(measured_on, tags, other)


def load_share_rates(model_version: str | None, model_dir: str | os.PathLike | None = None) -> ShareRates | None:
    """The stored rates of the model that tagged a file: `model_dir` when given (its version must
    match), else the registry's or the bundled copy of `model_version`; None when unknown."""
    directory = Path(model_dir) if model_dir is not None else (known_model_dir(model_version) if model_version else None)
    if directory is None or (model_version and read_model_version(directory) != model_version):
        return None
    try:
        return rates_from_metrics(read_json(directory, METRICS_FILE))
    except ModelLoadError:
        return None


def acc(raw, tpr, fpr):
    """Adjusted classify-and-count, clipped to [0, 1] (arrays broadcast)."""
    return np.clip((np.asarray(raw, dtype=np.float64) - fpr) / (np.asarray(tpr, dtype=np.float64) - fpr), 0.0, 1.0)


# PACC is ACC with the mean score among positives and negatives in place of TPR and FPR.
pacc = acc


@dataclass(frozen=True)
class ShareCell:
    """One kind of comment in a file, for one tag: what the file shows and the rates to correct it with."""

    count: int  # comments of this kind tagged
    n: int  # comments of this kind
    rates: TagRates | None  # the tag's rates on this kind; None: not measured
    score_sum: float | None = None  # sum of the tag's score over the n comments (PACC)
    score_sq_sum: float | None = None  # and of its square


def estimate_share(
    count: int,
    n: int,
    rates: TagRates | None,
    method: str = "acc",
    score_sum: float | None = None,
    score_sq_sum: float | None = None,
    draws: int = BOOTSTRAP_DRAWS,
    seed: int = 0,
) -> ShareEstimate:
    """The corrected share of one tag and its 95% interval.

    `count` of `n` comments were tagged; for PACC, `score_sum` and `score_sq_sum` are the sum and
    sum of squares of the tag's score over those `n` comments. Without usable rates (none
    stored, or a tag the rates do not separate) the raw share is returned with its binomial
    (Wilson) interval and method "raw".
    """
    return estimate_stratified_share([ShareCell(count, n, rates, score_sum, score_sq_sum)], method, draws, seed)


def estimate_stratified_share(cells: list[ShareCell], method: str = "acc", draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> ShareEstimate:
    """The share of one tag over a file made of `cells` (kinds of comment): each cell corrected
    with its own rates, the estimates weighted by the cells' sizes; every cell's sampling and rate
    uncertainty is drawn independently in one bootstrap. A cell without usable rates counts raw."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    count = sum(cell.count for cell in cells)
    n = sum(cell.n for cell in cells)
    raw = count / n if n else 0.0
    if n == 0:
        return ShareEstimate(count, n, raw, raw, None, None, "raw")
    rng = np.random.default_rng(seed)
    point = 0.0
    total = np.zeros(draws)
    methods = set()
    for cell in cells:
        if cell.n == 0:
            continue
        corrected = _correct_cell(cell, method, draws, rng)
        if corrected is None:
            cell_raw = cell.count / cell.n
            point += cell.count
            total += rng.binomial(cell.n, cell_raw, draws)
            continue
        cell_point, cell_draws, name = corrected
        methods.add(name)
        point += cell_point * cell.n
        total += cell_draws * cell.n
    if not methods:
        low, high = wilson(count, n)
        return ShareEstimate(count, n, raw, raw, low, high, "raw")
    low, high = np.percentile(total / n, [2.5, 97.5])
    name = "pacc" if methods == {"pacc"} else "acc"
    return ShareEstimate(count, n, raw, point / n, float(low), float(high), name)


def _correct_cell(cell: ShareCell, method: str, draws: int, rng: np.random.Generator) -> tuple[float, np.ndarray, str] | None:
    """The corrected share of one cell and its bootstrap draws; None when its rates are unusable."""
    rates, n = cell.rates, cell.n
    if rates is None or not rates.tp + rates.fn or not rates.fp + rates.tn or rates.tpr - rates.fpr < MIN_SEPARATION:
        return None
    raw = cell.count / n
    if method == "pacc" and rates.score_positive and rates.score_negative and cell.score_sum is not None:
        positive, negative = rates.score_positive, rates.score_negative
        mean = cell.score_sum / n
        variance = max(cell.score_sq_sum / n - mean * mean, 0.0) if cell.score_sq_sum is not None else mean * (1 - mean)
        # Means of many scores are near-normal: each mean is drawn around its value with its standard error.
        high_mean = rng.normal(positive.mean, positive.sd / math.sqrt(max(positive.n, 1)), draws)
        low_mean = rng.normal(negative.mean, negative.sd / math.sqrt(max(negative.n, 1)), draws)
        sample = rng.normal(mean, math.sqrt(variance / n), draws)
        return float(pacc(mean, positive.mean, negative.mean)), _ratio(sample, high_mean, low_mean), "pacc"
    tpr = rng.beta(rates.tp + 0.5, rates.fn + 0.5, draws)
    fpr = rng.beta(rates.fp + 0.5, rates.tn + 0.5, draws)
    sample = rng.binomial(n, raw, draws) / n
    return float(acc(raw, rates.tpr, rates.fpr)), _ratio(sample, tpr, fpr), "acc"


def _ratio(sample: np.ndarray, high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """ACC per draw; a draw whose rates do not separate (high <= low) keeps the sample unadjusted,
    so every draw stays aligned with the other cells' draws when cells are summed."""
    separated = high - low > 1e-9
    adjusted = acc(sample, np.where(separated, high, 1.0), np.where(separated, low, 0.0))
    return np.where(separated, adjusted, np.clip(sample, 0.0, 1.0))


def wilson(count: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion."""
    if n == 0:
        return 0.0, 0.0
    p = count / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
