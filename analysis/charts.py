"""Report charts with matplotlib, drawn in a font that has Chinese characters.

Matplotlib's own font (DejaVu Sans) has no CJK glyphs, so Chinese labels would come out as
empty boxes. The font comes from the `mplfonts` package (Noto Sans CJK SC, SIL Open Font
License), installed with `kesheng[report]`, or else from the system. Every chart is drawn while
matplotlib's "missing glyph" warnings are recorded, so a label the font cannot draw is
reported instead of silently shipped as boxes.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kesheng.models.schema import OTHER_ZH, SENTIMENT_ZH, SENTIMENTS

if TYPE_CHECKING:
    from kesheng.analysis.report import ReportData

__all__ = ["Chart", "cjk_font_name", "render_charts"]

# Fonts with Chinese glyphs that systems commonly have, tried when mplfonts is not installed.
SYSTEM_CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "PingFang SC",
    "Microsoft YaHei",
    "SimHei",
)
PALETTE = ["#c0392b", "#2980b9", "#27ae60", "#8e44ad", "#d35400", "#16a085", "#7f8c8d", "#f1c40f"]
SENTIMENT_COLORS = {"negative": "#c0392b", "neutral": "#95a5a6", "positive": "#27ae60"}
MISSING_GLYPH = re.compile(r"Glyph (\d+) .*missing from (current )?font")

_font_name: str | None = None


@dataclass
class Chart:
    title: str
    png: bytes
    svg: bytes


def cjk_font_file() -> Path | None:
    """The Noto Sans CJK SC file the `report` extra ships (SIL Open Font License), if installed."""
    try:
        import mplfonts
    except ImportError:
        return None
    candidate = Path(mplfonts.__file__).parent / "fonts" / "NotoSansCJKsc-Regular.otf"
    return candidate if candidate.is_file() else None


def cjk_font_name() -> str:
    """Register and return the CJK font used for every chart (once per process)."""
    global _font_name
    if _font_name is not None:
        return _font_name
    from matplotlib import font_manager

    bundled = cjk_font_file()
    if bundled is not None:
        font_manager.fontManager.addfont(str(bundled))
        _font_name = font_manager.FontProperties(fname=str(bundled)).get_name()
        return _font_name
    available = {f.name for f in font_manager.fontManager.ttflist}
    for name in SYSTEM_CJK_FONTS:
        if name in available:
            _font_name = name
            return name
    from kesheng.analysis.report import ReportError

    raise ReportError("no font with Chinese characters found for the charts: pip install 'kesheng[report]' (brings Noto Sans CJK via mplfonts)")


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["font.family"] = "sans-serif"
    plt.rcParams["font.sans-serif"] = [cjk_font_name(), "DejaVu Sans"]
    plt.rcParams["axes.unicode_minus"] = False
    plt.rcParams["svg.fonttype"] = "path"  # text as outlines: the SVG shows Chinese without the font
    figure, axes = plt.subplots(figsize=(width, height), dpi=110)
    axes.spines[["top", "right"]].set_visible(False)
    return figure, axes


def _save(figure, title: str, missing: set[str]) -> Chart:
    import matplotlib.pyplot as plt

    outputs = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figure.tight_layout()
        for fmt in ("png", "svg"):
            buffer = io.BytesIO()
            figure.savefig(buffer, format=fmt, dpi=130 if fmt == "png" else None, metadata={"Date": None} if fmt == "svg" else None)
            outputs[fmt] = buffer.getvalue()
    plt.close(figure)
    for warning in caught:
        found = MISSING_GLYPH.search(str(warning.message))
        if found:
            missing.add(chr(int(found.group(1))))
    return Chart(title, outputs["png"], outputs["svg"])


def _problems(data: "ReportData", missing: set[str]) -> Chart:
    order = sorted(data.tags, key=lambda t: data.tag_counts[t])
    labels = [OTHER_ZH] + [data.label(t) for t in order]
    counts = [data.other] + [data.tag_counts[t] for t in order]
    shares = [data.share(c) * 100 for c in counts]
    figure, axes = _figure(7.5, 0.55 * len(labels) + 1.2)
    colors = ["#bdc3c7"] + [PALETTE[0]] * len(order)
    bars = axes.barh(labels, shares, color=colors)
    for bar, share, count in zip(bars, shares, counts):
        axes.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {share:.1f}% ({count:,})", va="center", fontsize=9)
    axes.set_xlabel("占有效评论的比例 (%)")
    axes.set_title("问题类型分布")
    axes.set_xlim(0, max(shares + [1]) * 1.25)
    return _save(figure, "问题类型分布", missing)


def _sentiment(data: "ReportData", missing: set[str]) -> Chart:
    figure, axes = _figure(6, 3.2)
    labels = [SENTIMENT_ZH[s] for s in SENTIMENTS]
    shares = [data.share(data.sentiment[s]) * 100 for s in SENTIMENTS]
    bars = axes.bar(labels, shares, color=[SENTIMENT_COLORS[s] for s in SENTIMENTS])
    for bar, share, s in zip(bars, shares, SENTIMENTS):
        axes.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{share:.1f}%\n({data.sentiment[s]:,})", ha="center", va="bottom", fontsize=9)
    axes.set_ylabel("占比 (%)")
    axes.set_ylim(0, max(shares + [1]) * 1.3)
    axes.set_title("情感分布")
    return _save(figure, "情感分布", missing)


def _heatmap(
    matrix: np.ndarray, rows: list[str], columns: list[str], title: str, missing: set[str], fmt: str, colorbar_label: str | None,
    muted: np.ndarray | None = None,
) -> Chart:
    """Annotated heatmap; without a colorbar label, colors compare rows within each column.
    `muted` rows (too few comments to compare) are left uncolored, their numbers grey."""
    figure, axes = _figure(max(5.5, 1.1 * len(columns) + 2.5), max(3.0, 0.45 * len(rows) + 1.6))
    if colorbar_label is None:
        # Negative sentiment runs near 50% while tags run near 5%: one scale would hide the tags.
        peaks = matrix.max(axis=0, keepdims=True) if matrix.size else 1
        colors = matrix / np.where(peaks > 0, peaks, 1)
    else:
        colors = matrix
    if muted is not None and muted.any():
        colors = np.where(muted[:, None], 0.0, colors)
    image = axes.imshow(colors, cmap="Reds", aspect="auto", vmin=0)
    axes.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    axes.set_yticks(range(len(rows)), rows)
    high = colors.max() if colors.size else 0
    for i in range(len(rows)):
        for j in range(len(columns)):
            dark = high and colors[i, j] > high * 0.6
            color = "#9a9a9a" if muted is not None and muted[i] else ("white" if dark else "black")
            axes.text(j, i, format(matrix[i, j], fmt), ha="center", va="center", fontsize=8, color=color)
    if colorbar_label is not None:
        figure.colorbar(image, ax=axes, label=colorbar_label, shrink=0.8)
    axes.set_title(title)
    axes.spines[["left", "bottom"]].set_visible(False)
    return _save(figure, title, missing)


def _trend(data: "ReportData", missing: set[str]) -> Chart:
    table = data.trend
    figure, axes = _figure(8, 4)
    periods = [str(p).split("/")[0] for p in table.index]  # a week "2026-08-31/2026-09-06" is named by its first day
    x = np.arange(len(periods))
    volume = axes.twinx()
    bars = volume.bar(x, table["n"], color="#dfe6e9", zorder=0, label="评论数 (右轴)")
    volume.set_ylabel("评论数")
    # Bars use the lower part of the plot so that the share lines above them stay readable.
    volume.set_ylim(0, max(float(table["n"].max()), 1.0) * 2.2)
    axes.set_zorder(volume.get_zorder() + 1)
    axes.patch.set_visible(False)
    denominator = table["n"].where(table["n"] > 0, 1)
    for index, tag in enumerate(data.tags):
        axes.plot(x, table[tag] / denominator * 100, marker="o", color=PALETTE[index % len(PALETTE)], label=data.label(tag))
    axes.plot(x, table["negative"] / denominator * 100, linestyle="--", color="#555", label="负面情感")
    axes.set_xticks(x, periods, rotation=30 if len(periods) > 6 else 0, ha="right" if len(periods) > 6 else "center")
    axes.set_ylabel("占比 (%)")
    axes.set_title(f"问题占比趋势 (按 {data.date_column})", pad=34)
    lines, names = axes.get_legend_handles_labels()
    top = max([line.get_ydata().max() for line in axes.get_lines()] + [1.0])
    axes.set_ylim(0, top * 1.15)
    # Above the plot: below it the legend would collide with rotated period labels.
    axes.legend(lines + [bars], names + [bars.get_label()], fontsize=8, ncol=min(len(data.tags) + 2, 7), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    return _save(figure, "问题占比趋势", missing)


def render_charts(data: "ReportData") -> tuple[dict[str, Chart], list[str]]:
    """All charts of the report, and the characters that no font could draw (should be none)."""
    missing: set[str] = set()
    charts = {"problems": _problems(data, missing), "sentiment": _sentiment(data, missing)}
    labels = [data.label(t) for t in data.tags]
    charts["cooccurrence"] = _heatmap(data.cooccurrence, labels, labels, "问题共现 (条数)", missing, ",d", "条数")
    for column, table in data.groups.items():
        denominator = table["n"].where(table["n"] > 0, 1).to_numpy()[:, None]
        shares = table[list(data.tags) + ["negative"]].to_numpy() / denominator * 100
        counts = table["n"].to_numpy()
        muted = counts < data.min_group_rows
        note = f"; 灰色: 不足 {data.min_group_rows} 条" if muted.any() else ""
        charts[f"group_{column}"] = _heatmap(
            shares, [f"{i} (n={int(n):,})" for i, n in zip(table.index, counts)], labels + ["负面情感"],
            f"按 {column} 分组的问题占比 (%, 颜色按列比较{note})", missing, ".1f", None, muted,
        )
    if data.trend is not None and len(data.trend):
        charts["trend"] = _trend(data, missing)
    return charts, sorted(missing)
