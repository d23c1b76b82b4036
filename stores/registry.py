"""The model registry: promoted models, and which one is current (what `tag` and `serve` use).

    <registry>/models/<model_version>/   a copy of each promoted model directory
    <registry>/current                   symlink to the current one, swapped atomically
    <registry>/history.jsonl             one line per promotion: when, what, from where, why

The registry is $KESHENG_REGISTRY, or ~/.local/share/kesheng/registry. A server started on
`<registry>/current` with KESHENG_RELOAD_CHECK_SECONDS picks up a promotion by itself.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from kesheng.files.atomic import replace_directory, staging_directory
from kesheng.models import bundled_model_path
from kesheng.models import load_model as load_model_dir
from kesheng.models.base import LABELS_FILE, ModelLoadError, TagClassifier, read_json, read_model_version
from kesheng.models.schema import Taxonomy, TaxonomyError

__all__ = ["MODEL_ENV", "REGISTRY_ENV", "Promotion", "Registry", "RegistryError", "known_model_dir", "known_taxonomy", "load_model", "resolve_model"]

REGISTRY_ENV = "KESHENG_REGISTRY"
MODEL_ENV = "KESHENG_MODEL"


class RegistryError(Exception):
    """The registry cannot be read or changed; the message says why."""


@dataclass(frozen=True)
class Promotion:
    model_version: str
    promoted_at: str
    source: str  # the directory the model was promoted from
    previous: str | None  # the version that was current before
    reason: str  # free text, e.g. the comparison that justified it


class Registry:
    def __init__(self, root: str | os.PathLike | None = None):
        if root is None:
            root = os.environ.get(REGISTRY_ENV) or Path.home() / ".local" / "share" / "kesheng" / "registry"
        self.root = Path(root)

    @property
    def current_link(self) -> Path:
        return self.root / "current"

    def current(self) -> Path | None:
        """The current model's directory (through the symlink), or None before any promotion."""
        link = self.current_link
        return link if link.is_symlink() and link.exists() else None

    def incumbent(self) -> Path:
        """The model a promotion must beat: the current one, or the bundled model before any promotion."""
        return self.current() or bundled_model_path()

    def current_version(self) -> str | None:
        current = self.current()
        return None if current is None else read_model_version(current)

    def promote(self, model_dir: str | os.PathLike, reason: str = "", model: TagClassifier | None = None) -> Promotion:
        """Copy a model into the registry and make it current; the swap is one atomic rename.

        `model`: the directory's model when the caller has loaded it already (else it is loaded here).
        """
        source = Path(model_dir).resolve()
        if model is None:
            model = load_model_dir(source)  # refuse a directory that would not load in `serve`
        version = str(model.meta_["model_version"])
        if "/" in version or version in ("", ".", ".."):
            raise RegistryError(f"{source}: model version {version!r} cannot name a directory")
        target = self.root / "models" / version
        if not target.exists():
            staging = staging_directory(target)
            try:
                shutil.copytree(source, staging, dirs_exist_ok=True)
                replace_directory(staging, target)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        previous = self.current_version()
        temporary_link = self.root / ".current.new"
        if temporary_link.is_symlink() or temporary_link.exists():
            temporary_link.unlink()
        temporary_link.symlink_to(Path("models") / version)
        os.replace(temporary_link, self.current_link)
        promotion = Promotion(version, datetime.now(timezone.utc).isoformat(timespec="seconds"), str(source), previous, reason)
        with open(self.root / "history.jsonl", "a", encoding="utf-8") as history:
            history.write(json.dumps(promotion.__dict__, ensure_ascii=False) + "\n")
            history.flush()
            os.fsync(history.fileno())
        return promotion

    def history(self) -> list[Promotion]:
        path = self.root / "history.jsonl"
        if not path.exists():
            return []
        try:
            return [Promotion(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (json.JSONDecodeError, TypeError) as exc:
            raise RegistryError(f"{path}: unreadable history ({exc})") from exc


def resolve_model(model: str | os.PathLike | None = None) -> Path:
    """The model directory a command uses: the one given, else $KESHENG_MODEL, else the registry's
    current (promoted) model, else the bundled model."""
    if model is not None:
        return Path(model)
    configured = os.environ.get(MODEL_ENV)
    if configured:
        return Path(configured)
    # The symlink itself, not its target: a server watching it sees the next promotion.
    return Registry().incumbent()


ESCALATE_THRESHOLD_ENV = "KESHENG_ESCALATE_THRESHOLD"


def load_model(model: str | os.PathLike | None = None) -> TagClassifier:
    """Load the model a command would use (see `resolve_model`); reads only JSON and safetensors.

    $KESHENG_ESCALATE_THRESHOLD, when set, is this deployment's escalate operating point: every
    command (tag, batch workers, the API, report) flags with it instead of the model's own
    threshold. It is a runtime setting, never written into the model directory.
    """
    loaded = load_model_dir(resolve_model(model))
    return loaded.override_escalate_threshold(escalate_threshold_from_env())


def escalate_threshold_from_env() -> float | None:
    raw = os.environ.get(ESCALATE_THRESHOLD_ENV, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise ModelLoadError(f"{ESCALATE_THRESHOLD_ENV}={raw!r}: expected a number between 0 and 1")
    return value


def known_model_dir(model_version: str, registry: Registry | None = None) -> Path | None:
    """The directory of a model version in the registry or bundled with kesheng, else None.

    A tagged file carries its model version on every row, so a report can find what it needs of
    that model (Chinese tag names, error rates) without the user pointing it at the model.
    """
    candidates = [(registry or Registry()).root / "models" / model_version, bundled_model_path()]
    for directory in candidates:
        if directory.is_dir() and read_model_version(directory) == model_version:
            return directory
    return None


def known_taxonomy(model_version: str, registry: Registry | None = None) -> Taxonomy | None:
    """The taxonomy of a model version found in the registry or bundled with kesheng, else None."""
    directory = known_model_dir(model_version, registry)
    if directory is None:
        return None
    try:
        return Taxonomy.from_list(read_json(directory, LABELS_FILE)["taxonomy"])
    except (ModelLoadError, KeyError, TypeError, TaxonomyError):
        return None
