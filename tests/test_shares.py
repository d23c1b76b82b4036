"""Corrected problem shares: the ACC/PACC closed forms, interval coverage on simulated taggers,
rates measured at training time and stored in the model directory, and raw shares without them."""

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from kesheng.analysis.report import ReportOptions, build_report, problem_table, report_json, share_note
from kesheng.analysis.shares import (
    ScoreMoments,
    ShareCell,
    TagRates,
    acc,
    estimate_share,
    estimate_stratified_share,
    load_share_rates,
    rates_from_metrics,
    wilson,
)
from kesheng.cli.main import app
from kesheng.serve.batch import TagFileOptions, tag_file
from tests.batch_helpers import survey_rows, write_rows


def test_acc_is_the_closed_form_and_recovers_the_true_share():
    # A tagger with recall 0.8 and false-positive rate 0.05 on a population where 20% have the problem:
    # it tags 0.2 * 0.8 + 0.8 * 0.05 = 20% (by chance equal), and 0.4 * 0.8 + 0.6 * 0.05 = 35% when 40% have it.
    assert acc(0.2, 0.8, 0.05) == pytest.approx(0.2)
    assert acc(0.35, 0.8, 0.05) == pytest.approx(0.4)
    assert acc(0.35, 0.8, 0.05) == pytest.approx((0.35 - 0.05) / (0.8 - 0.05))  # QuaPy's ACC: (p̂ - fpr) / (tpr - fpr), clipped
    assert acc(0.02, 0.8, 0.05) == 0.0 and acc(0.95, 0.8, 0.05) == 1.0  # clipped to [0, 1]
    rates = TagRates(tp=80, fn=20, fp=50, tn=950)
    assert rates.tpr == pytest.approx(0.8) and rates.fpr == pytest.approx(0.05)
    estimate = estimate_share(350, 1000, rates)
    assert estimate.method == "acc" and estimate.raw == pytest.approx(0.35) and estimate.estimate == pytest.approx(0.4)
    assert estimate.ci_low < 0.4 < estimate.ci_high


def test_the_interval_covers_the_true_share_about_95_percent_of_the_time():
    # Simulated: rates measured on 600 labeled comments, then a survey of 3,000 comments tagged by the same tagger.
    rng = np.random.default_rng(5)
    true_tpr, true_fpr, true_share = 0.65, 0.05, 0.30
    covered, raw_errors, corrected_errors = 0, [], []
    for trial in range(200):
        labeled = rng.random(600) < 0.25
        tagged = np.where(labeled, rng.random(600) < true_tpr, rng.random(600) < true_fpr)
        rates = TagRates(tp=int((labeled & tagged).sum()), fn=int((labeled & ~tagged).sum()), fp=int((~labeled & tagged).sum()), tn=int((~labeled & ~tagged).sum()))
        truth = rng.random(3000) < true_share
        count = int(np.where(truth, rng.random(3000) < true_tpr, rng.random(3000) < true_fpr).sum())
        estimate = estimate_share(count, 3000, rates, seed=trial)
        covered += estimate.ci_low <= truth.mean() <= estimate.ci_high
        raw_errors.append(abs(estimate.raw - truth.mean()))
        corrected_errors.append(abs(estimate.estimate - truth.mean()))
    assert 0.9 <= covered / 200 <= 0.995
    assert np.mean(corrected_errors) < np.mean(raw_errors) / 2  # raw is biased: it expects 0.3 * 0.65 + 0.7 * 0.05 = 23%, not 30%


def test_stratified_correction_follows_the_files_own_mix_of_kinds():
    # Two kinds of comment with the same recall and different false-positive rates (threads hold
    # words that look like the tag), measured on a 50/50 mix; the survey is 90% single comments.
    single, thread = TagRates(tp=400, fn=100, fp=40, tn=1960), TagRates(tp=400, fn=100, fp=400, tn=1600)
    pooled = TagRates(tp=800, fn=200, fp=440, tn=3560)
    # Truth: 10% of 9,000 single comments and 50% of 1,000 threads, 14% in all. Tagged: 882 and 500.
    cells = [ShareCell(882, 9000, single), ShareCell(500, 1000, thread)]
    stratified = estimate_stratified_share(cells)
    assert stratified.estimate == pytest.approx(0.14, abs=1e-9) and stratified.ci_low < 0.14 < stratified.ci_high
    assert stratified.count == 1382 and stratified.n == 10000 and stratified.method == "acc"
    mixed = estimate_share(1382, 10000, pooled)  # the pooled rates overstate the single comments' false positives
    assert not mixed.ci_low < 0.14 < mixed.ci_high
    # A kind without usable rates counts raw; with none usable the whole share is raw.
    partly = estimate_stratified_share([ShareCell(882, 9000, single), ShareCell(500, 1000, None)])
    assert partly.estimate == pytest.approx((0.1 * 9000 + 500) / 10000) and partly.method == "acc"
    assert estimate_stratified_share([ShareCell(882, 9000, None), ShareCell(500, 1000, None)]).method == "raw"
    # One cell is the unstratified estimate.
    assert estimate_stratified_share([ShareCell(350, 1000, single)]) == estimate_share(350, 1000, single)


def test_rates_with_unreadable_kinds_fall_back_to_the_pooled_rates():
    counts = {"tp": 80, "fn": 20, "fp": 50, "tn": 950}
    block = {"measured_on": "x", "n": 1100, "tags": {"slow_response": counts}, "other": counts}
    assert rates_from_metrics({"share_correction": block}).strata == {}
    broken = rates_from_metrics({"share_correction": block | {"strata": {"cells": {"single:0": {"tags": "?"}}}}})
    assert broken is not None and broken.strata == {} and broken.tags["slow_response"].tp == 80
    read = rates_from_metrics({"share_correction": block | {"strata": {"length_edges": [20, 40, 80, 160], "cells": {"single:0": block}}}})
    assert read.strata["single:0"].tags["slow_response"].fp == 50


def test_pacc_uses_mean_scores():
    positive, negative = ScoreMoments(200, 0.8, 0.2), ScoreMoments(800, 0.1, 0.15)
    rates = TagRates(tp=150, fn=50, fp=40, tn=760, score_positive=positive, score_negative=negative)
    # 30% positives: mean score 0.3 * 0.8 + 0.7 * 0.1 = 0.31
    n = 2000
    estimate = estimate_share(500, n, rates, method="pacc", score_sum=0.31 * n, score_sq_sum=(0.31**2 + 0.09) * n)
    assert estimate.method == "pacc" and estimate.estimate == pytest.approx(0.3)
    assert estimate.ci_low < 0.3 < estimate.ci_high
    # Without the score sums PACC cannot run: ACC instead.
    assert estimate_share(500, n, rates, method="pacc").method == "acc"


def test_without_rates_or_separation_the_share_is_raw_with_a_binomial_interval():
    estimate = estimate_share(30, 200, None)
    assert estimate.method == "raw" and estimate.estimate == estimate.raw == pytest.approx(0.15)
    assert (estimate.ci_low, estimate.ci_high) == pytest.approx(wilson(30, 200))
    useless = TagRates(tp=10, fn=10, fp=40, tn=60)  # TPR 0.5, FPR 0.4: no separation to correct with
    assert estimate_share(30, 200, useless).method == "raw"
    assert estimate_share(0, 0, None).ci_low is None


def test_training_stores_rates_from_held_out_rows_and_reports_correct_with_them(trained, model_dir, tmp_path):
    result, _ = trained
    block = result.metrics["share_correction"]
    n_test = result.metrics["data"]["n_test"]
    assert block["n"] == n_test and "test split" in block["measured_on"]
    for name, counts in block["tags"].items():
        assert counts["tp"] + counts["fn"] + counts["fp"] + counts["tn"] == result.metrics["test"]["tags"][name]["n"]
        assert (counts["tp"], counts["fp"]) == (result.metrics["test"]["tags"][name]["tp"], result.metrics["test"]["tags"][name]["fp"])
    stored = json.loads((model_dir / "metrics.json").read_text(encoding="utf-8"))
    rates = rates_from_metrics(stored)
    assert rates is not None and set(rates.tags) == set(block["tags"])
    assert "Error rates for share correction" in (model_dir / "MODEL_CARD.md").read_text(encoding="utf-8")
    # The same counts per kind of comment, which add up to the pooled ones.
    cells = block["strata"]["cells"]
    assert sum(cell["n"] for cell in cells.values()) == block["n"] and set(rates.strata) == set(cells)
    for name, counts in block["tags"].items():
        assert sum(cell["tags"][name]["tp"] for cell in cells.values()) == counts["tp"]
    source = write_rows(tmp_path / "in.csv", survey_rows(60))
    tag_file(result.model, source, tmp_path / "tagged.csv", TagFileOptions(id_field="resp_id"))
    stratified = build_report(tmp_path / "tagged.csv", ReportOptions(text_column="text", model_dir=str(model_dir)))
    assert stratified.share_strata > 0 and "评论类型" in share_note(stratified)
    for name in block["tags"]:
        e = stratified.estimates[name]
        assert e.ci_low <= e.estimate <= e.ci_high
    # Rates without kinds (stored before strata existed) correct with the pooled rates.
    pooled_dir = tmp_path / "pooled_model"
    shutil.copytree(model_dir, pooled_dir)
    stored.pop("share_correction")
    stored["share_correction"] = {k: v for k, v in block.items() if k != "strata"}
    (pooled_dir / "metrics.json").write_text(json.dumps(stored), encoding="utf-8")
    corrected = build_report(tmp_path / "tagged.csv", ReportOptions(text_column="text", model_dir=str(pooled_dir)))
    assert corrected.share_rates is not None and corrected.share_strata == 0
    table = problem_table(corrected).set_index("标签")
    for name in block["tags"]:
        e = corrected.estimates[name]
        if e.method == "acc":
            counts = block["tags"][name]
            tpr, fpr = counts["tp"] / (counts["tp"] + counts["fn"]), counts["fp"] / (counts["fp"] + counts["tn"])
            assert table.loc[name, "占比估计"] == pytest.approx(float(acc(e.raw, tpr, fpr)))
            assert e.ci_low <= e.estimate <= e.ci_high
    assert "test split" in share_note(corrected) and "未校正" not in share_note(corrected)


def test_a_model_without_rates_gives_raw_shares_labeled_as_such(model, tmp_path):
    source = write_rows(tmp_path / "in.csv", survey_rows(30))
    tag_file(model, source, tmp_path / "tagged.csv", TagFileOptions(id_field="resp_id"))
    # The session model's version is neither in the (empty) test registry nor bundled: no rates are found.
    data = build_report(tmp_path / "tagged.csv", ReportOptions(text_column="text"))
    assert data.share_rates is None and all(e.method == "raw" for e in data.estimates.values())
    assert "未校正" in share_note(data)
    problems = report_json(data)["problems"]
    assert all(p["method"] == "raw" and p["estimate"] == p["share"] for p in problems)
    result = CliRunner().invoke(app, ["report", "-i", str(tmp_path / "tagged.csv"), "-o", str(tmp_path / "r.md")])
    assert result.exit_code == 0 and "problem shares are raw" in result.output
    assert "未校正" in (tmp_path / "r.md").read_text(encoding="utf-8")


def test_evaluate_store_rates_writes_them_into_a_model_directory_and_refuses_the_independent_set(trained, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(trained[1], copy)
    metrics = json.loads((copy / "metrics.json").read_text(encoding="utf-8"))
    metrics.pop("share_correction")
    (copy / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    assert load_share_rates(None, copy) is None
    labeled = tmp_path / "held_out.jsonl"
    rows = [
        {"text": "等了一个小时都没人接电话", "slow_response": 1, "unresolved": 0, "attitude": 0, "opacity": 0, "sentiment": "negative"},
        {"text": "客服态度很差，爱答不理", "slow_response": 0, "unresolved": 0, "attitude": 1, "opacity": 0, "sentiment": "negative"},
        {"text": "东西很好，下次还买", "slow_response": 0, "unresolved": 0, "attitude": 0, "opacity": 0, "sentiment": "positive"},
    ]
    labeled.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    card_before = (copy / "MODEL_CARD.md").read_text(encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", "--model", str(copy), "--data", str(labeled), "--store-rates"])
    assert result.exit_code == 0, result.output
    card = (copy / "MODEL_CARD.md").read_text(encoding="utf-8")
    section = "## Error rates for share correction"
    assert card.split(section)[0] == card_before.split(section)[0] and "Measured on held_out.jsonl (3 comments)" in card
    assert card.split("## Escalation")[1] == card_before.split("## Escalation")[1]  # only the rates' section changed
    rates = load_share_rates(None, copy)
    assert rates is not None and rates.measured_on.startswith("held_out.jsonl (3 comments)")
    assert sum(rates.tags["slow_response"].__dict__[k] for k in ("tp", "fn", "fp", "tn")) == 3
    independent = tmp_path / "independent_test.jsonl"
    independent.write_text(labeled.read_text(encoding="utf-8"), encoding="utf-8")
    refused = runner.invoke(app, ["evaluate", "--model", str(copy), "--data", str(independent), "--store-rates"])
    assert refused.exit_code == 2 and "independent test set" in refused.output


def test_the_bundled_model_carries_its_rates():
    from kesheng.models import bundled_model_path

    rates = load_share_rates(None, bundled_model_path())
    assert rates is not None and set(rates.tags) == {"slow_response", "unresolved", "attitude", "opacity"}
    for tag_rates in rates.tags.values():
        assert tag_rates.tp + tag_rates.fn >= 50 and tag_rates.tpr - tag_rates.fpr > 0.4
