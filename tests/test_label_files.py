"""The label files by id: the independent test set is frozen and shares no comment with training."""

import hashlib
import json
from pathlib import Path

import pytest

LABELS = Path(__file__).resolve().parents[1] / "training" / "labels"
FROZEN = {
    "independent_test.jsonl": "9c49bd45b2e02bf31880bd381f7355721d604d4556fcbf031f7ff8fa203a546b",
    "independent_test_escalate.jsonl": "bce8daa8de358e7ab8afa3d2dd61fca4e640aaaa2d6e44814d5aafe9262e942c",
}


def _ids(name: str) -> set[str]:
    return {json.loads(line)["id"] for line in (LABELS / name).read_text(encoding="utf-8").splitlines()}


@pytest.mark.parametrize("name, digest", sorted(FROZEN.items()))
def test_independent_test_set_is_frozen(name, digest):
    assert hashlib.sha256((LABELS / name).read_bytes()).hexdigest() == digest, f"{name} changed: it is frozen, report on it only"


def test_independent_test_ids_are_in_no_training_file():
    test_ids = _ids("independent_test.jsonl")
    assert len(test_ids) == 2000 and _ids("independent_test_escalate.jsonl") == test_ids
    others = [p.name for p in LABELS.glob("*.jsonl") if not p.name.startswith("independent_test")]
    for name in others:
        assert not test_ids & _ids(name), f"{name} labels comments of the independent test set"


def test_escalate_labels_are_binary_and_by_unique_id():
    rows = [json.loads(line) for line in (LABELS / "escalate_round1.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {tuple(sorted(r)) for r in rows} == {("escalate", "id")}
    assert {r["escalate"] for r in rows} == {0, 1}
    assert len({r["id"] for r in rows}) == len(rows) == 2500
    assert {r["id"] for r in rows} <= _ids("real_labels.jsonl")
