"""A broken or incompatible model directory gives a clear error naming what is wrong."""

import json
import shutil

import pytest

from kesheng.models import ModelLoadError, load_model


@pytest.fixture
def copy(model_dir, tmp_path):
    target = tmp_path / "m"
    shutil.copytree(model_dir, target)
    return target


def edit_json(path, change):
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def test_model_directory_is_self_describing(model_dir):
    meta = json.loads((model_dir / "meta.json").read_text(encoding="utf-8"))
    assert meta["format_version"] == 1 and meta["model_type"] == "tfidf-linear"
    assert meta["model_version"].startswith("tfidf-linear-")
    assert "scikit-learn" in meta["versions"] and "training_config" in meta
    labels = json.loads((model_dir / "labels.json").read_text(encoding="utf-8"))
    assert [t["name"] for t in labels["taxonomy"]] == ["slow_response", "unresolved", "attitude", "opacity"]
    assert set(labels["thresholds"]) == {"slow_response", "unresolved", "attitude", "opacity"}
    metrics = json.loads((model_dir / "metrics.json").read_text(encoding="utf-8"))
    assert "macro_f1" in metrics["test"]
    assert not list(model_dir.glob("*.pkl")) and not list(model_dir.glob("*.joblib"))


def test_missing_directory(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "nope")


@pytest.mark.parametrize("name", ["meta.json", "labels.json", "vocab.json", "weights.safetensors"])
def test_missing_file_is_named(copy, name):
    (copy / name).unlink()
    with pytest.raises(ModelLoadError, match=name.replace(".", r"\.")):
        load_model(copy)


def test_corrupt_json(copy):
    (copy / "labels.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="corrupt JSON"):
        load_model(copy)


def test_truncated_weights(copy):
    data = (copy / "weights.safetensors").read_bytes()
    (copy / "weights.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="weights"):
        load_model(copy)


def test_newer_format_version(copy):
    edit_json(copy / "meta.json", lambda m: m.update(format_version=99))
    with pytest.raises(ModelLoadError, match="format version 99"):
        load_model(copy)


def test_unknown_model_type(copy):
    edit_json(copy / "meta.json", lambda m: m.update(model_type="magic"))
    with pytest.raises(ModelLoadError, match="unknown model type 'magic'"):
        load_model(copy)


def test_vocabulary_and_weights_disagree(copy):
    edit_json(copy / "vocab.json", lambda v: v.append("w:extra"))
    with pytest.raises(ModelLoadError, match="coef has shape"):
        load_model(copy)


def test_threshold_out_of_range(copy):
    edit_json(copy / "labels.json", lambda labels: labels["thresholds"].update(opacity=1.5))
    with pytest.raises(ModelLoadError, match="thresholds outside"):
        load_model(copy)


def test_label_missing_threshold(copy):
    edit_json(copy / "labels.json", lambda labels: labels["thresholds"].pop("attitude"))
    with pytest.raises(ModelLoadError, match="malformed labels"):
        load_model(copy)


def test_save_refuses_to_overwrite(model, model_dir):
    with pytest.raises(FileExistsError):
        model.save(model_dir)


def _drop_escalate_weights(directory) -> int:
    """Remove the escalate column from a baseline's weights, as a directory saved before the head
    would have them; returns the coefficient columns left."""
    from safetensors.numpy import load_file, save_file

    arrays = load_file(str(directory / "weights.safetensors"))
    arrays["coef"], arrays["intercept"] = arrays["coef"][:, :-1].copy(), arrays["intercept"][:-1].copy()
    save_file(arrays, str(directory / "weights.safetensors"))
    return arrays["coef"].shape[1]


def test_a_model_saved_before_the_escalate_head_loads_and_says_unknown(copy):
    edit_json(copy / "labels.json", lambda d: d.pop("escalate"))
    coef_columns = _drop_escalate_weights(copy)
    model = load_model(copy)
    assert coef_columns == 4 + 3 and not model.has_escalate
    (p,) = model.predict(["再不解决我就投诉到工信部！！！"])
    assert p.escalate is None and p.escalate_score is None and p.tags is not None


@pytest.mark.parametrize("entry, words", [({"threshold": 1.5}, "escalate"), ({"threshold": "high"}, "escalate"), ({}, "escalate"), (0.3, "escalate")])
def test_a_malformed_escalate_entry_is_named(copy, entry, words):
    edit_json(copy / "labels.json", lambda d: d.update(escalate=entry))
    with pytest.raises(ModelLoadError, match=words):
        load_model(copy)


def test_labels_with_an_escalate_head_the_weights_lack(copy):
    _drop_escalate_weights(copy)
    with pytest.raises(ModelLoadError, match="coef has shape"):
        load_model(copy)


def test_the_deployment_escalate_threshold_comes_from_the_environment(model_dir, monkeypatch):
    from kesheng.stores.registry import load_model as load_for_a_command

    monkeypatch.setenv("KESHENG_ESCALATE_THRESHOLD", "0.05")
    model = load_for_a_command(model_dir)
    assert model.escalate_threshold == 0.05 and model.escalate_threshold_ != 0.05
    monkeypatch.setenv("KESHENG_ESCALATE_THRESHOLD", "very")
    with pytest.raises(ModelLoadError, match="KESHENG_ESCALATE_THRESHOLD"):
        load_for_a_command(model_dir)


@pytest.mark.parametrize(
    "change",
    [{"batch_size": 0}, {"batch_size": 1e18}, {"max_evidence": -5}, {"tag_c": "big"}, {"features": {"char_ngram_min": -3}}, {"features": {"char_ngram_min": 4, "char_ngram_max": 2}}],
)
def test_numeric_params_that_would_break_predict_are_refused_at_load(copy, change):
    def apply(meta):
        for key, value in change.items():
            if isinstance(value, dict):
                meta["params"][key].update(value)
            else:
                meta["params"][key] = value

    edit_json(copy / "meta.json", apply)
    with pytest.raises(ModelLoadError, match="params"):
        load_model(copy)
