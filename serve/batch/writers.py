"""Writing tagged rows: the output plan, and sinks that make each committed chunk durable.

CSV/TSV/JSONL grow one file whose bytes past the last commit are cut off on resume; XLSX and
Parquet cannot be appended to after a crash, so each chunk becomes a Parquet part and the
parts are merged into the final file at the end.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from kesheng.files.atomic import atomic_path
from kesheng.files.readers import cell_text
from kesheng.models.rows import column_kind, file_metadata, prediction_columns
from kesheng.serve.batch.journal import DATA_FILE, BrokenPartial, PartialRun

__all__ = ["OutputPlan", "PartsSink", "TextSink", "arrow_column", "prediction_type"]


@dataclass(frozen=True)
class OutputPlan:
    """Everything a worker needs to turn input rows into output rows; sent once per worker."""

    fmt: str  # output format
    text_field: str
    id_field: str
    carried: tuple[str, ...]  # input columns copied to tabular outputs, in order
    carry_all: bool  # JSONL output copies every field of each row; tabular outputs note fields beyond `carried`
    tag_names: tuple[str, ...]
    model_version: str | None  # written on every row, so a report can tell which model tagged the file
    tag_names_zh: tuple[tuple[str, str], ...]  # (tag, Chinese name), carried in Parquet/XLSX metadata
    arrow_schema: Any = None  # Parquet input: the types its columns keep in Parquet/XLSX output

    @property
    def delimiter(self) -> str:
        return "\t" if self.fmt == "tsv" else ","

    def header(self) -> list[str]:
        return [*self.carried, *prediction_columns(self.tag_names)]


def prediction_type(name: str, tag_names: Sequence[str]):
    import pyarrow as pa

    return {"int8": pa.int8(), "float64": pa.float64(), "string": pa.string()}[column_kind(name, tag_names)]


def arrow_column(values: list, schema, name: str):
    import pyarrow as pa

    if schema is not None and name in schema.names:
        return pa.array(values, type=schema.field(name).type)
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else cell_text(v) for v in values], type=pa.string())


class TextSink:
    """CSV/TSV/JSONL: one growing file; bytes past the last commit are cut off on resume."""

    def __init__(self, run: PartialRun, header: bytes):
        self.path = run.directory / DATA_FILE
        committed = run.state["data_bytes"]
        if committed and (not self.path.exists() or self.path.stat().st_size < committed):
            raise BrokenPartial(f"{run.directory}: the output written so far is shorter than its progress record; pass --restart")
        with open(self.path, "ab") as handle:
            handle.truncate(committed)
        self.handle = open(self.path, "ab")
        self.size = committed
        if committed == 0 and header:
            self.write(header)

    def write(self, payload: bytes) -> None:
        self.handle.write(payload)
        self.size += len(payload)

    def commit(self, index: int | None = None) -> int:
        """Make the written bytes durable; returns the committed size (`index` is the parts sink's)."""
        self.handle.flush()
        os.fsync(self.handle.fileno())
        return self.size

    def finish(self, target: Path, plan: OutputPlan) -> None:
        self.commit()
        self.handle.close()
        os.replace(self.path, target)

    def close(self) -> None:
        self.handle.close()


class PartsSink:
    """Parquet/XLSX cannot be appended to after a crash: each chunk becomes a Parquet part."""

    def __init__(self, run: PartialRun):
        self.directory = run.directory
        done = run.state["chunks_done"]
        for stale in self.directory.glob("part-*"):
            if stale.suffix != ".parquet" or int(stale.stem.split("-")[1]) >= done:
                stale.unlink()
        if len(self.parts()) != done:
            raise BrokenPartial(f"{run.directory}: {len(self.parts())} output parts for {done} committed chunks; pass --restart")
        self.pending = None

    def write(self, payload) -> None:
        self.pending = payload

    def commit(self, index: int) -> int:
        import pyarrow.parquet as pq

        with atomic_path(self.directory / f"part-{index:07d}.parquet") as temporary:
            pq.write_table(self.pending, temporary)
        self.pending = None
        return 0

    def parts(self) -> list[Path]:
        return sorted(self.directory.glob("part-*.parquet"))

    def finish(self, target: Path, plan: OutputPlan) -> None:
        if not self.parts():
            # An input with a header and no rows still gets typed columns.
            self.write(_empty_payload(plan))
            self.commit(0)
        with atomic_path(target) as temporary:
            if plan.fmt == "parquet":
                _merge_parquet(self.parts(), temporary, plan)
            else:
                _merge_xlsx(self.parts(), temporary, plan)

    def close(self) -> None:
        pass


def _unified_schema(parts: list[Path], plan: OutputPlan):
    """One type per column over all parts; a column typed differently in two parts becomes text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schemas = [pq.read_schema(p) for p in parts]
    fields = []
    for name in plan.header():
        seen = {s.field(name).type for s in schemas if name in s.names} - {pa.null()}
        if plan.arrow_schema is not None and name in plan.arrow_schema.names:
            chosen = plan.arrow_schema.field(name).type
        elif len(seen) == 1:
            chosen = seen.pop()
        elif name in plan.tag_names or name.endswith("_score"):
            chosen = prediction_type(name, plan.tag_names)
        else:
            chosen = pa.string()
        fields.append(pa.field(name, chosen))
    return pa.schema(fields)


def _conform(table, schema):
    import pyarrow as pa

    columns = []
    for target_field in schema:
        column = table.column(target_field.name)
        if column.type == target_field.type:
            columns.append(column)
        elif column.type == pa.null():
            columns.append(pa.nulls(len(column), target_field.type))
        elif target_field.type == pa.string():
            columns.append(pa.array([None if v is None else cell_text(v) for v in column.to_pylist()], type=pa.string()))
        else:
            columns.append(column.cast(target_field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _merge_parquet(parts: list[Path], destination: Path, plan: OutputPlan) -> None:
    import pyarrow.parquet as pq

    schema = _unified_schema(parts, plan)
    schema = schema.with_metadata({**(schema.metadata or {}), **{k.encode(): v.encode() for k, v in _metadata(plan).items()}})
    with pq.ParquetWriter(destination, schema) as writer:
        for part in parts:
            writer.write_table(_conform(pq.read_table(part), schema))


def _xlsx_value(value, illegal_characters):
    if isinstance(value, str):
        return illegal_characters.sub("", value)
    if isinstance(value, (dict, list, bytes)):
        return cell_text(value)
    if getattr(value, "tzinfo", None) is not None:
        return value.replace(tzinfo=None)  # Excel has no time zones
    return value


def _merge_xlsx(parts: list[Path], destination: Path, plan: OutputPlan) -> None:
    import pyarrow.parquet as pq
    from openpyxl import Workbook
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
    from openpyxl.packaging.custom import StringProperty

    book = Workbook(write_only=True)
    sheet = book.create_sheet("tagged")
    header = plan.header()
    sheet.append(header)
    for part in parts:
        table = pq.read_table(part)
        for batch in table.to_batches(max_chunksize=2000):
            for row in batch.to_pylist():
                sheet.append([_xlsx_value(row.get(name), ILLEGAL_CHARACTERS_RE) for name in header])
    for key, value in _metadata(plan).items():
        book.custom_doc_props.append(StringProperty(name=key, value=value))
    book.save(destination)


def _metadata(plan: OutputPlan) -> dict[str, str]:
    return file_metadata(dict(plan.tag_names_zh), plan.model_version)


def _empty_payload(plan: OutputPlan):
    """A zero-row Parquet part, so that an input with a header and no rows still gets typed columns."""
    import pyarrow as pa

    return pa.table({name: pa.array([], type=_column_type_for_empty(plan, name)) for name in plan.header()})


def _column_type_for_empty(plan: OutputPlan, name: str):
    import pyarrow as pa

    if plan.arrow_schema is not None and name in plan.arrow_schema.names:
        return plan.arrow_schema.field(name).type
    if name in plan.carried:
        return pa.string()
    return prediction_type(name, plan.tag_names)


