"""Period alerts: a problem whose share rose significantly against the previous period.

Each period is compared with the one before it, per problem, by a one-sided two-proportion
z-test (pooled); the p-values of every comparison made (problems × period pairs) are corrected
together with Holm's step-down method, so the chance of any false alert in the whole report
stays at `alpha`. A period with fewer than `min_period_rows` comments is not compared (a note
says so), and a rise needs at least `min_count` tagged comments in the later period.
Shares here are raw: the same model tagged both periods, and a rise in the raw share is a rise
in the true one whenever the model separates the tag at all (the correction is increasing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

__all__ = ["Alert", "AlertSettings", "find_alerts", "holm"]

# How the latest period is named in an alert, per pandas period code.
CURRENT_NAMES = {"M": ("本月", "上月"), "W": ("本周", "上周"), "D": ("当日", "前一日"), "Q": ("本季度", "上季度"), "Y": ("本年", "上年")}


@dataclass(frozen=True)
class AlertSettings:
    alpha: float = 0.05  # family-wise error rate over every comparison in the report
    min_period_rows: int = 100  # periods with fewer comments are neither compared nor compared against
    min_count: int = 5  # a rise needs at least this many tagged comments in the later period


@dataclass(frozen=True)
class Alert:
    tag: str
    period: str
    previous: str
    share: float
    previous_share: float
    count: int
    n: int
    previous_count: int
    previous_n: int
    p_value: float  # one-sided, before correction
    p_adjusted: float  # Holm-adjusted over every comparison made
    latest: bool  # the comparison of the last period with the one before: what the top of the report says first


def _rise_p_value(x1: int, n1: int, x2: int, n2: int) -> float:
    """One-sided p-value that the second share is higher (pooled two-proportion z-test)."""
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = (x2 / n2 - x1 / n1) / se
    return 0.5 * math.erfc(z / math.sqrt(2))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (monotone, capped at 1), in the input order."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _follows(earlier: str, later: str, period_code: str) -> bool:
    """Whether `later` is the period right after `earlier` (a gap means no previous period to compare with)."""
    try:
        return str(pd.Period(earlier, freq=period_code) + 1) == later
    except (ValueError, TypeError):
        return True  # a period pandas cannot parse back: compare with the row before it, as the trend shows it


def find_alerts(
    trend: pd.DataFrame, tags: list[str], period_code: str = "M", settings: AlertSettings = AlertSettings()
) -> tuple[list[Alert], list[str], int]:
    """Significant rises, notes on periods that could not be compared, and the number of comparisons made.

    `trend`: one row per period in time order, column `n` (comments) and one count column per tag.
    """
    periods = [str(p) for p in trend.index]
    sizes = [int(v) for v in trend["n"]]
    small = [(p, n) for p, n in zip(periods, sizes) if n < settings.min_period_rows]
    notes = []
    if small:
        named = "、".join(f"{p} ({n:,} 条)" for p, n in small[:4]) + (f" 等 {len(small)} 期" if len(small) > 4 else "")
        notes.append(f"{named} 评论不足 {settings.min_period_rows} 条, 不做升降预警 (占比波动太大, 无法判断是否显著)。")
    tests = []
    for i in range(1, len(periods)):
        n1, n2 = sizes[i - 1], sizes[i]
        if n1 < settings.min_period_rows or n2 < settings.min_period_rows:
            continue
        if not _follows(periods[i - 1], periods[i], period_code):
            notes.append(f"{periods[i]} 的上一期没有评论, 未与 {periods[i - 1]} 比较。")
            continue
        for tag in tags:
            x1, x2 = int(trend[tag].iloc[i - 1]), int(trend[tag].iloc[i])
            tests.append((tag, i, x1, n1, x2, n2, _rise_p_value(x1, n1, x2, n2)))
    adjusted = holm([t[-1] for t in tests])
    alerts = [
        Alert(tag, periods[i], periods[i - 1], x2 / n2, x1 / n1, x2, n2, x1, n1, p, q, i == len(periods) - 1)
        for (tag, i, x1, n1, x2, n2, p), q in zip(tests, adjusted)
        if q < settings.alpha and x2 >= settings.min_count and x2 / n2 > x1 / n1
    ]
    alerts.sort(key=lambda a: (not a.latest, a.p_adjusted))
    return alerts, notes, len(tests)


def alert_sentence(alert: Alert, label: str, period_code: str) -> str:
    """"响应缓慢 本月 (2026-03) 25.0%（上月 2026-02 12.0%），显著上升"."""
    current, before = CURRENT_NAMES.get(period_code, ("本期", "上期")) if alert.latest else ("", "")
    now = f"{current} ({alert.period})" if current else alert.period
    then = f"{before} {alert.previous}" if before else alert.previous
    return f"{label} {now} {alert.share * 100:.1f}%（{then} {alert.previous_share * 100:.1f}%），显著上升"
