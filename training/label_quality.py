"""Agreement between two independent annotations of the same comments.

    python -m kesheng.training.label_quality training/labels/double_a.jsonl training/labels/double_b.jsonl

A blind re-labeling of a sample of a larger file (or of several files: all but the last
argument) is compared on the sample's comments:

    python -m kesheng.training.label_quality training/labels/real_labels.jsonl training/labels/recheck_round2.jsonl --sample
"""

from __future__ import annotations

import argparse
import os
from collections import Counter

from kesheng.models.schema import DEFAULT_TAXONOMY, ESCALATE, Taxonomy
from kesheng.training.corpus import read_label_file, source_of

__all__ = ["agreement", "cohen_kappa"]


def cohen_kappa(first: list, second: list) -> float:
    """Chance-corrected agreement; 1.0 when both annotators use a single identical label."""
    n = len(first)
    if n == 0 or n != len(second):
        raise ValueError("two annotation lists of the same, non-zero length are needed")
    observed = sum(a == b for a, b in zip(first, second)) / n
    ca, cb = Counter(first), Counter(second)
    expected = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / (n * n)
    return 1.0 if expected == 1.0 else (observed - expected) / (1.0 - expected)


def agreement(path_a: str | os.PathLike | list, path_b: str | os.PathLike, sample: bool = False, taxonomy: Taxonomy = DEFAULT_TAXONOMY) -> dict:
    """Per-field kappa and agreement. `sample`: B re-labels a sample of A's comments, so only
    B's comments are compared (each must be in A); otherwise both must label the same ids.
    A may be several files labeling different comments (a round kept in two files)."""
    paths_a = path_a if isinstance(path_a, list) else [path_a]
    a = {r["id"]: r for path in paths_a for r in read_label_file(path, taxonomy)}
    b = {r["id"]: r for r in read_label_file(path_b, taxonomy)}
    if sample:
        missing = set(b) - set(a)
        if missing:
            raise ValueError(f"{len(missing)} comments of the sample are not in the first file, e.g. {sorted(missing)[:3]}")
        a = {i: a[i] for i in b}
    elif set(a) != set(b):
        raise ValueError(f"the two files label different ids ({len(set(a) ^ set(b))} differ)")
    ids = sorted(a)
    report = {"n": len(ids), "fields": {}}
    # Escalate is compared when both files label it (it is often labeled in a file of its own).
    both_escalate = any(a[i][ESCALATE] >= 0 for i in ids) and any(b[i][ESCALATE] >= 0 for i in ids)
    for field in (*taxonomy.names, "sentiment", *([ESCALATE] if both_escalate else [])):
        x = [a[i][field] for i in ids]
        y = [b[i][field] for i in ids]
        disagreements = [i for i in ids if a[i][field] != b[i][field]]
        report["fields"][field] = {
            "kappa": cohen_kappa(x, y),
            "agreement": 1 - len(disagreements) / len(ids),
            "positives_a": sum(v == 1 for v in x) if field != "sentiment" else None,
            "positives_b": sum(v == 1 for v in y) if field != "sentiment" else None,
            "disagreements_by_source": dict(Counter(source_of(i) for i in disagreements)),
        }
    pairs = Counter((a[i]["sentiment"], b[i]["sentiment"]) for i in ids if a[i]["sentiment"] != b[i]["sentiment"])
    report["sentiment_confusions"] = {f"{p}->{q}": c for (p, q), c in pairs.most_common()}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", metavar="FILE", help="the first annotation (one or more files), then the second")
    parser.add_argument("--sample", action="store_true", help="the second file re-labels a sample of the first")
    parser.add_argument("--taxonomy", help="taxonomy file naming the labels to compare (default: the four bundled tags)")
    args = parser.parse_args()
    taxonomy = Taxonomy.from_file(args.taxonomy) if args.taxonomy else DEFAULT_TAXONOMY
    if len(args.files) < 2:
        parser.error("give the first annotation's file(s) and the second annotation's file")
    report = agreement(args.files[:-1], args.files[-1], sample=args.sample, taxonomy=taxonomy)
    print(f"{report['n']} comments labeled twice, independently")
    print(f"{'field':<15}{'kappa':>7}{'agree':>7}{'pos A':>7}{'pos B':>7}  disagreements by source")
    for field, m in report["fields"].items():
        pa = "" if m["positives_a"] is None else m["positives_a"]
        pb = "" if m["positives_b"] is None else m["positives_b"]
        print(f"{field:<15}{m['kappa']:>7.3f}{m['agreement']:>7.3f}{pa:>7}{pb:>7}  {m['disagreements_by_source']}")
    print("sentiment disagreements (A->B):", report["sentiment_confusions"])


if __name__ == "__main__":
    main()
