"""Theme discovery (analysis/themes.py, analysis/theme_files.py, `kesheng themes`) on comments we wrote."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from kesheng.analysis.themes import ThemeParams, _label, find_themes, label_terms
from kesheng.cli.main import app
from kesheng.models.embedding import TfidfSvdEmbedder
from kesheng.nlp.keywords import content_terms

# Three scenarios customers describe in many words; the theme finder is never told which is which.
SCENARIOS = {
    "delivery": (["外卖", "骑手", "配送", "送餐"], ["超时", "迟到", "送晚了", "晚了一个小时"], ["饭菜都凉了", "汤都凉透了", "等得饿坏了", "午饭变晚饭"]),
    "phone": (["客服电话", "热线", "人工客服", "服务热线"], ["打不通", "一直占线", "没人接", "转人工失败"], ["打了十几遍", "从早打到晚", "提示音循环播放", "等待音乐听了半天"]),
    "refund": (["退款", "退货款", "押金退还", "退费"], ["迟迟不到账", "审核半个月", "一直显示处理中", "拖了三周"], ["钱到现在没退回", "银行卡没收到钱", "余额里也没有", "催了几次没结果"]),
}


def scenario_comments(per_scenario: int = 24, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    texts, groups = [], []
    for name, (subjects, problems, details) in SCENARIOS.items():
        for _ in range(per_scenario):
            texts.append(f"{rng.choice(subjects)}{rng.choice(problems)}，{rng.choice(details)}")
            groups.append(name)
    order = rng.permutation(len(texts))
    return [texts[i] for i in order], [groups[i] for i in order]


PARAMS = ThemeParams(min_size=8, reduce_dims=5, min_samples=3)


def test_three_written_scenarios_come_back_as_pure_themes_named_in_chinese():
    texts, groups = scenario_comments()
    model = find_themes(texts, TfidfSvdEmbedder(dims=20), PARAMS)
    truth = np.array(groups)
    assert model.clustered >= 0.8 * len(texts)
    # Every scenario is found; a scenario may come back split by its details, never mixed with another.
    assert {pd.Series(truth[model.assignment == t.id]).mode()[0] for t in model.themes} == set(SCENARIOS)
    for theme in model.themes:
        held = truth[model.assignment == theme.id]
        assert pd.Series(held).value_counts().iloc[0] / len(held) >= 0.95  # one scenario per theme
        assert any("\u4e00" <= c <= "\u9fff" for c in theme.label)
        assert 3 <= len(theme.examples) <= 5 and len(set(theme.examples)) == len(theme.examples)
        assert theme.size == int((model.assignment == theme.id).sum())
    assert [t.size for t in model.themes] == sorted((t.size for t in model.themes), reverse=True)


def test_same_input_and_seed_give_the_same_themes():
    texts, _ = scenario_comments()
    first = find_themes(texts, TfidfSvdEmbedder(dims=20, seed=3), ThemeParams(min_size=8, reduce_dims=5, min_samples=3, seed=3))
    again = find_themes(texts, TfidfSvdEmbedder(dims=20, seed=3), ThemeParams(min_size=8, reduce_dims=5, min_samples=3, seed=3))
    assert np.array_equal(first.assignment, again.assignment)
    assert [t.label for t in first.themes] == [t.label for t in again.themes]


def test_a_comment_unlike_every_theme_is_left_out_not_forced_in():
    texts, _ = scenario_comments()
    odd = "发票抬头写错了公司名称"
    model = find_themes([*texts, odd], TfidfSvdEmbedder(dims=20), PARAMS)
    assert model.assignment[-1] == -1


@pytest.mark.parametrize(
    "texts, note",
    [
        (["", "  ", None] * 10, "fewer than the minimum theme size"),
        (["送餐太慢"] * 5, "fewer than the minimum theme size"),
    ],
)
def test_too_few_or_empty_comments_give_no_theme_and_say_why(texts, note):
    model = find_themes(texts, TfidfSvdEmbedder(), PARAMS)
    assert model.themes == [] and (model.assignment == -1).all()
    assert note in " ".join(model.notes)


def test_one_answer_repeated_thousands_of_times_is_one_theme():
    texts = ["无"] * 3000 + [""] * 10
    model = find_themes(texts, TfidfSvdEmbedder(), ThemeParams())
    assert len(model.themes) == 1
    assert model.themes[0].size == 3000 and model.themes[0].examples == ["无"]
    assert (model.assignment[:3000] == 0).all() and (model.assignment[3000:] == -1).all()


def test_a_stock_answer_given_by_many_becomes_its_own_theme_beside_the_scenarios():
    texts, _ = scenario_comments()
    for answer in ("好评", "非常满意"):  # one with no content word, one with
        model = find_themes([*texts, *([answer] * 40)], TfidfSvdEmbedder(dims=20), PARAMS)
        stock = model.assignment[-40:]
        assert len(set(stock.tolist())) == 1 and stock[0] >= 0
        assert model.themes[stock[0]].examples == [answer] and model.themes[stock[0]].size == 40


def test_labels_prefer_the_phrase_to_the_word_inside_it_and_drop_filler():
    assert content_terms("外卖送了一个多小时，包装破损，汤都漏了") == ("外卖", "包装", "破损", "漏", "包装破损")
    assert "我们" not in content_terms("我们自己也没办法")
    assert _label([("包装", 0.9), ("包装破损", 0.8), ("漏液", 0.5)], 2) == "包装破损/漏液"
    docs = [["配送", "超时"], ["配送", "超时"], ["配送"], ["电话", "占线"], ["电话", "占线"], ["电话"]]
    terms = label_terms(docs, [1] * 6, [0, 0, 0, 1, 1, 1], 2)
    assert terms[0][0][0] == "配送" and terms[1][0][0] == "电话"


def test_english_only_comments_do_not_break_theme_discovery():
    texts = ["refund never arrived, waited three weeks"] * 6 + ["phone line always busy, nobody answers"] * 6
    model = find_themes(texts, TfidfSvdEmbedder(), ThemeParams(min_size=5, min_samples=3))
    assert len(model.themes) == 2


def test_params_are_checked():
    with pytest.raises(ValueError, match="min_size"):
        ThemeParams(min_size=1)
    with pytest.raises(ValueError, match="selection"):
        ThemeParams(selection="kmeans")


# The command


@pytest.fixture(scope="module")
def tagged_file(model_dir, tmp_path_factory):
    """Our scenario comments plus some praise, tagged by the session model, with a channel column."""
    folder = tmp_path_factory.mktemp("themes")
    texts, _ = scenario_comments(per_scenario=30)
    texts += ["质量很好，包装也结实，下次还买", "东西不错，颜色和图片一样"] * 12
    source = folder / "comments.csv"
    pd.DataFrame({"id": [f"c{i}" for i in range(len(texts))], "channel": ["app", "phone", "web"] * (len(texts) // 3), "comment": texts}).to_csv(source, index=False)
    tagged = folder / "tagged.csv"
    result = CliRunner().invoke(app, ["tag", "--model", str(model_dir), "-i", str(source), "-o", str(tagged), "--text-column", "comment", "--keep", "id,channel"])
    assert result.exit_code == 0, result.output
    return tagged


def _themes(args):
    return CliRunner().invoke(app, ["themes", "--embeddings", "tfidf", "--min-size", "8", *map(str, args)])


def test_cli_writes_every_summary_and_the_assignments_of_every_row(tagged_file, tmp_path):
    out = tmp_path / "out"
    result = _themes(["-i", tagged_file, "-o", out / "t.html", "-o", out / "t.md", "-o", out / "t.json", "--assignments", out / "a.csv", "--scope", "all", "-g", "channel"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "t.json").read_text(encoding="utf-8"))
    rows = pd.read_csv(tagged_file)
    assigned = pd.read_csv(out / "a.csv", keep_default_na=False)
    assert len(assigned) == len(rows) and list(assigned.columns) == [*rows.columns, "theme", "theme_label"]
    assert summary["scope_rows"] == len(rows) and summary["themes"]
    for theme in summary["themes"]:
        assert (assigned["theme"] == theme["id"]).sum() == theme["size"]
        assert set(assigned.loc[assigned["theme"] == theme["id"], "theme_label"]) == {theme["label"]}
        assert sum(g["count"] for g in theme["groups"]["channel"].values()) == theme["size"]
        assert sum(theme["sentiment"].values()) == theme["size"]
    assert (assigned.loc[assigned["theme"] == -1, "theme_label"] == "").all()
    page = (out / "t.html").read_text(encoding="utf-8")
    assert summary["themes"][0]["label"] in page and "按 channel 分布" in page
    assert summary["themes"][0]["label"] in (out / "t.md").read_text(encoding="utf-8")


def test_default_scope_is_the_untagged_comments(tagged_file, tmp_path):
    result = _themes(["-i", tagged_file, "-o", tmp_path / "t.json", "--assignments", tmp_path / "a.jsonl"])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tagged_file)
    untagged = (rows[["slow_response", "unresolved", "attitude", "opacity"]].sum(axis=1) == 0) & rows["comment"].notna()
    summary = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    assert summary["scope"] == "other" and summary["scope_rows"] == int(untagged.sum())
    assigned = pd.read_json(tmp_path / "a.jsonl", lines=True)
    assert (assigned.loc[~untagged.to_numpy(), "theme"] == -1).all()


def test_non_answers_form_no_theme_and_are_counted_in_a_note(tagged_file, tmp_path):
    rows = pd.read_csv(tagged_file)
    with_blanks = pd.concat([rows, rows.head(12).assign(comment=["无", "没有", "/", "暂无"] * 3)], ignore_index=True)
    source = tmp_path / "with_non_answers.csv"
    with_blanks.to_csv(source, index=False)
    result = _themes(["-i", source, "-o", tmp_path / "t.json", "--assignments", tmp_path / "a.csv", "--scope", "all"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    assert summary["scope_rows"] == summary["rows_with_text"] == len(rows)
    assert any(note.startswith("12 条无实质内容") for note in summary["notes"])
    assigned = pd.read_csv(tmp_path / "a.csv", keep_default_na=False)
    assert (assigned["theme"].iloc[len(rows) :] == -1).all()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scope", "billing_dispute"], "has no tag 'billing_dispute'"),
        (["--text-column", "nope"], "nope"),
        (["-g", "region"], "--group-by 'region'"),
        (["--export", "0"], "go together"),
        (["--export", "0", "--as", "Bad-Name"], "lowercase ASCII identifier"),
    ],
)
def test_bad_options_exit_2_with_one_line_and_write_nothing(tagged_file, tmp_path, args, message):
    result = _themes(["-i", tagged_file, "-o", tmp_path / "t.html", *args])
    assert result.exit_code == 2 and message in result.output
    assert list(tmp_path.iterdir()) == []


def test_bad_input_files_exit_2(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    result = _themes(["-i", tmp_path / "empty.csv", "-o", tmp_path / "t.html"])
    assert result.exit_code == 2 and "empty file" in result.output
    result = _themes(["-i", tmp_path / "missing.csv", "-o", tmp_path / "t.html"])
    assert result.exit_code == 2 and "no such file" in result.output
    untagged = tmp_path / "plain.csv"
    pd.DataFrame({"comment": ["送餐慢"] * 20}).to_csv(untagged, index=False)
    result = _themes(["-i", untagged, "-o", tmp_path / "t.html"])
    assert result.exit_code == 2 and "--scope all" in result.output
    assert not (tmp_path / "t.html").exists()


def test_an_existing_output_is_kept_without_overwrite(tagged_file, tmp_path):
    target = tmp_path / "t.md"
    target.write_text("mine", encoding="utf-8")
    result = _themes(["-i", tagged_file, "-o", target, "--scope", "all"])
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert target.read_text(encoding="utf-8") == "mine"


def test_a_theme_exported_as_a_new_tag_round_trips_through_label_studio(tagged_file, tmp_path):
    from kesheng.models.schema import Taxonomy
    from kesheng.training.config import LabelSource
    from kesheng.training.sources import load_label_source

    result = _themes(["-i", tagged_file, "-o", tmp_path / "t.json", "--scope", "all", "--export", "0", "--as", "phone_unreachable", "--zh", "电话打不通"])
    assert result.exit_code == 0, result.output
    taxonomy = Taxonomy.from_file(tmp_path / "taxonomy_phone_unreachable.json")
    assert taxonomy.names[-1] == "phone_unreachable" and taxonomy.zh("phone_unreachable") == "电话打不通"
    assert "DRAFT" in taxonomy.tags[-1].description
    tasks = json.loads((tmp_path / "phone_unreachable_tasks.json").read_text(encoding="utf-8"))
    config = (tmp_path / "phone_unreachable_tasks.label_config.xml").read_text(encoding="utf-8")
    assert 'value="phone_unreachable"' in config
    summary = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    members = [t for t in tasks if "phone_unreachable" in t["predictions"][0]["result"][0]["value"]["choices"]]
    assert len(members) == summary["themes"][0]["size"] and len(tasks) > len(members)  # near misses too
    # A labeler accepting every pre-annotation, as Label Studio exports it: the new tag trains.
    exported = [{**t, "annotations": [{"result": t["predictions"][0]["result"]}]} for t in tasks]
    (tmp_path / "export.json").write_text(json.dumps(exported, ensure_ascii=False), encoding="utf-8")
    data, conflicts = load_label_source(LabelSource("label_studio", str(tmp_path / "export.json")), taxonomy)
    assert not conflicts and len(data.texts) == len(tasks)
    assert data.tags[:, taxonomy.names.index("phone_unreachable")].sum() == len(members)


# Encoder embeddings, on the tiny BERT the tests build


def test_encoder_embeddings_are_unit_vectors_independent_of_order_and_cached(tiny_base, tmp_path, monkeypatch):
    from kesheng.models.embedding import EncoderEmbedder

    monkeypatch.setenv("KESHENG_CACHE", str(tmp_path / "cache"))
    texts, _ = scenario_comments(per_scenario=4)
    vectors = EncoderEmbedder(base_model=str(tiny_base), max_tokens=16).fit_transform(texts)
    assert vectors.shape[0] == len(texts) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    graphs = list((tmp_path / "cache" / "embedders").glob("*.onnx"))
    assert len(graphs) == 1
    reversed_vectors = EncoderEmbedder(base_model=str(tiny_base), max_tokens=16, threads=1).fit_transform(texts[::-1])
    assert np.allclose(vectors, reversed_vectors[::-1], atol=1e-6)  # a comment's vector never depends on its neighbours
    assert list((tmp_path / "cache" / "embedders").glob("*.onnx")) == graphs  # built once


def test_a_missing_encoder_folder_is_a_clear_error(tmp_path):
    from kesheng.models.embedding import EmbeddingError, EncoderEmbedder

    with pytest.raises(EmbeddingError, match="does not exist"):
        EncoderEmbedder(base_model=str(tmp_path / "nope")).fit_transform(["送餐慢"])


def test_the_report_shows_what_is_inside_other_and_names_each_problems_scenarios(tagged_file, tmp_path):
    from kesheng.analysis.report import ReportOptions, build_report, problem_table, write_report

    data = build_report(tagged_file, ReportOptions(themes="tfidf"))
    assert data.theme_embeddings == "tfidf-svd" and data.themes[""]
    for theme in data.themes[""]:
        assert 0 < theme["share"] <= 1 and theme["estimate"] == round(data.other * theme["share"])
    with_scenarios = [tag for tag in data.tags if data.themes.get(tag)]
    assert with_scenarios
    table = problem_table(data).set_index("标签")
    for tag in with_scenarios:
        assert table.loc[tag, "具体场景"].startswith(data.themes[tag][0]["label"] + " ")
    write_report(data, [tmp_path / "r.html", tmp_path / "r.md", tmp_path / "r.json"], title="t")
    assert "其他 里有什么" in (tmp_path / "r.html").read_text(encoding="utf-8")
    assert data.themes[""][0]["label"] in (tmp_path / "r.md").read_text(encoding="utf-8")
    document = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert document["themes"]["other"][0]["label"] == data.themes[""][0]["label"]
    assert set(document["themes"]["scenarios"]) == set(data.tags)
    off = build_report(tagged_file, ReportOptions(themes="off"))
    assert off.theme_embeddings is None and off.themes == {}
