"""MODEL_CARD.md: what a model is, what it was trained on, how well it does, in one page.

Written into every model directory at save time from meta.json, labels and metrics.json, so the
card can never disagree with the files predict actually uses.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from kesheng.nlp.strata import LENGTH_EDGES, stratum_label

if TYPE_CHECKING:
    from kesheng.models.base import TagClassifier

__all__ = ["CARD_FILE", "render_card", "with_share_correction"]

CARD_FILE = "MODEL_CARD.md"


def _f(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "n/a"


def _interval(entry) -> str:
    return "n/a" if not entry else f"{entry['value']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"


def _rate(numerator: int, denominator: int) -> str:
    return f"{numerator / denominator:.3f}" if denominator else "n/a"


def _share_correction_lines(block: dict | None) -> list[str]:
    """The error rates reports correct problem shares with (`kesheng report`, 占比 estimate and interval)."""
    lines = ["", SHARE_SECTION, ""]
    if not block:
        return lines + ["None stored: reports on files this model tags show raw shares (measure them with `kesheng evaluate --store-rates`)."]
    lines += [
        f"Measured on {block.get('measured_on', 'n/a')}. Reports estimate each problem's true share as "
        "(raw share − FPR) / (TPR − FPR), with a 95% interval that includes the uncertainty of these counts.",
        "",
        "| tag | TPR (recall) | FPR | positives | negatives |",
        "|---|---|---|---|---|",
    ]
    for name, c in (block.get("tags") or {}).items():
        lines.append(f"| `{name}` | {_rate(c['tp'], c['tp'] + c['fn'])} | {_rate(c['fp'], c['fp'] + c['tn'])} | {c['tp'] + c['fn']} | {c['fp'] + c['tn']} |")
    cells = (block.get("strata") or {}).get("cells") or {}
    if cells:
        edges = block["strata"].get("length_edges", LENGTH_EDGES)
        names = list(block.get("tags") or {})
        lines += [
            "",
            "The same rates per kind of comment (a thread of several turns or a single comment, by length): a report "
            "corrects each kind in the file with its own rates and weights them by the file's counts. TPR / FPR:",
            "",
            "| kind | comments | " + " | ".join(f"`{name}`" for name in names) + " |",
            "|---|---|" + "---|" * len(names),
        ]
        for key, cell in cells.items():
            rates = " | ".join(
                f"{_rate(c['tp'], c['tp'] + c['fn'])} / {_rate(c['fp'], c['fp'] + c['tn'])}" for c in (cell["tags"][name] for name in names)
            )
            lines.append(f"| {stratum_label(key, edges)} | {cell['n']} | {rates} |")
    return lines


SHARE_SECTION = "## Error rates for share correction"


def with_share_correction(card: str, block: dict) -> str:
    """An existing card with its share-correction section replaced (or added before the escalation
    section): storing new rates leaves every other line of the card as training wrote it."""
    section = "\n".join(_share_correction_lines(block)).strip("\n") + "\n\n"
    if SHARE_SECTION in card:
        start = card.index(SHARE_SECTION)
        end = card.find("\n## ", start + len(SHARE_SECTION))
        return card[:start] + section + (card[end + 1 :] if end >= 0 else "")
    anchor = card.find("## Escalation")
    return card[:anchor] + section + card[anchor:] if anchor >= 0 else card.rstrip("\n") + "\n\n" + section


def render_card(model: "TagClassifier") -> str:
    meta = model.meta_
    metrics = getattr(model, "metrics_", {}) or {}
    test = metrics.get("test") or {}
    data = metrics.get("data") or {}
    config = meta.get("training_config") or {}
    lines = [
        f"# Model card: {meta.get('model_version')}",
        "",
        f"- Model type: `{model.model_type}` (format version {meta.get('format_version')})",
        f"- Trained: {meta.get('trained_at', 'n/a')} in {meta.get('training_seconds', 'n/a')} s",
        f"- Training texts: {meta.get('n_training_texts', 'n/a')}"
        + (f" (fit {data.get('n_fit')}, dev {data.get('n_dev')}, test {data.get('n_test')}, weak {data.get('n_weak')})" if data else ""),
        "- Use: service-quality problem tags and sentiment for Chinese customer feedback; every prediction "
        "carries scores and evidence spans so a person can check it. Not for decisions about individuals.",
        "",
        "## Tags",
        "",
        "| tag | 中文 | threshold | description |",
        "|---|---|---|---|",
    ]
    for tag in model.taxonomy_.tags:
        lines.append(f"| `{tag.name}` | {tag.zh} | {model.thresholds_.get(tag.name, 0.5):.2f} | {tag.description} |")
    lines += ["", "## Quality on held-out data", ""]
    if test:
        lines += ["| tag | precision | recall | F1 | positives | labeled rows |", "|---|---|---|---|---|---|"]
        for name, m in (test.get("tags") or {}).items():
            lines.append(
                f"| `{name}` | {_f(m.get('precision'))} | {_f(m.get('recall'))} | {_f(m.get('f1'))} | "
                f"{m.get('support', 'n/a')} | {m.get('n', test.get('n', 'n/a'))} |"
            )
        sentiment = test.get("sentiment") or {}
        lines += [
            "",
            f"Macro-F1 {_f(test.get('macro_f1'))}, micro-F1 {_f(test.get('micro_f1'))} on {test.get('n')} comments; "
            f"sentiment macro-F1 {_f(sentiment.get('macro_f1'))}, accuracy {_f(sentiment.get('accuracy'))}.",
        ]
        for group, g in (test.get("by_group") or {}).items():
            lines.append(f"- {group}: n={g.get('n')}, macro-F1 {_f(g.get('macro_f1'))}, sentiment {_f(g.get('sentiment_macro_f1'))}")
    else:
        lines.append("No held-out metrics were recorded for this model.")
    intervals = metrics.get("intervals") or {}
    if intervals:
        lines += ["", "### With 95% bootstrap intervals", "", "| test set | comments | tag macro-F1 | sentiment macro-F1 | " + " | ".join(model.taxonomy_.names) + " |",
                  "|---|---|---|---|" + "---|" * len(model.taxonomy_.names)]
        for name, scores in intervals.items():
            tags = " | ".join(_interval(scores.get("tags", {}).get(t)) for t in model.taxonomy_.names)
            lines.append(f"| {name} | {scores.get('n')} | {_interval(scores.get('macro_f1'))} | {_interval(scores.get('sentiment_macro_f1'))} | {tags} |")
        lines += ["", "`test` is the split the training run held out; any other row is a label file measured only for reporting."]
    lines += _share_correction_lines(metrics.get("share_correction"))
    lines += ["", "## Escalation (需升级处理)", ""]
    if model.has_escalate:
        dev = (metrics.get("dev_before_refit") or {}).get("escalate") or {}
        target = config.get("escalate_recall")
        lines += [
            f"- Operating point: escalate when the score is at least **{model.escalate_threshold_:.4f}**, the highest threshold "
            f"whose recall on the dev split reached {_f(target)} (chosen for recall: a missed angry customer costs more "
            f"than a needless look). On dev: recall {_f(dev.get('recall'))}, precision {_f(dev.get('precision'))}, "
            f"F1 {_f(dev.get('f1'))} ({dev.get('support', 'n/a')} positives among {dev.get('n', 'n/a')} labeled).",
            "- A deployment sets its own operating point with `KESHENG_ESCALATE_THRESHOLD` (API, `kesheng tag`, "
            "batch workers); it is not saved in this directory.",
        ]
        reported = [(name, scores["escalate"]) for name, scores in intervals.items() if scores.get("escalate")]
        if reported:
            lines += ["", "| test set | labeled | positives | recall | precision | F1 |", "|---|---|---|---|---|---|"]
            for name, e in reported:
                lines.append(f"| {name} | {e['labeled']} | {e['positives']} | {_interval(e['recall'])} | {_interval(e['precision'])} | {_interval(e['f1'])} |")
    else:
        lines.append("No escalate head: this model was trained without escalate labels, so its predictions say `escalate: null`.")
    lines += [
        "",
        "## Data",
        "",
        f"- Labeled files: {config.get('train_files', [])}",
        f"- Label files by corpus id: {config.get('corpus_labels', [])}",
        f"- Other label sources: {[s.get('kind') + ': ' + s.get('path', '') for s in config.get('label_sources', [])]}",
        f"- Taxonomy file: {config.get('taxonomy') or 'bundled (four tags)'}",
        "",
        "## Training configuration",
        "",
        "```json",
        json.dumps(config, ensure_ascii=False, indent=2),
        "```",
        "",
        "## Library versions",
        "",
        ", ".join(f"{k} {v}" for k, v in (meta.get("versions") or {}).items()) or "n/a",
        "",
    ]
    return "\n".join(lines)
