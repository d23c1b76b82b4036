"""The one loaded model of a serving process, swappable without downtime.

Requests read `holder.model` once and use that object to the end, so a reload never changes
the model under a running request; the old model keeps serving until the new one has loaded,
and stays if the new one fails to load.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from kesheng.models import TagClassifier
from kesheng.models.base import read_model_version
from kesheng.stores.registry import load_model, resolve_model

__all__ = ["ModelHolder", "ReloadOutcome"]

log = logging.getLogger("kesheng.serve")


@dataclass(frozen=True)
class ReloadOutcome:
    reloaded: bool  # False: the directory holds the version already loaded, or loading failed
    model_version: str  # the version serving after the attempt
    previous_version: str
    error: str | None = None  # why the new model was refused (the old one keeps serving)


# Tagged at the first load and at every reload: a model whose directory loads but whose
# predict fails (e.g. a meta.json param that breaks it) never serves.
SELF_CHECK = ["模型自检：等了很久没人回复", ""]


class ModelHolder:
    def __init__(self, model_dir: Path | None = None, escalate_threshold: float | None = None):
        self.model_dir = Path(model_dir) if model_dir is not None else resolve_model()
        # The deployment's escalate operating point (KESHENG_ESCALATE_THRESHOLD), applied to every
        # model this holder loads; None: each model's own threshold.
        self.escalate_threshold = escalate_threshold
        self._model: TagClassifier | None = None
        self._swap = threading.Lock()  # one reload at a time; readers never wait for it
        self.loaded_at: str | None = None
        self.last_error: str | None = None

    @property
    def model(self) -> TagClassifier:
        model = self._model
        if model is None:
            raise RuntimeError("no model loaded yet")
        return model

    @property
    def ready(self) -> bool:
        return self._model is not None

    @property
    def version(self) -> str:
        return str(self.model.meta_.get("model_version"))

    def load(self) -> TagClassifier:
        """First load at startup: a failure here is fatal (ModelLoadError)."""
        with self._swap:
            self._install(self._checked(load_model(self.model_dir)))
        return self.model

    def _checked(self, model: TagClassifier) -> TagClassifier:
        if self.escalate_threshold is not None:
            model.override_escalate_threshold(self.escalate_threshold)
        predictions = model.predict(SELF_CHECK)
        if len(predictions) != len(SELF_CHECK):
            raise RuntimeError(f"model self-check: {len(predictions)} predictions for {len(SELF_CHECK)} texts")
        return model

    def reload(self, only_if_changed: bool = False) -> ReloadOutcome:
        with self._swap:
            previous = self.version
            if only_if_changed and read_model_version(self.model_dir) == previous:
                return ReloadOutcome(False, previous, previous)
            try:
                # A broken model that loads must not replace a working one.
                candidate = self._checked(load_model(self.model_dir))
            except Exception as exc:  # noqa: BLE001 - whatever went wrong, the old model keeps serving
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("model reload failed, still serving %s: %s", previous, self.last_error)
                return ReloadOutcome(False, previous, previous, self.last_error)
            self._install(candidate)
            log.info("model reloaded: %s -> %s", previous, self.version)
            return ReloadOutcome(True, self.version, previous)

    def _install(self, model: TagClassifier) -> None:
        self._model = model
        self.loaded_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.last_error = None
