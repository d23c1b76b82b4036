"""The transformer classifier on a tiny BERT built from a local vocabulary (no download, seconds)."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from kesheng.models import ModelLoadError, load_model  # noqa: E402
from kesheng.models.encoder import BaseModelError, check_base_folder  # noqa: E402
from kesheng.models.transformer import TransformerClassifier, TransformerParams  # noqa: E402
from kesheng.training.config import TrainConfig, bundled_seed_corpus  # noqa: E402
from kesheng.training.train import train  # noqa: E402
from tests.test_contract import BAD, TEXTS, check_one_prediction_per_text_in_order  # noqa: E402
from tests.transformer_fixtures import write_tiny_bert  # noqa: E402

SEED_TEXTS = [json.loads(line)["text"] for line in Path(bundled_seed_corpus()).read_text(encoding="utf-8").splitlines() if line.strip()]


def tiny_params(base: Path, **changes) -> TransformerParams:
    settings = dict(
        base_model=str(base), epochs=2, patience=1, batch_size=32, max_length=48, train_max_length=48,
        window_overlap=8, max_windows=4, num_threads=2, learning_rate=1e-3, head_learning_rate=3e-3,
    )
    settings.update(changes)
    return TransformerParams(**settings)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert", SEED_TEXTS)


@pytest.fixture(scope="session")
def tiny_trained(tiny_base, tmp_path_factory):
    """The full pipeline (fit with early stopping on dev, thresholds, test metrics, save) once."""
    directory = tmp_path_factory.mktemp("tmodel") / "transformer"
    config = TrainConfig(model_type="transformer", transformer=tiny_params(tiny_base), refit_with_dev=False)
    result = train(config, directory)
    return result, directory


@pytest.fixture(scope="session")
def tmodel(tiny_trained):
    return tiny_trained[0].model


@pytest.fixture(scope="session")
def tmodel_dir(tiny_trained):
    return tiny_trained[1]


@pytest.fixture(scope="session")
def every_tag_model(tmodel_dir, tmp_path_factory):
    """The tiny model with all thresholds at 0: every tag fires, so evidence is always computed."""
    model = load_model(tmodel_dir)
    model.set_thresholds({name: 0.0 for name in model.taxonomy_.names})
    return model


def test_pipeline_trains_and_reports(tiny_trained):
    result, directory = tiny_trained
    meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    assert meta["model_type"] == "transformer" and meta["format_version"] == 1
    assert meta["training_config"]["transformer"]["base_model"].endswith("bert")
    assert {"torch", "transformers", "onnxruntime"} <= set(meta["versions"])
    history = meta["fine_tuning"]["history"]
    assert 1 <= len(history) <= 2 and all("score" in h for h in history)
    assert 1 <= meta["fine_tuning"]["best_epoch"] <= len(history)
    for name in ("config.json", "tokenizer.json", "weights.safetensors", "model.onnx", "labels.json", "metrics.json"):
        assert (directory / name).is_file(), name
    assert 0.0 <= result.metrics["test"]["macro_f1"] <= 1.0


def test_save_load_identical_predictions(tmodel, tmodel_dir, tmp_path):
    loaded = load_model(tmodel_dir)
    assert isinstance(loaded, TransformerClassifier) and loaded.runtime_ == "onnx-int8"
    texts = TEXTS + [t for t in BAD if t is not None]
    assert loaded.predict(texts) == tmodel.predict(texts)
    again = load_model(loaded.save(tmp_path / "copy"))
    assert again.predict(texts) == loaded.predict(texts)
    assert again.thresholds_ == tmodel.thresholds_


def test_torch_runtime_after_load_matches_fitted_module(tmodel, tmodel_dir):
    loaded = load_model(tmodel_dir).set_runtime("torch")
    fitted = tmodel.set_runtime("torch")
    try:
        a, b = loaded.predict(TEXTS), fitted.predict(TEXTS)
    finally:
        tmodel.set_runtime("onnx-int8")
    for p, q in zip(a, b):
        assert p.tags == q.tags and p.sentiment == q.sentiment
        assert p.scores == pytest.approx(q.scores, abs=1e-6)


def test_int8_onnx_agrees_with_float32_torch(tmodel_dir):
    model = load_model(tmodel_dir)
    texts = SEED_TEXTS[:64]
    quantized = model.predict(texts)
    exact = model.set_runtime("torch").predict(texts)
    diffs = [abs(p.scores[n] - q.scores[n]) for p, q in zip(quantized, exact) for n in p.scores]
    assert max(diffs) < 0.05, max(diffs)
    agree = np.mean([p.sentiment == q.sentiment for p, q in zip(quantized, exact)])
    assert agree >= 0.9


# the shared predict contract (tests/test_contract.py), on the transformer


def test_contract_one_prediction_per_text_in_order(every_tag_model):
    predictions = check_one_prediction_per_text_in_order(every_tag_model)
    # The int8 runtime scores each window on its own, so batching never changes an answer.
    assert [every_tag_model.predict([t])[0] for t in TEXTS] == predictions[: len(TEXTS)]


def test_contract_batch_or_single_float32(tmodel_dir):
    model = load_model(tmodel_dir).set_runtime("torch")
    batch = model.predict(TEXTS)
    for text, p in zip(TEXTS, batch):
        (q,) = model.predict([text])
        assert p.tags == q.tags and p.sentiment == q.sentiment
        assert p.scores == pytest.approx(q.scores, abs=1e-5)  # padding changes float sums by rounding only


@pytest.mark.parametrize("text", [None, "", "   \n\t "])
def test_contract_missing_or_empty_text(tmodel, text):
    (p,) = tmodel.predict([text])
    assert p.tags == [] and p.sentiment == "neutral" and p.notes


def test_contract_unknown_tokens_only_are_not_scored(tmodel):
    (p,) = tmodel.predict(["ᚠᚢᚦ ᚨᚱᚲ"])
    assert p.tags == [] and p.notes == ["no known tokens: text not scored"]


def test_contract_type_errors(tmodel):
    with pytest.raises(TypeError, match="text #1"):
        tmodel.predict(["好", 42])
    with pytest.raises(TypeError, match="list"):
        tmodel.predict("等了半小时")


def test_contract_evidence_offsets_index_the_original_text(every_tag_model):
    text = "  @某某客服 你們的客服態度太差了！！！等了３０分鐘都沒人理 "
    (p,) = every_tag_model.predict([text])
    assert p.tags and p.evidence
    for e in p.evidence:
        assert e.tag in p.tags
        assert text[e.start : e.end] == e.text


# long texts


def test_long_text_is_windowed_with_a_note(every_tag_model):
    text = "等了半小时都没人接电话，" * 10  # ~120 tokens: several 48-token windows
    (p,) = every_tag_model.predict([text])
    assert any("windows" in note for note in p.notes)
    assert not any("not read" in note for note in p.notes)
    for e in p.evidence:
        assert text[e.start : e.end] == e.text


def test_text_beyond_all_windows_says_what_was_not_read(every_tag_model):
    text = "退款申请十天了还没处理" * 40
    (p,) = every_tag_model.predict([text])
    unread = [n for n in p.notes if "not read" in n]
    assert unread and str(len(text)) in unread[0]


def test_training_truncation_keeps_head_and_tail(tmodel):
    ids = tmodel._training_ids(["头" * 100 + "尾"])[0]
    assert len(ids) == tmodel.params.train_max_length
    tail_id = tmodel._tokenizer.token_to_id("尾")
    head_id = tmodel._tokenizer.token_to_id("头")
    assert ids[1] == head_id and ids[-2] == tail_id


# fitting


def test_partial_labels_and_weights_are_accepted(tiny_base):
    texts = SEED_TEXTS[:40]
    tags = np.zeros((40, 4), dtype=np.int8)
    tags[:10, 0] = 1
    tags[20:, 2] = -1  # unknown
    sentiments = ["negative"] * 15 + [None] * 10 + ["positive"] * 15
    model = TransformerClassifier(tiny_params(tiny_base, epochs=1, runtime="torch"))
    assert model.fit(texts, tags, sentiments, sample_weight=np.linspace(0.1, 1, 40)) is model
    assert len(model.predict(texts[:3])) == 3


def test_bad_labels_are_rejected(tiny_base):
    model = TransformerClassifier(tiny_params(tiny_base))
    with pytest.raises(ValueError, match="tag_matrix"):
        model.fit(["a", "b"], np.array([[2, 0, 0, 0], [0, 0, 0, 0]]), ["negative", "neutral"])
    with pytest.raises(ValueError, match="sentiment"):
        model.fit(["a", "b"], np.zeros((2, 4)), ["angry", "neutral"])


def test_seeded_training_is_reproducible_and_resumable(tiny_base, tmp_path):
    texts, tags = SEED_TEXTS[:64], np.zeros((64, 4), dtype=np.int8)
    tags[::3, 1] = 1
    sentiments = ["negative", "neutral", "positive", "negative"] * 16
    params = tiny_params(tiny_base, epochs=2, runtime="torch")

    def rising():
        counter = iter(range(1, 100))
        return lambda model: float(next(counter))

    uninterrupted = TransformerClassifier(params).fit(texts, tags, sentiments, eval_fn=rising())
    expected = uninterrupted.predict(texts[:8])
    assert TransformerClassifier(params).fit(texts, tags, sentiments, eval_fn=rising()).predict(texts[:8]) == expected

    checkpointed = replace(params, checkpoint_dir=str(tmp_path / "ckpt"))
    scores = iter([1.0])

    def interrupted_after_first_epoch(model):
        return next(scores)  # StopIteration on the second call, like a crash during epoch 2's evaluation

    with pytest.raises(StopIteration):
        TransformerClassifier(checkpointed).fit(texts, tags, sentiments, eval_fn=interrupted_after_first_epoch)
    assert json.loads((tmp_path / "ckpt" / "loop_state.json").read_text())["epoch"] == 1
    resumed = TransformerClassifier(checkpointed).fit(texts, tags, sentiments, eval_fn=lambda model: 2.0)
    assert resumed.meta_["fine_tuning"]["resumed_from_epoch"] == 1
    assert resumed.meta_["fine_tuning"]["best_epoch"] == 2
    assert resumed.predict(texts[:8]) == expected

    with pytest.raises(ValueError, match="another run"):
        TransformerClassifier(checkpointed).fit(texts[:32], tags[:32], sentiments[:32])


# directories and base models


@pytest.fixture
def tcopy(tmodel_dir, tmp_path):
    target = tmp_path / "m"
    shutil.copytree(tmodel_dir, target)
    return target


@pytest.mark.parametrize("name", ["tokenizer.json", "config.json", "weights.safetensors", "model.onnx"])
def test_missing_file_is_named(tcopy, name):
    (tcopy / name).unlink()
    with pytest.raises(ModelLoadError, match=name.replace(".", r"\.")):
        load_model(tcopy)


def test_truncated_weights_are_a_clear_error(tcopy):
    data = (tcopy / "weights.safetensors").read_bytes()
    (tcopy / "weights.safetensors").write_bytes(data[:1000])
    with pytest.raises(ModelLoadError, match="weights"):
        load_model(tcopy)


def test_labels_and_heads_disagree(tcopy):
    labels = json.loads((tcopy / "labels.json").read_text(encoding="utf-8"))
    labels["taxonomy"] = labels["taxonomy"][:3]
    labels["thresholds"] = {t["name"]: 0.5 for t in labels["taxonomy"]}
    (tcopy / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
    with pytest.raises(ModelLoadError, match="tag_head"):
        load_model(tcopy)


def test_loading_reads_no_pickles(tmodel_dir):
    for path in tmodel_dir.iterdir():
        assert path.suffix not in {".bin", ".pt", ".pth", ".pkl", ".pickle", ".h5"}, path.name


def test_base_folder_missing_files_is_a_clear_error(tiny_base, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_base, broken)
    (broken / "model.safetensors").unlink()
    (broken / "tokenizer.json").unlink()
    (broken / "vocab.txt").unlink()
    with pytest.raises(BaseModelError, match="model.safetensors") as info:
        check_base_folder(broken)
    assert "tokenizer" in str(info.value)
    with pytest.raises(BaseModelError, match="does not exist"):
        check_base_folder(tmp_path / "nowhere")
    model = TransformerClassifier(tiny_params(broken))
    with pytest.raises(BaseModelError, match="missing"):
        model.fit(["a"], np.zeros((1, 4)), ["negative"])


def test_pickled_weights_are_refused(tiny_base, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_base, folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(BaseModelError, match="pytorch_model.bin"):
        check_base_folder(folder)
