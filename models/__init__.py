"""Classifiers behind one contract: `load_model(path).predict(texts) -> list[Prediction]`."""

from __future__ import annotations

import os
from importlib import import_module, resources
from pathlib import Path

from kesheng.models.base import META_FILE, ModelLoadError, TagClassifier, read_json
from kesheng.models.prediction import Evidence, Prediction
from kesheng.models.schema import DEFAULT_TAXONOMY, SENTIMENTS, TagSpec, Taxonomy

__all__ = [
    "DEFAULT_TAXONOMY",
    "SENTIMENTS",
    "Evidence",
    "ModelLoadError",
    "Prediction",
    "TagClassifier",
    "TagSpec",
    "Taxonomy",
    "MODEL_TYPES",
    "bundled_model_path",
    "model_class",
    "model_type_class",
    "load_model",
]

# Model types by name, imported on demand so that the baseline never imports torch.
MODEL_TYPES = {
    "tfidf-linear": "kesheng.models.baseline:TfidfLinearClassifier",
    "transformer": "kesheng.models.transformer:TransformerClassifier",
}

def bundled_model_path() -> Path:
    """The model that ships inside the package (what `kesheng tag` uses before any promotion)."""
    return Path(str(resources.files("kesheng.models") / "default_model"))


def model_class(path: str | os.PathLike) -> tuple[Path, type[TagClassifier]]:
    """The directory and the class that loads it, from meta.json alone (no weights read)."""
    directory = Path(path)
    if not directory.is_dir():
        raise ModelLoadError(f"model directory {directory} does not exist or is not a directory")
    meta = read_json(directory, META_FILE)
    model_type = meta.get("model_type") if isinstance(meta, dict) else None
    if model_type not in MODEL_TYPES:
        raise ModelLoadError(f"{directory}: unknown model type {model_type!r}; known: {sorted(MODEL_TYPES)}")
    return directory, model_type_class(model_type)


def model_type_class(model_type: str) -> type[TagClassifier]:
    """The classifier class registered under a model type name (imported on demand)."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown model type {model_type!r}; known: {sorted(MODEL_TYPES)}")
    module_name, class_name = MODEL_TYPES[model_type].split(":")
    return getattr(import_module(module_name), class_name)


def load_model(path: str | os.PathLike) -> TagClassifier:
    """Load a kesheng model directory; reads only JSON and safetensors, never pickles.

    Which directory a command uses when none is given ($KESHENG_MODEL, the promoted model, the
    bundled one) is decided by `kesheng.stores.registry.load_model`, exported as `kesheng.load_model`.
    """
    directory, cls = model_class(path)
    return cls.load(directory)
