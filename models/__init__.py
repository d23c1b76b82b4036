"""Classifiers behind one contract: `load_model(path).predict(texts) -> list[Prediction]`."""

from __future__ import annotations

import os
from importlib import import_module, resources
from pathlib import Path

from models.base import META_FILE, ModelLoadError, TagClassifier, read_json
from models.prediction import Evidence, Prediction
from models.schema import DEFAULT_TAXONOMY, SENTIMENTS, TagSpec, Taxonomy

__all__ = [
    "DEFAULT_TAXONOMY",
    "SENTIMENTS",
    "Evidence",
    "ModelLoadError",
    "Prediction",
    "TagClassifier",
    "TagSpec",
    "Taxonomy",
    "default_model_path",
    "load_model",
]

# Model types by name, imported on demand so that the baseline never imports torch.
MODEL_TYPES = {
    "tfidf-linear": "models.baseline:TfidfLinearClassifier",
    "transformer": "models.transformer:TransformerClassifier",
}

MODEL_ENV = "KESHENG_MODEL"


def default_model_path() -> Path:
    """$KESHENG_MODEL if set, else the registry's current (promoted) model, else the bundled model."""
    configured = os.environ.get(MODEL_ENV)
    if configured:
        return Path(configured)
    from models.registry import Registry

    # The symlink itself, not its target: a server watching it sees the next promotion.
    promoted = Registry().current()
    if promoted is not None:
        return promoted
    return Path(str(resources.files("models") / "default_model"))


def model_class(path: str | os.PathLike | None = None) -> tuple[Path, type[TagClassifier]]:
    """The directory and the class that loads it, from meta.json alone (no weights read)."""
    directory = Path(path) if path is not None else default_model_path()
    if not directory.is_dir():
        raise ModelLoadError(f"model directory {directory} does not exist or is not a directory")
    meta = read_json(directory, META_FILE)
    model_type = meta.get("model_type") if isinstance(meta, dict) else None
    if model_type not in MODEL_TYPES:
        raise ModelLoadError(f"{directory}: unknown model type {model_type!r}; known: {sorted(MODEL_TYPES)}")
    module_name, class_name = MODEL_TYPES[model_type].split(":")
    return directory, getattr(import_module(module_name), class_name)


def load_model(path: str | os.PathLike | None = None) -> TagClassifier:
    """Load any kesheng model directory; reads only JSON and safetensors, never pickles."""
    directory, cls = model_class(path)
    return cls.load(directory)
