"""Corpus loaders on small files the tests write, and the project's own label files."""

import json
import os
from pathlib import Path

import pytest

from kesheng.training.config import TrainConfig, bundled_config
from kesheng.training.corpus import SOURCES, CorpusError, load_corpus_labels, read_corpus, read_label_file
from kesheng.training.data import DataValidationError

LABELS_DIR = Path(__file__).resolve().parents[1] / "training" / "labels"
POOL = Path(os.environ.get("KESHENG_CORPUS_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "pool"))
TAGS = ("slow_response", "unresolved", "attitude", "opacity")


@pytest.fixture
def corpus(tmp_path):
    stc3 = [
        {"id": "111", "turns": [{"sender": "customer", "utterances": ["宽带又断了", "第三次了"]},
                                {"sender": "helpdesk", "utterances": ["您好"]},
                                {"sender": "customer", "utterances": ["还是没人来修"]}], "annotations": []},
        {"id": "222", "turns": [{"sender": "customer", "utterances": ["话费多扣了"]}], "annotations": []},
    ]
    (tmp_path / SOURCES["stc3"]).write_text(json.dumps(stc3, ensure_ascii=False), encoding="utf-8")
    (tmp_path / SOURCES["waimai"]).write_text("id,label,review\nwaimai-0,1,送得很快\nwaimai-1,0,等了两个小时\nwaimai-2,0,\n", encoding="utf-8")
    (tmp_path / SOURCES["hotel"]).write_text("id,label,review\nhotel-0,1,前台很热情\n", encoding="utf-8")
    (tmp_path / SOURCES["shopping"]).write_text("id,cat,label,review\nshopping-0,书籍,1,发货快\n", encoding="utf-8")
    return tmp_path


def label(row_id, tags=(), sentiment="negative", **extra):
    return {"id": row_id, **{t: int(t in tags) for t in TAGS}, "sentiment": sentiment, **extra}


def write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_stc3_comment_is_all_customer_turns(corpus):
    texts = read_corpus(corpus, ["stc3"])
    assert texts["stc3-111"] == "宽带又断了第三次了\n还是没人来修"


def test_join_labels_with_texts_and_splits(corpus, tmp_path):
    labels = write(tmp_path / "l.jsonl", [label("stc3-111", ["unresolved"], split="test"), label("waimai-1", ["slow_response"], split="train"), label("hotel-0", [], "positive")])
    train = load_corpus_labels(labels, corpus, split="train")
    assert train.ids == ["waimai-1", "hotel-0"]  # no split field = training row
    assert train.texts == ["等了两个小时", "前台很热情"] and train.sources == ["waimai", "hotel"]
    test = load_corpus_labels(labels, corpus, split="test")
    assert test.tags.tolist() == [[0, 1, 0, 0]]


def test_ids_missing_from_corpus_are_listed(corpus, tmp_path):
    rows = [label(f"waimai-{n}") for n in range(100, 108)] + [label("waimai-0", sentiment="positive")]
    with pytest.raises(DataValidationError, match=r"id not found in the corpus.*waimai-100.*\(8 in all\)"):
        load_corpus_labels(write(tmp_path / "l.jsonl", rows), corpus)


def test_empty_corpus_text_is_an_error(corpus, tmp_path):
    with pytest.raises(DataValidationError, match="empty text.*waimai-2"):
        load_corpus_labels(write(tmp_path / "l.jsonl", [label("waimai-2")]), corpus)


def test_label_file_problems_are_all_listed(tmp_path):
    rows = [label("waimai-0"), label("waimai-0"), {**label("waimai-1"), "billing": 1}, label("hotel-0", sentiment="meh"), label("hotel-1", split="holdout")]
    rows[0]["attitude"] = 3
    with pytest.raises(DataValidationError) as err:
        read_label_file(write(tmp_path / "l.jsonl", rows))
    message = str(err.value)
    for expected in ("duplicate id", "not in the taxonomy", "'billing'", "sentiment not in", "split not in", "tag 'attitude' not 0/1"):
        assert expected in message


def test_missing_corpus_file_and_dir(corpus, tmp_path):
    (corpus / SOURCES["hotel"]).unlink()
    with pytest.raises(CorpusError, match="missing hotel_reviews.csv"):
        read_corpus(corpus, ["hotel"])
    with pytest.raises(CorpusError, match="does not exist"):
        read_corpus(tmp_path / "nowhere")


def test_corpus_file_of_wrong_format(corpus):
    (corpus / SOURCES["waimai"]).write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="expected columns 'id' and 'review'"):
        read_corpus(corpus, ["waimai"])
    (corpus / SOURCES["stc3"]).write_text('{"not": "a list"}', encoding="utf-8")
    with pytest.raises(CorpusError, match="not an STC-3 dialogue file"):
        read_corpus(corpus, ["stc3"])


def test_no_corpus_dir_given(monkeypatch):
    monkeypatch.delenv("KESHENG_CORPUS_DIR", raising=False)
    with pytest.raises(CorpusError, match="--corpus-dir"):
        read_corpus(None)


@pytest.mark.parametrize(
    "name",
    ["real_labels.jsonl", "double_a.jsonl", "double_b.jsonl", "recheck_round1.jsonl", "recheck_round2.jsonl", "round4.jsonl", "round5.jsonl", "round6_random.jsonl", "round6_suggested.jsonl"],
)
def test_project_label_files_are_valid(name):
    rows = read_label_file(LABELS_DIR / name)
    assert len(rows) >= 300
    assert all(set(r) <= {"id", "sentiment", "split", "note", "escalate", *TAGS} for r in rows)
    assert all(r["sentiment"] is not None and all(r[t] in (0, 1) for t in TAGS) for r in rows)


@pytest.mark.parametrize("name", ["round4.jsonl", "round5.jsonl", "round6_random.jsonl", "round6_suggested.jsonl", "recheck_round4.jsonl", "escalate_round1.jsonl", "dev_escalate.jsonl"])
def test_escalate_is_labeled_on_every_row_of_the_escalate_rounds(name):
    rows = read_label_file(LABELS_DIR / name)
    assert {r["escalate"] for r in rows} == {0, 1}


def test_later_rounds_are_training_rows_only_and_never_relabel_a_held_out_comment():
    held_out = {r["id"] for r in read_label_file(LABELS_DIR / "real_labels.jsonl") if r["split"] != "train"}
    held_out |= {r["id"] for r in read_label_file(LABELS_DIR / "independent_test.jsonl")}
    for name in ("round4.jsonl", "round5.jsonl", "round6_random.jsonl", "round6_suggested.jsonl"):
        rows = read_label_file(LABELS_DIR / name)
        assert {r["split"] for r in rows} == {"train"}
        assert not held_out & {r["id"] for r in rows}


def test_real_labels_meet_the_sampling_plan():
    rows = read_label_file(LABELS_DIR / "real_labels.jsonl")
    assert len(rows) >= 3000
    assert all(sum(r[t] for r in rows) >= 300 for t in TAGS)
    assert sum(r["split"] == "test" for r in rows) >= 600
    assert {r["id"].split("-")[0] for r in rows} == set(SOURCES)


@pytest.mark.skipif(not POOL.is_dir(), reason="public corpora not present")
def test_every_label_id_resolves_in_the_pool():
    for name in ("real_labels.jsonl", "double_a.jsonl", "double_b.jsonl"):
        data = load_corpus_labels(LABELS_DIR / name, POOL)
        assert len(data) == len(read_label_file(LABELS_DIR / name))


def test_bundled_config_resolves_its_paths():
    config = TrainConfig.from_file(bundled_config())
    assert all(Path(p).is_file() for p in config.train_files + config.corpus_labels)


def test_cohen_kappa_known_values():
    from kesheng.training.label_quality import cohen_kappa

    assert cohen_kappa([1, 1, 0, 0], [1, 1, 0, 0]) == 1.0
    assert cohen_kappa([1, 0, 1, 0], [0, 1, 0, 1]) == -1.0
    # 20 items: 15 agree; marginals A 10/10, B 11/9 -> p_e = 0.5, p_o = 0.75 -> kappa 0.5
    a = [1] * 10 + [0] * 10
    b = [1] * 8 + [0] * 2 + [1] * 3 + [0] * 7
    assert abs(cohen_kappa(a, b) - 0.5) < 1e-9


def test_agreement_report_on_the_project_double_labels():
    from kesheng.training.label_quality import agreement

    report = agreement(LABELS_DIR / "double_a.jsonl", LABELS_DIR / "double_b.jsonl")
    assert report["n"] == 300
    assert all(-1.0 <= m["kappa"] <= 1.0 for m in report["fields"].values())


def test_agreement_of_a_blind_recheck_sample(tmp_path):
    from kesheng.training.label_quality import agreement

    report = agreement(LABELS_DIR / "real_labels.jsonl", LABELS_DIR / "recheck_round2.jsonl", sample=True)
    assert report["n"] == 300
    with pytest.raises(ValueError, match="different ids"):
        agreement(LABELS_DIR / "real_labels.jsonl", LABELS_DIR / "recheck_round2.jsonl")
    stray = tmp_path / "stray.jsonl"
    stray.write_text('{"id": "waimai-999999", "slow_response": 0, "unresolved": 0, "attitude": 0, "opacity": 0, "sentiment": "neutral"}\n')
    with pytest.raises(ValueError, match="not in the first file"):
        agreement(LABELS_DIR / "real_labels.jsonl", stray, sample=True)
