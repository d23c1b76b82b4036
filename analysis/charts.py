"""Report charts with matplotlib, drawn in a font that has Chinese characters.

Matplotlib's own font (DejaVu Sans) has no CJK glyphs, so Chinese labels would come out as
empty boxes. The font comes from the `mplfonts` package (Noto Sans CJK SC, SIL Open Font
License), installed with `kesheng[report]`, or else from the system. Every chart is drawn while
matplotlib's "missing glyph" warnings are recorded, so a label the font cannot draw is
reported instead of silently shipped as boxes.
"""

from __future__ import annotations

import io
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kesheng.models.schema import OTHER_ZH, SENTIMENT_ZH, SENTIMENTS

if TYPE_CHECKING:
    from kesheng.analysis.report import ReportData

__all__ = ["Chart", "chart_options", "charts_script", "cjk_font_name", "group_filters", "render_charts"]

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


# Interactive charts of the HTML report: ECharts (Apache-2.0, vendored from the npm package
# `echarts` 5.6.0 into resources/, license beside it) draws them in the page from the numbers
# embedded as JSON, with hover values and a group filter, without any network access. The SVG
# renderer draws text as text, so the page's embedded CJK font applies to the charts too.

ECHARTS_FILE = Path(__file__).parent / "resources" / "echarts.min.js"
FONT_STACK = '"Kesheng CJK","Noto Sans CJK SC","Noto Sans SC","PingFang SC","Microsoft YaHei",sans-serif'


def group_filters(data: "ReportData") -> list[dict]:
    """One entry per group value: its label and raw problem shares (in the problem chart's order)."""
    order = _problem_order(data)
    out = []
    for column, table in data.groups.items():
        for value in table.index:
            n = int(table.loc[value, "n"])
            counts = [int(table.loc[value, OTHER_ZH])] + [int(table.loc[value, t]) for t in order]
            out.append({"label": f"{column}: {value} (n={n:,})", "n": n, "raw": [round(c / n * 100, 2) if n else 0.0 for c in counts], "counts": counts})
    return out


def _problem_order(data: "ReportData") -> list[str]:
    return sorted(data.tags, key=lambda t: data.tag_counts[t])


def _base(title: str) -> dict:
    return {
        "_title": title,
        "title": {"text": title, "left": "center", "textStyle": {"fontSize": 14, "fontFamily": FONT_STACK}},
        "textStyle": {"fontFamily": FONT_STACK},
        "tooltip": {"trigger": "axis", "axisPointer": {"type": "shadow"}},
        "animation": False,
    }


def _problems_option(data: "ReportData") -> dict:
    """Bars: the corrected estimate (the raw share where no rates are stored), whiskers: its 95%
    interval, diamonds: the raw share; the group filter swaps the bars for a group's raw shares."""
    order = _problem_order(data)
    labels = [OTHER_ZH] + [data.label(t) for t in order]
    counts = [data.other] + [data.tag_counts[t] for t in order]
    estimates = [data.estimates.get(k) for k in [""] + order]
    corrected = any(e is not None and e.method != "raw" for e in estimates)
    bar_name = "占比估计 (校正模型误差)" if corrected else "占比 (未校正)"
    option = _base("问题类型分布 (%)")
    option.update(
        legend={"top": 24, "data": [bar_name, "95% 区间", "原始占比"] if corrected else [bar_name, "95% 区间"]},
        grid={"left": 110, "right": 60, "top": 56, "bottom": 30},
        xAxis={"type": "value", "name": "%", "axisLabel": {"formatter": "{value}%"}},
        yAxis={"type": "category", "data": labels},
        series=[
            {"name": bar_name, "type": "bar", "barWidth": "45%", "itemStyle": {"color": PALETTE[0]},
             "label": {"show": True, "position": "insideLeft", "formatter": "{c}%", "fontSize": 10, "color": "#fff"},
             "data": [round((e.estimate if e else data.share(c)) * 100, 1) for e, c in zip(estimates, counts)]},
            {"name": "95% 区间", "type": "custom", "kesheng": "errorbar", "itemStyle": {"color": "#333"}, "z": 10,
             "data": [[i, round(e.ci_low * 100, 1), round(e.ci_high * 100, 1)] for i, e in enumerate(estimates) if e and e.ci_low is not None]},
        ],
    )
    if corrected:
        option["series"].append({"name": "原始占比", "type": "scatter", "symbol": "diamond", "symbolSize": 11, "itemStyle": {"color": "#7f8c8d"}, "z": 11,
                                 "data": [round(data.share(c) * 100, 1) for c in counts]})
    option["_counts"] = counts
    option["_filters"] = group_filters(data)
    return option


def _drivers_option(data: "ReportData") -> dict | None:
    rows = [d for d in data.drivers if d.with_n and not np.isnan(d.points_lost)]
    if not rows:
        return None
    rows = rows[::-1]  # the largest loss at the top of a horizontal bar chart
    option = _base(f"各问题拉低 {data.score_column} 的分数 (整体损失分 = 占比 × 差值)")
    option.update(
        grid={"left": 110, "right": 60, "top": 40, "bottom": 30},
        xAxis={"type": "value", "name": "分"},
        yAxis={"type": "category", "data": [data.label(d.tag) for d in rows]},
        series=[{
            "name": "整体损失分", "type": "bar", "itemStyle": {"color": PALETTE[1]},
            "label": {"show": True, "position": "right", "fontSize": 10, "formatter": "{c}"},
            "data": [round(d.points_lost, 3) for d in rows],
        }],
    )
    option["_details"] = [
        f"有该问题均分 {d.mean_with:.2f} (n={d.with_n:,}); 无该问题 {d.mean_without:.2f}; 差值 {d.impact:+.2f}"
        + (f" [{d.ci_low:+.2f}, {d.ci_high:+.2f}]" if d.ci_low is not None else "")
        for d in rows
    ]
    return option


def _sentiment_option(data: "ReportData") -> dict:
    option = _base("情感分布 (%)")
    option.update(
        grid={"left": 60, "right": 30, "top": 40, "bottom": 30},
        xAxis={"type": "category", "data": [SENTIMENT_ZH[s] for s in SENTIMENTS]},
        yAxis={"type": "value", "axisLabel": {"formatter": "{value}%"}},
        series=[{"type": "bar", "name": "占比", "label": {"show": True, "position": "top", "formatter": "{c}%"},
                 "data": [{"value": round(data.share(data.sentiment[s]) * 100, 2), "itemStyle": {"color": SENTIMENT_COLORS[s]}} for s in SENTIMENTS]}],
    )
    return option


def _heatmap_option(title: str, rows: list[str], columns: list[str], matrix: np.ndarray, digits: int) -> dict:
    option = _base(title)
    values = [[j, i, round(float(matrix[i, j]), digits)] for i in range(len(rows)) for j in range(len(columns))]
    option.update(
        tooltip={"position": "top"},
        grid={"left": 150, "right": 30, "top": 40, "bottom": 70},
        xAxis={"type": "category", "data": columns, "axisLabel": {"rotate": 30}},
        yAxis={"type": "category", "data": rows, "inverse": True},
        visualMap={"min": 0, "max": float(matrix.max()) if matrix.size else 1.0, "show": False, "inRange": {"color": ["#fff5f0", "#c0392b"]}},
        series=[{"type": "heatmap", "name": title, "data": values, "label": {"show": True, "fontSize": 10}}],
    )
    return option


def _trend_option(data: "ReportData") -> dict:
    table = data.trend
    periods = [str(p).split("/")[0] for p in table.index]
    denominator = table["n"].where(table["n"] > 0, 1)
    option = _base(f"问题占比趋势 (按 {data.date_column})")
    series = [
        {"name": data.label(t), "type": "line", "data": [round(float(v) * 100, 2) for v in table[t] / denominator], "itemStyle": {"color": PALETTE[i % len(PALETTE)]}}
        for i, t in enumerate(data.tags)
    ]
    series.append({"name": "负面情感", "type": "line", "lineStyle": {"type": "dashed"}, "itemStyle": {"color": "#555"},
                   "data": [round(float(v) * 100, 2) for v in table["negative"] / denominator]})
    series.append({"name": "评论数", "type": "bar", "yAxisIndex": 1, "itemStyle": {"color": "#dfe6e9"}, "z": 0, "data": [int(v) for v in table["n"]]})
    option.update(
        tooltip={"trigger": "axis"},
        legend={"top": 24},
        grid={"left": 60, "right": 60, "top": 80, "bottom": 40},
        xAxis={"type": "category", "data": periods},
        yAxis=[{"type": "value", "name": "占比 %"}, {"type": "value", "name": "评论数", "splitLine": {"show": False}}],
        series=series,
    )
    return option


def chart_options(data: "ReportData") -> dict[str, dict]:
    """The ECharts option of every chart of the HTML report, by name; keys starting with "_" are
    for the page's script (title, counts, the group filter's data), not for ECharts."""
    options = {"problems": _problems_option(data), "sentiment": _sentiment_option(data)}
    drivers = _drivers_option(data) if data.score_column else None
    if drivers is not None:
        options["drivers"] = drivers
    labels = [data.label(t) for t in data.tags]
    options["cooccurrence"] = _heatmap_option("问题共现 (条数)", labels, labels, data.cooccurrence, 0)
    columns = labels + ["负面情感"]
    for column, table in data.groups.items():
        denominator = table["n"].where(table["n"] > 0, 1).to_numpy()[:, None]
        shares = table[list(data.tags) + ["negative"]].to_numpy() / denominator * 100
        rows = [f"{i} (n={int(n):,})" for i, n in zip(table.index, table["n"])]
        options[f"group_{column}"] = _heatmap_option(f"按 {column} 分组的问题占比 (%)", rows, columns, shares, 1)
    if data.trend is not None and len(data.trend):
        options["trend"] = _trend_option(data)
    return options


# The page's script: draws every div[data-chart] from the embedded options; the problem chart's
# error bars are a custom series (a function cannot travel in JSON); the group select swaps the
# problem chart's data. Errors are shown on the page instead of failing silently.
CHARTS_JS = r"""
(function () {
  var options = JSON.parse(document.getElementById('kesheng-chart-data').textContent);
  function errorbar(params, api) {
    var low = api.coord([api.value(1), api.value(0)]), high = api.coord([api.value(2), api.value(0)]);
    var h = api.size([0, 1])[1] * 0.18, style = api.style({stroke: '#333', fill: null, lineWidth: 1.4});
    return {type: 'group', children: [
      {type: 'line', shape: {x1: low[0], y1: low[1], x2: high[0], y2: high[1]}, style: style},
      {type: 'line', shape: {x1: low[0], y1: low[1] - h, x2: low[0], y2: low[1] + h}, style: style},
      {type: 'line', shape: {x1: high[0], y1: high[1] - h, x2: high[0], y2: high[1] + h}, style: style}]};
  }
  var charts = {};
  function draw() {
  document.querySelectorAll('[data-chart]').forEach(function (el) {
    var name = el.getAttribute('data-chart'), option = options[name];
    option.series.forEach(function (s) {
      if (s.kesheng === 'errorbar') { s.renderItem = errorbar; s.encode = {x: [1, 2], y: 0}; s.tooltip = {show: false}; }
    });
    if (name === 'problems') {
      option.tooltip.formatter = function (items) {
        var i = items[0].dataIndex, lines = [items[0].name + ' (' + option._counts[i].toLocaleString() + ' 条)'];
        items.forEach(function (it) { if (it.value !== null && it.value !== undefined) lines.push(it.marker + it.seriesName + ': ' + it.value + '%'); });
        var bar = option.series[1].data.filter(function (d) { return d[0] === i; })[0];
        if (bar && !option._filtered) lines.push('95% 区间: ' + bar[1] + '% – ' + bar[2] + '%');
        return lines.join('<br>');
      };
    }
    if (name === 'drivers') {
      option.tooltip.formatter = function (items) { return items[0].name + '<br>整体损失分 ' + items[0].value + '<br>' + option._details[items[0].dataIndex]; };
    }
    var chart = echarts.init(el, null, {renderer: 'svg'});
    chart.setOption(option);
    charts[name] = chart;
  });
  var select = document.getElementById('group-filter');
  if (select && charts.problems) {
    var all = options.problems, totalCounts = all._counts.slice();
    select.addEventListener('change', function () {
      var f = select.value === '' ? null : all._filters[+select.value];
      var series = all.series.map(function (s, k) { return {data: k === 0 ? (f ? f.raw : s.data) : (f ? [] : s.data)}; });
      charts.problems.setOption({title: {text: f ? '问题类型分布 (%, 原始占比) · ' + f.label : all.title.text}, series: series});
      all._counts = f ? f.counts : totalCounts;
      all._filtered = !!f;
    });
  }
  window.addEventListener('resize', function () { Object.keys(charts).forEach(function (k) { charts[k].resize(); }); });
  document.body.setAttribute('data-charts-drawn', String(Object.keys(charts).length));
  }
  // Text is measured when a chart is laid out: wait for the embedded CJK font, or legends overlap.
  if (document.fonts && document.fonts.ready) { document.fonts.ready.then(draw); } else { draw(); }
})();
"""


def charts_script(options: dict[str, dict]) -> str:
    """The vendored library, the charts' data and the drawing script, inline in the page."""
    library = ECHARTS_FILE.read_text(encoding="utf-8")
    payload = json.dumps(options, ensure_ascii=False, allow_nan=False).replace("</", "<\\/")
    return (
        f"<script>{library}</script>"
        f'<script type="application/json" id="kesheng-chart-data">{payload}</script>'
        f"<script>{CHARTS_JS}</script>"
    )
