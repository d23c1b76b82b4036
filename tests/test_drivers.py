"""Satisfaction drivers and period alerts: planted effects come out in the planted order, the
streamed regression equals least squares on all rows, bad scores are counted, small periods get
no alert."""

import csv
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from kesheng.analysis.alerts import AlertSettings, find_alerts, holm
from kesheng.analysis.drivers import DriversAccumulator, detect_kind, parse_scores
from kesheng.analysis.report import ReportOptions, build_report, drivers_table, report_json, summary_sentences
from kesheng.cli.main import app

TAGS = ["slow_response", "unresolved", "attitude", "opacity"]
# Planted: each problem lowers the score by this much; opacity costs nothing.
EFFECTS = {"slow_response": -1.2, "unresolved": -0.8, "attitude": -0.4, "opacity": 0.0}


def _planted(n: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    flags = (rng.random((n, len(TAGS))) < 0.25).astype(np.int64)
    # Co-occurrence: unresolved comes with slow replies more often, so simple differences mix them.
    flags[:, 1] |= (flags[:, 0] == 1) & (rng.random(n) < 0.3)
    scores = 4.2 + flags @ np.array([EFFECTS[t] for t in TAGS]) + rng.normal(0, 0.6, n)
    return flags, scores


def test_planted_drivers_rank_in_the_planted_order_and_the_regression_recovers_the_effects():
    flags, scores = _planted(4000)
    accumulator = DriversAccumulator(TAGS, "number")
    for chunk in np.array_split(np.arange(4000), 7):  # streamed in chunks, as a big file is
        accumulator.add(flags[chunk], scores[chunk])
    drivers = accumulator.drivers()
    assert [d.tag for d in drivers] == ["slow_response", "unresolved", "attitude", "opacity"]
    for d in drivers:
        assert d.adjusted_low < EFFECTS[d.tag] < d.adjusted_high
        assert d.ci_low < d.impact < d.ci_high and d.points_lost == pytest.approx(d.share * -d.impact)
    costly = [d for d in drivers if d.ci_high < 0]
    assert [d.tag for d in costly] == ["slow_response", "unresolved", "attitude"]
    from sklearn.linear_model import LinearRegression

    fitted = LinearRegression().fit(flags, scores)
    by_tag = {d.tag: d.adjusted for d in drivers}
    assert [by_tag[t] for t in TAGS] == pytest.approx(list(fitted.coef_), abs=1e-9)


def test_the_simple_difference_and_its_welch_interval():
    accumulator = DriversAccumulator(["a"], "csat")
    flags = np.array([[1]] * 20 + [[0]] * 30)
    scores = np.array([2.0, 3.0] * 10 + [4.0, 5.0, 4.0] * 10)
    accumulator.add(flags, scores)
    (d,) = accumulator.drivers()
    assert d.mean_with == pytest.approx(2.5) and d.mean_without == pytest.approx(13 / 3) and d.impact == pytest.approx(2.5 - 13 / 3)
    from scipy import stats

    welch = stats.ttest_ind(scores[:20], scores[20:], equal_var=False)
    low, high = welch.confidence_interval(0.95)
    assert (d.ci_low, d.ci_high) == pytest.approx((low, high), rel=1e-6)
    assert accumulator.regression()[0][0] == pytest.approx(d.impact)  # one problem: least squares is the difference of means
    few = DriversAccumulator(["a", "b"], "csat")
    few.add(np.array([[1, 0], [0, 1]] * 15), np.arange(30.0))
    assert few.regression() is None  # 30 rows for 3 coefficients: too few


def test_score_kinds_are_detected_and_bad_values_counted():
    assert detect_kind("score", pd.Series(["1", "5", "3"])) == "csat"
    assert detect_kind("score", pd.Series(["0", "9", "10"])) == "nps"
    assert detect_kind("NPS", pd.Series(["1", "2"])) == "nps" and detect_kind("满意度", pd.Series(["7.5"])) == "csat"
    assert detect_kind("score", pd.Series(["-0.5", "1.2"])) == "number"
    scores, issues = parse_scores(pd.Series(["5", "", "很好", "7", "3.5", None, "2"]), "csat")
    assert np.isnan(scores[[1, 2, 3, 4, 5]]).all() and list(scores[[0, 6]]) == [5.0, 2.0]
    assert issues == {"blank": 2, "not_a_number": 1, "out_of_range": 2}
    scores, issues = parse_scores(pd.Series(["-3.5", "inf", "x"]), "number")
    assert scores[0] == -3.5 and issues == {"blank": 0, "not_a_number": 1, "out_of_range": 1}


def _tagged_rows(n: int, seed: int = 1) -> list[dict]:
    flags, scores = _planted(n, seed)
    rows = []
    for i in range(n):
        row = {"id": f"r{i}", "text": f"第{i}条评论", "date": f"2025-{1 + i * 3 // n:02d}-15", "channel": "app" if i % 2 else "电话"}
        for j, tag in enumerate(TAGS):
            row[tag] = int(flags[i, j])
            row[f"{tag}_score"] = 0.9 if flags[i, j] else 0.1
        row.update(sentiment="negative" if flags[i].any() else "positive", sentiment_score=0.9, evidence="[]", notes="")
        row["csat"] = str(int(np.clip(np.round(scores[i]), 1, 5)))
        rows.append(row)
    return rows


def _write(path, rows):
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_report_drivers_from_a_tagged_file_with_bad_scores(tmp_path):
    rows = _tagged_rows(1500)
    for i, bad in enumerate(["", "不知道", "9", "0", "4.5"]):
        rows[i]["csat"] = bad
    source = _write(tmp_path / "tagged.csv", rows)
    data = build_report(source, ReportOptions(text_column="text", score_column="csat"))
    assert data.score_kind == "csat" and data.score_kind_detected
    assert dict(data.score_issues) == {"blank": 1, "not_a_number": 1, "out_of_range": 3} and data.driver_rows == 1495
    assert [d.tag for d in data.drivers][:3] == ["slow_response", "unresolved", "attitude"]
    table = drivers_table(data)
    assert list(table.columns[:4]) == ["问题类型", "提及条数", "有该问题均分", "无该问题均分"] and table["调整后差值"].notna().all()
    document = report_json(data)
    assert [d["tag"] for d in document["drivers"]][:3] == ["slow_response", "unresolved", "attitude"]
    assert set(document["drivers"][0]) >= {"tag", "impact", "ci_low", "ci_high", "points_lost"}
    assert document["data_quality"]["score_issues"] == {"blank": 1, "not_a_number": 1, "out_of_range": 3}
    assert any("响应缓慢" in s and "优先解决" in s for s in summary_sentences(data))
    result = CliRunner().invoke(app, ["report", "-i", str(source), "-o", str(tmp_path / "r.html"), "-o", str(tmp_path / "r.json"), "--score-column", "csat", "--text-column", "text"])
    assert result.exit_code == 0, result.output
    assert "5 comments with a blank, non-numeric or out-of-range score left out" in result.output
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "满意度驱动因素 (按 csat)" in page and "评分超出范围 (csat): 3 条" in page
    assert json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["satisfaction"]["rows"] == 1495


def test_nps_scores_give_promoters_passives_detractors_per_problem(tmp_path):
    rows = _tagged_rows(400)
    for row in rows:
        row["nps"] = "3" if row["slow_response"] else ("10" if int(row["id"][1:]) % 3 else "8")
    data = build_report(_write(tmp_path / "t.csv", rows), ReportOptions(text_column="text", score_column="nps"))
    assert data.score_kind == "nps"
    slow = sum(r["slow_response"] for r in rows)
    assert data.nps["detractors"] == slow and data.nps["promoters"] + data.nps["passives"] == 400 - slow
    by_tag = {d.tag: d for d in data.drivers}
    assert by_tag["slow_response"].nps_with == pytest.approx(-100.0)
    assert "有该问题NPS" in drivers_table(data).columns


def test_bad_score_options_are_clear_errors(tmp_path):
    source = _write(tmp_path / "t.csv", _tagged_rows(50))
    runner = CliRunner()
    missing = runner.invoke(app, ["report", "-i", str(source), "-o", str(tmp_path / "r.md"), "--score-column", "rating"])
    assert missing.exit_code == 2 and "column 'rating' not found" in missing.output
    kind = runner.invoke(app, ["report", "-i", str(source), "-o", str(tmp_path / "r.md"), "--score-column", "csat", "--score-kind", "stars"])
    assert kind.exit_code == 2 and "--score-kind 'stars'" in kind.output
    assert not (tmp_path / "r.md").exists()


def test_holm_adjusts_step_down():
    assert holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])


def _trend(rows: list[tuple[str, int, int, int]]) -> pd.DataFrame:
    return pd.DataFrame([{"n": n, "slow_response": a, "attitude": b} for _, n, a, b in rows], index=[p for p, *_ in rows])


def test_a_significant_rise_is_flagged_and_a_small_period_is_not_compared():
    trend = _trend([("2025-01", 400, 48, 40), ("2025-02", 400, 50, 44), ("2025-03", 400, 100, 46), ("2025-04", 30, 20, 3)])
    alerts, notes, comparisons = find_alerts(trend, ["slow_response", "attitude"], "M")
    assert comparisons == 4  # two tags x two period pairs; April (30 comments) is neither compared nor compared against
    assert [(a.tag, a.period, a.previous) for a in alerts] == [("slow_response", "2025-03", "2025-02")]
    assert alerts[0].share == pytest.approx(0.25) and alerts[0].previous_share == pytest.approx(0.125) and alerts[0].p_adjusted < 0.05
    assert len(notes) == 1 and "2025-04 (30 条)" in notes[0]
    from kesheng.analysis.alerts import alert_sentence

    latest = find_alerts(trend.iloc[:3], ["slow_response", "attitude"], "M")[0][0]
    assert alert_sentence(latest, "响应缓慢", "M") == "响应缓慢 本月 (2025-03) 25.0%（上月 2025-02 12.5%），显著上升"


def test_a_rise_within_noise_or_after_a_gap_is_not_flagged():
    noisy = _trend([("2025-01", 200, 20, 20), ("2025-02", 200, 30, 20)])  # 10% -> 15%: p about 0.07 one-sided, before correction
    assert find_alerts(noisy, ["slow_response", "attitude"], "M")[0] == []
    gap = _trend([("2025-01", 400, 20, 20), ("2025-03", 400, 100, 20)])
    alerts, notes, comparisons = find_alerts(gap, ["slow_response", "attitude"], "M")
    assert alerts == [] and comparisons == 0 and "上一期没有评论" in notes[0]
    assert find_alerts(noisy, ["slow_response"], "M", AlertSettings(min_period_rows=500))[2] == 0


def test_report_alerts_at_the_top_with_a_date_column(tmp_path):
    rows = _tagged_rows(900)
    for i, row in enumerate(rows):
        month = 1 + i // 300
        row["date"] = f"2025-{month:02d}-10"
        rising = month == 3 and i % 3 == 0
        row["attitude"] = 1 if rising else (1 if i % 12 == 0 else 0)
    data = build_report(_write(tmp_path / "t.csv", rows), ReportOptions(text_column="text", date_column="date"))
    assert any(a.tag == "attitude" and a.period == "2025-03" for a in data.alerts)
    document = report_json(data)
    assert document["alerts"][0]["tag"] == "attitude" and "显著上升" in document["alerts"][0]["text"]
    assert any("预警" in s for s in summary_sentences(data))
    from kesheng.analysis.report import write_report

    write_report(data, [tmp_path / "r.html", tmp_path / "r.md"])
    for page in ((tmp_path / "r.html").read_text(encoding="utf-8"), (tmp_path / "r.md").read_text(encoding="utf-8")):
        assert "服务态度 本月 (2025-03)" in page and page.index("显著上升") < page.index("一、问题类型分布")
