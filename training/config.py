"""Typed training configuration, saved with every model it produces."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path

from kesheng.models.baseline import BaselineParams
from kesheng.models.schema import DEFAULT_TAXONOMY, Taxonomy
from kesheng.models.transformer import TransformerParams
from kesheng.training.fine_tune import FineTuneArgs

FINE_TUNE_FIELDS = {f.name for f in fields(FineTuneArgs)}

__all__ = ["ColumnMap", "LabelSource", "TrainConfig", "bundled_config", "bundled_seed_corpus", "bundled_seed_files"]


def bundled_config() -> str:
    """The config the bundled default model is trained with (seed corpus + real labels)."""
    return str(resources.files("kesheng.training") / "configs" / "default.json")


def bundled_seed_corpus() -> str:
    """The team-written seed corpus (923 comments, every label including escalate)."""
    return str(resources.files("kesheng.training") / "seed" / "seed_corpus.jsonl")


def bundled_seed_files() -> list[str]:
    """The default training set: the seed corpus and the team-written escalation examples (160
    comments, 90 escalated, 70 hard negatives: angry without a threat, crude words about a product)."""
    return [bundled_seed_corpus(), str(resources.files("kesheng.training") / "seed" / "seed_escalate.jsonl")]


@dataclass
class ColumnMap:
    text: str = "text"  # column with the comment
    id: str = "id"  # column with a unique row id; row numbers are used when absent
    sentiment: str = "sentiment"  # column with negative|neutral|positive
    tags: str = "tags"  # alternative to one 0/1 column per tag: a list of tag names per row
    escalate: str = "escalate"  # 0/1 column: needs a person now (empty = not labeled); files without it train no escalate head
    group: str | None = None  # column naming each row's origin for per-group metrics; default: "source" if present, else the file name


LABEL_SOURCE_KINDS = ("feedback", "label_studio", "argilla")


@dataclass
class LabelSource:
    kind: str  # feedback (the API's SQLite store), label_studio (JSON export) or argilla (JSON/JSONL export)
    path: str  # the store or export file
    text_field: str = "text"  # Label Studio data key / Argilla field holding the comment
    tags_field: str = "tags"  # Label Studio choices control / Argilla question with the tags
    sentiment_field: str = "sentiment"  # Label Studio choices control / Argilla question with the sentiment
    escalate_field: str = "escalate"  # Label Studio choices control / Argilla question with escalate (yes/no)

    def __post_init__(self):
        if self.kind not in LABEL_SOURCE_KINDS:
            raise ValueError(f"label source kind {self.kind!r} is not one of {list(LABEL_SOURCE_KINDS)}")


@dataclass
class TrainConfig:
    train_files: list[str] = field(default_factory=bundled_seed_files)  # JSONL/CSV labeled data
    dev_file: str | None = None  # thresholds are tuned here; split off the training data when absent
    test_file: str | None = None  # metrics are measured here; split off the training data when absent
    corpus_labels: list[str] = field(default_factory=list)  # label files by corpus id; their split field routes rows to train/dev/test
    corpus_dir: str | None = None  # public corpora for corpus_labels ($KESHENG_CORPUS_DIR when None)
    report_labels: list[str | list[str]] = field(default_factory=list)  # label files by corpus id whose test rows are only measured after training (never used for a choice), e.g. the independent test set; a list entry joins files labeling the same comments (tags + escalate)
    weak_rows: int = 0  # unlabeled corpus comments added with weak labels (needs corpus_labels); 0 = off
    weak_weight: float = 0.1  # each weak row's weight relative to a hand label
    weak_tags: bool = False  # also train tags on weak labels (off: on dev they helped sentiment only)
    taxonomy: str | None = None  # taxonomy file (tags, Chinese names, renames); None: the bundled four tags
    label_sources: list[LabelSource] = field(default_factory=list)  # more training labels: feedback store, Label Studio / Argilla exports
    columns: ColumnMap = field(default_factory=ColumnMap)  # how the files name their columns
    model_type: str = "tfidf-linear"  # which classifier to train: tfidf-linear or transformer
    baseline: BaselineParams = field(default_factory=BaselineParams)  # tfidf-linear hyperparameters
    transformer: TransformerParams = field(default_factory=TransformerParams)  # transformer architecture and reading (base encoder, windows), saved with the model
    fine_tuning: FineTuneArgs = field(default_factory=FineTuneArgs)  # how the transformer is trained (epochs, learning rates, device); its seed is `seed`
    seed: int = 13  # fixes every split and solver; same data + config = same model
    test_fraction: float = 0.2  # share held out for metrics when no test_file is given
    dev_fraction: float = 0.2  # share of the rest held out for thresholds when no dev_file is given
    refit_with_dev: bool = True  # after tuning thresholds, refit on train+dev so no label is wasted (tfidf-linear only: the transformer's dev split picks its epoch)
    min_positives_for_threshold: int = 5  # fewer dev positives than this: keep threshold 0.5
    min_test_positives: int = 10  # a tag with fewer test positives gets a warning: its F1 is mostly noise
    threshold_bounds: tuple[float, float] = (0.1, 0.9)  # tuned thresholds are clipped to this range
    escalate_recall: float = 0.9  # the escalate threshold is the highest whose dev recall reaches this: a missed angry customer costs more than a needless look

    def to_dict(self) -> dict:
        return asdict(self)

    def load_taxonomy(self) -> Taxonomy:
        """The tag set this training run uses (checked: names unique, renames consistent)."""
        return Taxonomy.from_file(self.taxonomy) if self.taxonomy else DEFAULT_TAXONOMY

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}; known: {sorted(known)}")
        data = dict(data)
        if "columns" in data:
            data["columns"] = ColumnMap(**data["columns"])
        if "baseline" in data:
            data["baseline"] = BaselineParams.from_dict(data["baseline"])
        if "transformer" in data:
            # Configs written before the split kept the training arguments under "transformer".
            section = dict(data["transformer"])
            moved = {k: section.pop(k) for k in list(section) if k in FINE_TUNE_FIELDS}
            section.pop("runtime", None)
            if moved:
                data["fine_tuning"] = {**moved, **data.get("fine_tuning", {})}
            data["transformer"] = TransformerParams.from_dict(section)
        if "fine_tuning" in data:
            data["fine_tuning"] = FineTuneArgs(**data["fine_tuning"])
        if "label_sources" in data:
            data["label_sources"] = [LabelSource(**item) for item in data["label_sources"]]
        if "threshold_bounds" in data:
            data["threshold_bounds"] = tuple(data["threshold_bounds"])
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> "TrainConfig":
        """Read a JSON config; relative data paths are relative to the config file."""
        path = Path(path)
        config = cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        here = path.resolve().parent

        def resolve(value: str) -> str:
            return value if Path(value).is_absolute() else str((here / value).resolve())

        config.train_files = [resolve(p) for p in config.train_files]
        config.corpus_labels = [resolve(p) for p in config.corpus_labels]
        config.report_labels = [resolve(p) if isinstance(p, str) else [resolve(q) for q in p] for p in config.report_labels]
        config.dev_file = resolve(config.dev_file) if config.dev_file else None
        config.test_file = resolve(config.test_file) if config.test_file else None
        config.taxonomy = resolve(config.taxonomy) if config.taxonomy else None
        for source in config.label_sources:
            source.path = resolve(source.path)
        return config
