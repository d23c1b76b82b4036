"""`kesheng report`: tables from a small tagged file checked by hand, charts present and drawn in a CJK font."""

import csv
import json
import re

import pytest
from typer.testing import CliRunner

from kesheng.analysis.charts import cjk_font_name
from kesheng.analysis.report import (
    ReportError,
    ReportOptions,
    breakdown_table,
    build_report,
    escalation_summary,
    problem_table,
    summary_sentences,
    write_report,
)
from kesheng.cli.main import app
from kesheng.serve.batch import TagFileOptions, tag_file
from tests.batch_helpers import survey_rows, write_rows

# A fifth tag the bundled taxonomy does not know: the report must show it like the others.
TAGS = ["slow_response", "unresolved", "attitude", "opacity", "billing"]
ZH = {"slow_response": "响应缓慢", "unresolved": "解决不彻底", "attitude": "服务态度", "opacity": "信息不透明"}


def _row(text, channel, date, scores, sentiment, evidence=(), notes=""):
    row = {"id": text[:4], "channel": channel, "date": date, "text": text}
    row.update({t: int(scores.get(t, 0) >= 0.5) for t in TAGS})
    row.update({f"{t}_score": scores.get(t, 0.1) for t in TAGS})
    spans = [{"tag": tag, "start": text.index(part), "end": text.index(part) + len(part), "text": part, "weight": 1.0} for tag, part in evidence]
    row.update(sentiment=sentiment, sentiment_score=0.9, evidence=json.dumps(spans, ensure_ascii=False), notes=notes)
    return row


ROWS = [
    _row("排队等了四十分钟", "app", "2025-01-05", {"slow_response": 0.95}, "negative", [("slow_response", "等了四十分钟")]),
    _row("客服态度差还不给解决", "电话", "2025-01-20", {"attitude": 0.9, "unresolved": 0.8}, "negative", [("attitude", "态度差")]),
    _row("多收了钱也不解释", "app", "2025-02-03", {"opacity": 0.85, "billing": 0.7}, "negative", [("opacity", "不解释")]),
    _row("服务很好", "门店", "2025-02-10", {}, "positive"),
    _row("", "门店", "2025-02-11", {}, "neutral", notes="empty text"),
    _row("等了很久才有人回复，态度也冷淡", "电话", "2025-03-01", {"slow_response": 0.7, "attitude": 0.6}, "negative", [("attitude", "态度也冷淡")]),
    _row("请问怎么开发票", "app", "not a date", {}, "neutral"),
]


@pytest.fixture
def tagged_csv(tmp_path):
    path = tmp_path / "tagged.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(ROWS[0]))
        writer.writeheader()
        writer.writerows(ROWS)
    return path


def _options(**extra):
    return ReportOptions(text_column="text", group_by=("channel",), date_column="date", tag_names_zh=ZH, **extra)


def test_problem_table_counts_shares_and_names(tagged_csv):
    data = build_report(tagged_csv, _options())
    assert data.tags == TAGS and data.rows == 7 and data.scored == 6
    table = problem_table(data).set_index("问题类型")
    assert table.loc["响应缓慢", "数量"] == 2 and table.loc["服务态度", "数量"] == 2
    assert table.loc["解决不彻底", "数量"] == 1 and table.loc["billing", "数量"] == 1
    assert table.loc["其他", "数量"] == 2
    assert table.loc["响应缓慢", "占比"] == pytest.approx(2 / 6)
    assert "态度差(1)" in table.loc["服务态度", "具体场景"] and "态度也冷淡(1)" in table.loc["服务态度", "具体场景"]
    assert [e["text"] for e in data.examples["attitude"]] == ["客服态度差还不给解决", "等了很久才有人回复，态度也冷淡"]


def test_cooccurrence_sentiment_groups_and_trend(tagged_csv):
    data = build_report(tagged_csv, _options())
    index = {t: i for i, t in enumerate(TAGS)}
    pairs = data.cooccurrence
    assert pairs[index["slow_response"], index["attitude"]] == 1 and pairs[index["attitude"], index["unresolved"]] == 1
    assert pairs[index["opacity"], index["billing"]] == 1 and pairs[index["slow_response"], index["opacity"]] == 0
    assert pairs[index["attitude"], index["attitude"]] == 2
    assert data.sentiment == {"negative": 4, "neutral": 1, "positive": 1}
    by_channel = breakdown_table(data, data.groups["channel"])
    assert by_channel.loc["app", "评论数"] == 3 and by_channel.loc["电话", "评论数"] == 2 and by_channel.loc["门店", "评论数"] == 1
    assert by_channel.loc["电话", "服务态度"] == pytest.approx(1.0) and by_channel.loc["app", "负面占比"] == pytest.approx(2 / 3)
    trend = breakdown_table(data, data.trend)
    assert list(trend.index) == ["2025-01", "2025-02", "2025-03"] and list(trend["评论数"]) == [2, 2, 1]
    assert data.unparsed_dates == 1
    assert data.notes == {"empty text": 1}


def test_html_and_markdown_with_charts_in_a_cjk_font(tagged_csv, tmp_path):
    data = build_report(tagged_csv, _options())
    html_path, md_path = tmp_path / "report.html", tmp_path / "report.md"
    written = write_report(data, [html_path, md_path])
    assert written.missing_glyphs == []
    assert cjk_font_name() == "Noto Sans CJK SC"  # the font the report extra ships (mplfonts), whatever the system has
    page = html_path.read_text(encoding="utf-8")
    # Interactive charts: the vendored ECharts library draws each div from the numbers embedded in the page.
    charts = re.findall(r'data-chart="([^"]+)"', page)
    assert charts == ["problems", "sentiment", "cooccurrence", "group_channel", "trend"]
    options = json.loads(re.search(r'<script type="application/json" id="kesheng-chart-data">(.*?)</script>', page, re.S).group(1))
    assert options["problems"]["yAxis"]["data"][0] == "其他" and "响应缓慢" in options["problems"]["yAxis"]["data"]
    assert [f["label"] for f in options["problems"]["_filters"]] == ["channel: app (n=3)", "channel: 电话 (n=2)", "channel: 门店 (n=1)"]
    assert "echarts" in page and 'id="group-filter"' in page and "Apache" not in page.split("<script>")[0]
    assert "<mark>态度差</mark>" in page and "信息不透明" in page and "billing" in page
    assert "src=\"http" not in page and "<link" not in page and "//cdn" not in page  # self-contained
    markdown = md_path.read_text(encoding="utf-8")
    assert "| 响应缓慢 | 2 | 33.3% |" in markdown
    for name in ("problems", "sentiment", "cooccurrence", "group_channel", "trend"):
        assert f"report_files/{name}.png" in markdown
        assert (tmp_path / "report_files" / f"{name}.png").stat().st_size > 5000
        assert (tmp_path / "report_files" / f"{name}.svg").read_text(encoding="utf-8").startswith("<?xml")


def test_characters_missing_from_the_font_are_reported(tagged_csv, tmp_path):
    path = tmp_path / "emoji.csv"
    path.write_text(tagged_csv.read_text(encoding="utf-8").replace("门店", "门店\U0001F600"), encoding="utf-8")
    written = write_report(build_report(path, _options()), [tmp_path / "r.md"])  # the static (matplotlib) charts of Markdown
    assert "\U0001F600" in written.missing_glyphs


def test_jsonl_and_csv_outputs_of_tag_give_the_same_report(model, tmp_path):
    source = write_rows(tmp_path / "in.csv", survey_rows(60))
    for fmt in ("csv", "jsonl", "parquet", "xlsx"):
        tag_file(model, source, tmp_path / f"tagged.{fmt}", TagFileOptions(id_field="resp_id"))
    options = ReportOptions(text_column="text", group_by=("channel",), tag_names_zh={t.name: t.zh for t in model.taxonomy_.tags})
    tables = {fmt: problem_table(build_report(tmp_path / f"tagged.{fmt}", options)) for fmt in ("csv", "jsonl", "parquet", "xlsx")}
    for fmt in ("jsonl", "parquet", "xlsx"):
        assert tables[fmt].equals(tables["csv"]), fmt
    assert tables["csv"]["数量"].sum() > 0


def test_not_a_tagged_file_is_a_clear_error(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("id,text\n1,好\n", encoding="utf-8")
    with pytest.raises(ReportError, match="not a tagged file.*kesheng tag"):
        build_report(path)


def test_bad_tag_values_and_missing_columns_are_named(tagged_csv, tmp_path):
    broken = tmp_path / "broken.csv"
    broken.write_text(tagged_csv.read_text(encoding="utf-8").replace("排队等了四十分钟,1,0,0,0,0", "排队等了四十分钟,yes,0,0,0,0"), encoding="utf-8")
    assert "yes" in broken.read_text(encoding="utf-8")
    with pytest.raises(ReportError, match=r"'slow_response' should hold 0/1.*'yes'"):
        build_report(broken, _options())
    with pytest.raises(ReportError, match=r"column 'region' not found; columns are \['id', 'channel'"):
        build_report(tagged_csv, ReportOptions(group_by=("region",)))
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(ReportError, match="empty file"):
        build_report(empty)


def test_cli_report_from_tag_output_refuses_to_overwrite(model_dir, tmp_path):
    source = write_rows(tmp_path / "in.csv", survey_rows(45))
    tagged = tmp_path / "tagged.csv"
    runner = CliRunner()
    result = runner.invoke(app, ["tag", "--model", str(model_dir), "-i", str(source), "-o", str(tagged)])
    assert result.exit_code == 0, result.output
    report = tmp_path / "report.html"
    args = ["report", "-i", str(tagged), "-o", str(report), "-g", "channel", "--date-column", "date"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "comments read from column" not in result.output and "report on 45 rows" in result.output  # "text", as tag reads it
    page = report.read_text(encoding="utf-8")
    assert "按 channel 分组" in page and "趋势 (按 date)" in page and "响应缓慢" in page
    before = report.read_bytes()
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "exists; pass --overwrite" in result.output
    assert report.read_bytes() == before


def test_report_names_the_model_version_and_warns_when_a_file_mixes_versions(model_dir, tmp_path):
    source = write_rows(tmp_path / "in.csv", survey_rows(20))
    runner = CliRunner()
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    assert runner.invoke(app, ["tag", "--model", str(model_dir), "-i", str(source), "-o", str(first)]).exit_code == 0
    assert runner.invoke(app, ["tag", "-i", str(source), "-o", str(second)]).exit_code == 0  # the bundled model
    with open(first, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    with open(second, encoding="utf-8", newline="") as handle:
        rows += list(csv.DictReader(handle))
    versions = sorted({r["model_version"] for r in rows})
    assert len(versions) == 2 and all(versions)
    mixed = write_rows(tmp_path / "mixed.csv", rows)
    result = runner.invoke(app, ["report", "-i", str(mixed), "-o", str(tmp_path / "r.md")])
    assert result.exit_code == 0, result.output
    assert "several model versions" in result.output
    page = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert "多个版本" in page and all(v in page for v in versions)
    single = runner.invoke(app, ["report", "-i", str(first), "-o", str(tmp_path / "one.md")])
    assert single.exit_code == 0 and "several model versions" not in single.output
    assert f"模型版本: {rows[0]['model_version']}" in (tmp_path / "one.md").read_text(encoding="utf-8")


def test_notes_with_semicolons_are_counted_once(tmp_path):
    rows = [dict(ROWS[0], notes="malformed row: line 9 has 6 fields; extra fields: [\"x; y\"]")]
    source = write_rows(tmp_path / "t.csv", rows)
    data = build_report(source, ReportOptions(text_column="text"))
    assert dict(data.notes) == {"malformed row": 1}


def test_non_answers_are_counted_in_data_quality_and_left_out_of_shares_and_sentiment(tmp_path):
    # As a model tagged them before non-answers were noted ("无" negative with a tag, "/" positive),
    # and as a model tags them now (neutral, noted): the report reads the text either way.
    non_answers = [
        _row("无", "app", "2025-01-06", {"unresolved": 0.9}, "negative"),
        _row("/", "门店", "2025-02-12", {}, "positive"),
        _row("没有了。", "电话", "2025-03-02", {}, "neutral", notes="non-answer: no opinion to tag (无/没有/暂无...)"),
    ]
    source = write_rows(tmp_path / "t.csv", ROWS + non_answers)
    data = build_report(source, _options())
    assert data.rows == 10 and data.non_answers == 3 and data.scored == 6
    assert data.tag_counts["unresolved"] == 1 and data.other == 2
    assert data.sentiment == {"negative": 4, "neutral": 1, "positive": 1}
    assert problem_table(data).set_index("问题类型").loc["解决不彻底", "占比"] == pytest.approx(1 / 6)
    write_report(data, [tmp_path / "report.md", tmp_path / "report.html", tmp_path / "report.json"])
    markdown = (tmp_path / "report.md").read_text(encoding="utf-8")
    quality = markdown[markdown.index("数据质量") :]
    assert "空评论或缺少评论的行: 1\n" in quality and "无实质内容（无/没有/暂无…）: 3 " in quality
    assert "无实质内容（无/没有/暂无…）: 3 条" in (tmp_path / "report.html").read_text(encoding="utf-8")
    document = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert document["data_quality"]["non_answers"] == 3 and document["data_quality"]["rows_without_text"] == 1
    assert document["rows"] == {"total": 10, "with_text": 9, "without_text": 1, "non_answers": 3, "scored": 6}


@pytest.mark.parametrize("suffix", ["parquet", "xlsx"])
def test_parquet_and_xlsx_carry_the_chinese_tag_names_of_the_tagging_model(tmp_path, suffix):
    # A model with a tag neither the bundled model nor the registry knows: the file itself names it.
    from kesheng.models.schema import DEFAULT_TAXONOMY, TagSpec, Taxonomy
    from kesheng.training.config import TrainConfig
    from kesheng.training.train import train

    taxonomy = Taxonomy(DEFAULT_TAXONOMY.tags + (TagSpec("billing", "费用争议", "disputed money"),))
    taxonomy_file = tmp_path / "taxonomy.json"
    taxonomy_file.write_text(json.dumps(taxonomy.to_file_dict(), ensure_ascii=False), encoding="utf-8")
    rows = [
        {"text": f"多扣了{i}块钱话费", "sentiment": "negative", "slow_response": 0, "unresolved": 0, "attitude": 0, "opacity": 1, "billing": 1}
        for i in range(12)
    ] + [
        {"text": f"等了{i}个小时", "sentiment": "negative", "slow_response": 1, "unresolved": 0, "attitude": 0, "opacity": 0, "billing": 0}
        for i in range(12)
    ]
    data = tmp_path / "labels.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    model = train(TrainConfig(train_files=[str(data)], taxonomy=str(taxonomy_file))).model
    source = write_rows(tmp_path / "in.csv", survey_rows(10))
    tagged = tmp_path / f"tagged.{suffix}"
    tag_file(model, source, tagged)
    report = build_report(tagged, ReportOptions(text_column="text"))
    assert report.label("billing") == "费用争议"


def test_date_column_that_is_not_a_date_is_an_error_and_partly_a_warning(tagged_csv, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["report", "-i", str(tagged_csv), "-o", str(tmp_path / "r.md"), "--date-column", "channel"])
    assert result.exit_code == 2 and "no value of it parses as a date" in result.output
    assert not (tmp_path / "r.md").exists()  # nothing written half-way
    result = runner.invoke(app, ["report", "-i", str(tagged_csv), "-o", str(tmp_path / "r.md"), "--date-column", "date"])
    assert result.exit_code == 0 and "1 comment whose 'date' does not parse as a date" in result.output


def test_numeric_groups_in_order_of_value_and_a_group_named_score(tmp_path):
    rows = [dict(ROWS[i % 4], id=f"r{i}", score=str(s)) for i, s in enumerate([10, 9, 2, 10, 1, 9, 10, 3])]
    source = write_rows(tmp_path / "scored.csv", rows)
    data = build_report(source, ReportOptions(text_column="text", group_by=("score",)))
    assert [str(k) for k in data.groups["score"].index] == ["1", "2", "3", "9", "10"]  # not 10 (n=3) first
    write_report(data, [tmp_path / "r.html"])  # examples keep their group values apart from the internal score


def test_one_row_is_singular(tagged_csv, tmp_path):
    one = write_rows(tmp_path / "one.csv", [ROWS[0]])
    result = CliRunner().invoke(app, ["report", "-i", str(one), "-o", str(tmp_path / "r.md"), "--text-column", "text"])
    assert result.exit_code == 0 and "report on 1 row (1 with text)" in result.output


def test_html_report_embeds_the_cjk_glyphs_it_uses(tagged_csv, tmp_path):
    # A machine without a Chinese font still shows the page: the glyphs travel inside it.
    import base64
    import io

    from fontTools.ttLib import TTFont

    data = build_report(tagged_csv, _options())
    write_report(data, [tmp_path / "r.html"])
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    found = re.search(r'font-family:"Kesheng CJK";src:url\(data:font/woff;base64,([A-Za-z0-9+/=]+)\)', page)
    assert found and 'body{font-family:"Kesheng CJK"' in page
    font = TTFont(io.BytesIO(base64.b64decode(found.group(1))))
    cmap = font.getBestCmap()
    assert all(ord(ch) in cmap for ch in "问题类型分布响应缓慢代表性评论")
    assert len(cmap) < 2000  # a subset: only what the page uses


ANGRY = ["你们这群骗子，再不退钱我就报警，还要去12315投诉！！！", "再这样下去我就携号转网，TMD什么破服务", "第三次打电话了还是没人管，再不解决我就投诉到工信部！！！"]


def test_escalated_comments_come_first_with_their_count_and_share(model, tmp_path):
    rows = survey_rows(40) + [{"resp_id": f"A{i}", "channel": "app", "date": "2025-03-01", "text": t} for i, t in enumerate(ANGRY)]
    source = write_rows(tmp_path / "in.csv", rows)
    tag_file(model, source, tmp_path / "tagged.csv", TagFileOptions(id_field="resp_id"))
    data = build_report(tmp_path / "tagged.csv", _options())
    texts = [r["text"] for r in rows if r["text"] and r["text"].strip()]
    predictions = model.predict(texts)
    expected = sum(p.escalate for p in predictions)
    assert expected >= 2 and data.escalated == expected and data.escalate_known == len(texts)
    scores = [e["score"] for e in data.escalations]
    assert scores == sorted(scores, reverse=True)  # the most urgent first
    top = max(zip(predictions, texts), key=lambda pt: pt[0].escalate_score if pt[0].escalate else -1)[1]
    assert data.escalations[0]["text"] == top
    written = write_report(data, [tmp_path / "r.html", tmp_path / "r.md"])
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert page.index("需升级处理") < page.index("一、问题类型分布")
    assert f"{expected} 条评论需升级处理" in page and "<mark>" in page.split("一、问题类型分布")[0]
    assert "需升级处理" in (tmp_path / "r.md").read_text(encoding="utf-8") and written.files


def test_files_tagged_without_the_escalate_head_say_so_and_old_files_have_no_section(model, tmp_path):
    source = write_rows(tmp_path / "in.csv", survey_rows(20))
    tag_file(model, source, tmp_path / "tagged.csv", TagFileOptions(id_field="resp_id"))
    with open(tmp_path / "tagged.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for name, change in (("no_head.csv", lambda r: r.update(escalate="", escalate_score="")), ("old.csv", lambda r: [r.pop(k) for k in ("escalate", "escalate_score")])):
        for row in rows:
            change(row)
        with open(tmp_path / name, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    no_head = build_report(tmp_path / "no_head.csv", _options())
    assert no_head.escalate_known == 0 and "无法统计" in escalation_summary(no_head)
    old = build_report(tmp_path / "old.csv", _options())
    assert old.escalate_known is None and escalation_summary(old) is None


def test_json_report_holds_what_the_page_shows(tagged_csv, tmp_path):
    data = build_report(tagged_csv, _options())
    target = tmp_path / "report.json"
    write_report(data, [target, tmp_path / "report.html"], title="测试")
    document = json.loads(target.read_text(encoding="utf-8"))
    assert {"summary", "problems", "drivers", "alerts", "groups", "trend", "themes", "model_version", "rows"} <= set(document)
    assert document["title"] == "测试" and document["rows"] == {"total": 7, "with_text": 6, "without_text": 1, "non_answers": 0, "scored": 6}
    problems = {p["zh"]: p for p in document["problems"]}
    assert problems["响应缓慢"]["count"] == 2 and problems["响应缓慢"]["share"] == pytest.approx(2 / 6, abs=1e-4)
    assert set(problems["响应缓慢"]) >= {"tag", "zh", "count", "share", "estimate", "ci_low", "ci_high"}
    assert problems["其他"]["tag"] is None and document["drivers"] == []
    # Six comments are too few for any theme: the section says so instead of inventing one.
    assert document["themes"]["other"] == [] and document["themes"]["embeddings"] == "tfidf-svd"
    assert [g["value"] for g in document["groups"]["channel"]] == ["app", "电话", "门店"]
    assert [p["value"] for p in document["trend"]["periods"]] == ["2025-01", "2025-02", "2025-03"] and document["trend"]["unparsed_dates"] == 1
    # The page says the same: the summary sentences open it.
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert all(sentence in page for sentence in document["summary"]) and 3 <= len(document["summary"]) + 1
    assert page.index("摘要") < page.index("一、问题类型分布")
    with pytest.raises(ReportError, match="exists; pass --overwrite"):
        write_report(data, [target])


def test_summary_sentences_name_the_largest_problem_and_the_escalations(tagged_csv):
    data = build_report(tagged_csv, _options())
    sentences = summary_sentences(data)
    assert 1 <= len(sentences) <= 5 and "6 条有效评论" in sentences[0]
    assert "「响应缓慢」" in sentences[0] or "「服务态度」" in sentences[0]  # both have 2 of 6; either is the largest
    assert "未校正模型误差" in sentences[0]  # the hand-made file records no model with stored rates


def test_the_chart_library_is_vendored_with_its_license():
    from kesheng.analysis.charts import ECHARTS_FILE

    assert ECHARTS_FILE.stat().st_size > 500_000 and "Apache License" in (ECHARTS_FILE.parent / "echarts.LICENSE").read_text(encoding="utf-8")
