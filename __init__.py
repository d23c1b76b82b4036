"""客声 kesheng: service-quality tags, sentiment and evidence for Chinese customer feedback.

The repository root is this package and its top-level folders are its rooms
(pyproject.toml maps them): `kesheng.nlp` text processing, `kesheng.files` reading and writing
user files, `kesheng.models` the classifiers and their `predict` contract, `kesheng.stores` the
label store and the model registry, `kesheng.training` training and evaluation,
`kesheng.serve.api` the HTTP API, `kesheng.serve.batch` tagging files, `kesheng.analysis`
reports, and `kesheng.cli` the `kesheng` command.

What a user needs is importable from here; it is imported on first use, so `import kesheng`
stays cheap and never pulls in pandas or torch.
"""

from __future__ import annotations

from importlib import import_module, metadata

try:
    __version__ = metadata.version("kesheng")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

# public name -> the module that defines it
_EXPORTS = {
    "load_model": "kesheng.stores.registry",
    "resolve_model": "kesheng.stores.registry",
    "Prediction": "kesheng.models.prediction",
    "Evidence": "kesheng.models.prediction",
    "TagClassifier": "kesheng.models.base",
    "ModelLoadError": "kesheng.models.base",
    "Taxonomy": "kesheng.models.schema",
    "TagFileOptions": "kesheng.serve.batch",
    "TagFileResult": "kesheng.serve.batch",
    "tag_file": "kesheng.serve.batch",
    "InputFileError": "kesheng.files.readers",
    "ReportOptions": "kesheng.analysis.report",
    "build_report": "kesheng.analysis.report",
    "write_report": "kesheng.analysis.report",
    "TrainConfig": "kesheng.training.config",
    "train": "kesheng.training.train",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kesheng' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
