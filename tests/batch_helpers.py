"""Survey-like files in every format, from sentences written for these tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

COMMENTS = [
    "排队等了四十分钟才轮到我办业务",
    "客服电话打了五次都没人接",
    "上次报修的问题到现在还没修好，又跑了一趟",
    "工作人员说话很冲，一点耐心都没有",
    "账单里多出一笔费用，问了也没人解释清楚",
    "师傅上门很准时，服务周到，点赞",
    "这款耳机音质一般，价格偏贵",
    "请问会员积分在哪里查询",
    "退款申请提交两周了还在审核中，客服只会说请耐心等待",
    "套餐变更了也没有短信通知，莫名其妙扣了钱",
    "含,逗号和\"引号\"的评论\n还换了行",
    "",
]
CHANNELS = ["app", "电话", "门店"]


def survey_rows(n: int) -> list[dict]:
    """n rows: id, channel, date, text; includes an empty text and one that is missing (None)."""
    rows = []
    for i in range(n):
        text = COMMENTS[i % len(COMMENTS)]
        if text and i >= len(COMMENTS):
            text = f"{text}（第{i}位受访者）"
        rows.append({"resp_id": f"R{i:05d}", "channel": CHANNELS[i % 3], "date": f"2025-{1 + i % 3:02d}-{1 + i % 28:02d}", "text": text})
    if n > 3:
        rows[3]["text"] = None
    return rows


def write_rows(path: Path, rows: list[dict]) -> Path:
    """Write rows in the format of the path's extension (None becomes an empty CSV/TSV cell)."""
    fmt = path.suffix.lstrip(".")
    columns = list(rows[0])
    if fmt in ("csv", "tsv"):
        with open(path, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t" if fmt == "tsv" else ",")
            writer.writerow(columns)
            writer.writerows([[r[c] if r[c] is not None else "" for c in columns] for r in rows])
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "xlsx":
        from openpyxl import Workbook

        book = Workbook()
        sheet = book.active
        sheet.append(columns)
        for row in rows:
            sheet.append([row[c] for c in columns])
        book.save(path)
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        raise ValueError(fmt)
    return path


def read_output(path: Path, tag_names) -> list[dict]:
    """Any tagged output as flat dicts: id/text columns as text, tags as a list, notes as text."""
    fmt = path.suffix.lstrip(".")
    if fmt == "jsonl":
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            record["tags"] = list(record["tags"])
            record["notes"] = "; ".join(record["notes"])
            rows.append(record)
        return rows
    if fmt in ("csv", "tsv"):
        with open(path, encoding="utf-8", newline="") as handle:
            flat = list(csv.DictReader(handle, delimiter="\t" if fmt == "tsv" else ","))
    elif fmt == "xlsx":
        from openpyxl import load_workbook

        sheet = load_workbook(path, read_only=True).worksheets[0]
        values = list(sheet.iter_rows(values_only=True))
        flat = [dict(zip(values[0], v)) for v in values[1:]]
    else:
        import pyarrow.parquet as pq

        flat = pq.read_table(path).to_pylist()
    for row in flat:
        row["tags"] = [t for t in tag_names if int(row[t]) == 1]
        row["notes"] = row["notes"] or ""
    return flat
