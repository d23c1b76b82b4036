"""The STC-3 dialogues as a survey file with satisfaction scores, for the report's drivers section.

    python benchmarks/stc3_scores.py --corpus-dir ../shared/data/pool -o stc3.csv

STC-3 (NTCIR-14 Short Text Conversation, Chinese dialogue quality) has each customer-helpdesk
dialogue rated by 19 annotators on three scales from -2 to 2: A (task accomplishment), S
(customer satisfaction) and E (efficiency). One row per dialogue: its id, the customer's turns
joined by newlines (as `kesheng.training.corpus` reads them), and the mean of each scale over
the annotators. Then:

    kesheng tag -i stc3.csv -o stc3_tagged.csv
    kesheng report -i stc3_tagged.csv -o stc3_report.md --score-column satisfaction
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

SCALES = {"satisfaction": "S", "accomplishment": "A", "efficiency": "E"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-dir", default=None, help="the public corpora ($KESHENG_CORPUS_DIR)")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    from kesheng.files.atomic import atomic_path
    from kesheng.training.corpus import resolve_corpus_dir

    dialogues = json.loads((resolve_corpus_dir(args.corpus_dir) / "stc3_dch1_train.json").read_text(encoding="utf-8"))
    with atomic_path(args.output) as part, open(part, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", *SCALES])
        for dialogue in dialogues:
            text = "\n".join("".join(t["utterances"]) for t in dialogue["turns"] if t["sender"] == "customer")
            ratings = [a["quality"] for a in dialogue.get("annotations", [])]
            means = [round(sum(r[key] for r in ratings) / len(ratings), 3) if ratings else "" for key in SCALES.values()]
            writer.writerow([f"stc3-{dialogue['id']}", text, *means])
    print(f"{len(dialogues):,} dialogues -> {args.output}")


if __name__ == "__main__":
    main()
