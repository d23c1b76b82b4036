"""Satisfaction drivers (交叉分析): which problems cost the score beside the comments, and how much.

For each problem: the mean score of comments with it and without it, the difference (its
impact: negative = it costs satisfaction) with a 95% Welch interval, and the points it costs
the overall mean (share × −impact), ranked, so the first row is the problem to fix first. A
least-squares regression of the score on all problems at once separates problems that come
together (a slow reply that also went unresolved). For NPS (0-10): promoters (9-10), passives
(7-8), detractors (0-6) and the NPS of the comments with each problem.

Everything is kept as sums (counts, sums of scores and squares, X'X and X'y of the
regression), so a file of any length is aggregated chunk by chunk in constant memory and the
regression equals ordinary least squares on all rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["KINDS", "DriverStats", "DriversAccumulator", "detect_kind", "parse_scores"]

KINDS = ("csat", "nps", "number")
KIND_RANGES = {"csat": (1.0, 5.0), "nps": (0.0, 10.0)}  # integer scales; "number" takes any finite value
MIN_GROUP_ROWS = 10  # fewer comments with (or without) a problem give no interval: the difference is noise
MIN_ROWS_PER_TERM = 20  # the regression needs this many scored comments per coefficient (and each problem present 10 times)


def detect_kind(column: str, values: pd.Series) -> str:
    """csat (integers 1-5), nps (integers 0-10 reaching above 5 or down to 0) or number, from the
    column's name when it says so, else from its values (the first chunk's)."""
    name = column.lower()
    if "nps" in name or "推荐" in column:
        return "nps"
    if "csat" in name or "满意" in column:
        return "csat"
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    if numbers.empty or not np.all(np.isclose(numbers, np.round(numbers))):
        return "number"
    low, high = numbers.min(), numbers.max()
    if low >= 1 and high <= 5:
        return "csat"
    if low >= 0 and high <= 10:
        return "nps"
    return "number"


def parse_scores(values: pd.Series, kind: str) -> tuple[np.ndarray, dict[str, int]]:
    """Scores as floats (NaN where unusable) and how many were blank, not a number, or out of range."""
    text = values.map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v).strip())
    blank = text == ""
    numbers = pd.to_numeric(text.where(~blank), errors="coerce")
    not_number = numbers.isna() & ~blank
    finite = np.isfinite(numbers.to_numpy(dtype=np.float64, na_value=np.nan))
    out_of_range = ~blank & ~not_number & ~finite
    if kind in KIND_RANGES:
        low, high = KIND_RANGES[kind]
        value = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            bad = (value < low) | (value > high) | ~np.isclose(value, np.round(value))
        out_of_range |= pd.Series(bad & finite, index=values.index)
    scores = np.array(numbers.to_numpy(dtype=np.float64, na_value=np.nan), copy=True)  # pandas may hand out a read-only view
    scores[(blank | not_number | out_of_range).to_numpy()] = np.nan
    return scores, {"blank": int(blank.sum()), "not_a_number": int(not_number.sum()), "out_of_range": int(out_of_range.sum())}


@dataclass
class _Sums:
    n: int = 0
    total: float = 0.0
    squares: float = 0.0
    nps: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=np.int64))  # promoters, passives, detractors

    def mean(self) -> float:
        return self.total / self.n if self.n else float("nan")

    def variance(self) -> float:
        if self.n < 2:
            return float("nan")
        return max((self.squares - self.total * self.total / self.n) / (self.n - 1), 0.0)

    def minus(self, other: "_Sums") -> "_Sums":
        return _Sums(self.n - other.n, self.total - other.total, self.squares - other.squares, self.nps - other.nps)


def _nps_counts(scores: np.ndarray) -> np.ndarray:
    return np.array([(scores >= 9).sum(), ((scores >= 7) & (scores < 9)).sum(), (scores < 7).sum()], dtype=np.int64)


def nps_of(counts: np.ndarray) -> float:
    total = counts.sum()
    return float((counts[0] - counts[2]) / total * 100) if total else float("nan")


@dataclass
class DriverStats:
    tag: str
    with_n: int  # scored comments with the problem
    mean_with: float
    without_n: int
    mean_without: float
    impact: float  # mean with − mean without (negative = the problem costs satisfaction)
    ci_low: float | None  # 95% Welch interval of the impact; None with fewer than MIN_GROUP_ROWS on a side
    ci_high: float | None
    share: float  # share of scored comments with the problem
    points_lost: float  # share × −impact: how much higher the overall mean would be without the gap
    adjusted: float | None = None  # regression coefficient, adjusting for the other problems
    adjusted_low: float | None = None
    adjusted_high: float | None = None
    nps_with: float | None = None  # NPS of the comments with the problem (nps kind only)
    nps_without: float | None = None


class DriversAccumulator:
    """Sums per chunk; `drivers()` at the end. Rows passed in have text and a usable score."""

    def __init__(self, tags: list[str], kind: str):
        self.tags = tags
        self.kind = kind
        self.all = _Sums()
        self.per_tag = {t: _Sums() for t in tags}
        k = len(tags) + 1
        self.xtx = np.zeros((k, k))
        self.xty = np.zeros(k)

    def add(self, flags: np.ndarray, scores: np.ndarray) -> None:
        """`flags` (rows × tags, 0/1) and `scores` of comments with a usable score."""
        if not len(scores):
            return
        self._update(self.all, scores)
        for j, tag in enumerate(self.tags):
            self._update(self.per_tag[tag], scores[flags[:, j] == 1])
        design = np.hstack([np.ones((len(scores), 1)), flags.astype(np.float64)])
        self.xtx += design.T @ design
        self.xty += design.T @ scores

    def _update(self, sums: _Sums, scores: np.ndarray) -> None:
        sums.n += len(scores)
        sums.total += float(scores.sum())
        sums.squares += float((scores * scores).sum())
        if self.kind == "nps":
            sums.nps += _nps_counts(scores)

    @property
    def n(self) -> int:
        return self.all.n

    def drivers(self) -> list[DriverStats]:
        """Per problem, ranked by points lost (most first)."""
        from scipy import stats

        adjusted = self.regression()
        out = []
        for j, tag in enumerate(self.tags):
            with_ = self.per_tag[tag]
            without = self.all.minus(with_)
            impact = with_.mean() - without.mean() if with_.n and without.n else float("nan")
            low = high = None
            if with_.n >= MIN_GROUP_ROWS and without.n >= MIN_GROUP_ROWS:
                a, b = with_.variance() / with_.n, without.variance() / without.n
                se = math.sqrt(a + b)
                if se > 0:
                    # Welch-Satterthwaite degrees of freedom: the two groups need not share a variance.
                    df = (a + b) ** 2 / (a * a / (with_.n - 1) + b * b / (without.n - 1)) if a or b else with_.n + without.n - 2
                    half = float(stats.t.ppf(0.975, df)) * se
                else:
                    half = 0.0
                low, high = impact - half, impact + half
            share = with_.n / self.all.n if self.all.n else 0.0
            row = DriverStats(
                tag, with_.n, with_.mean(), without.n, without.mean(), impact, low, high, share,
                share * -impact if not math.isnan(impact) else float("nan"),
            )
            if adjusted is not None:
                row.adjusted, row.adjusted_low, row.adjusted_high = adjusted[j]
            if self.kind == "nps":
                row.nps_with, row.nps_without = nps_of(with_.nps), nps_of(without.nps)
            out.append(row)
        return sorted(out, key=lambda d: (math.isnan(d.points_lost), -d.points_lost if not math.isnan(d.points_lost) else 0.0))

    def regression(self) -> list[tuple[float, float, float]] | None:
        """OLS of the score on an intercept and every problem flag, from the summed X'X and X'y:
        (coefficient, 95% low, 95% high) per problem; None with too few rows or a problem absent
        (or always present), where the coefficients are not identified."""
        from scipy import stats

        n, k = self.all.n, len(self.tags) + 1
        present = np.diag(self.xtx)[1:]
        if n < MIN_ROWS_PER_TERM * k or (present < MIN_GROUP_ROWS).any() or (n - present < MIN_GROUP_ROWS).any():
            return None
        try:
            inverse = np.linalg.inv(self.xtx)
        except np.linalg.LinAlgError:
            return None
        beta = inverse @ self.xty
        residual = max(self.all.squares - float(beta @ self.xty), 0.0)
        sigma2 = residual / (n - k)
        se = np.sqrt(np.clip(np.diag(inverse) * sigma2, 0.0, None))
        t = float(stats.t.ppf(0.975, n - k))
        return [(float(beta[j]), float(beta[j] - t * se[j]), float(beta[j] + t * se[j])) for j in range(1, k)]

    def nps(self) -> dict | None:
        if self.kind != "nps":
            return None
        counts = self.all.nps
        return {"promoters": int(counts[0]), "passives": int(counts[1]), "detractors": int(counts[2]), "nps": nps_of(counts)}
