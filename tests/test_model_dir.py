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
