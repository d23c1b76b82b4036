"""The same tagging on Ray Data, for inputs that one machine cannot get through in time.

    pip install 'kesheng[distributed]'
    kesheng tag --engine ray -i /shared/survey/ -o /shared/survey_tagged/ --text-column answer

Ray reads the input (one file, a directory or a glob of CSV/TSV/JSONL/Parquet), splits it
into blocks, and runs a pool of actors that each load the model once and tag batches with
the tagged-row schema of `kesheng.models.rows`, so Parquet and CSV parts have exactly the
columns of `kesheng tag`, and JSONL parts its nested records. The output is a directory of part files (Parquet by default) in input order.

Without `--ray-address` (or $RAY_ADDRESS) Ray starts on this machine, which is how the tests
run it. On a cluster, every node needs kesheng installed and the model directory and the
input/output paths at the same place (a shared filesystem); see the README.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from kesheng.files.atomic import replace_directory
from kesheng.files.readers import TEXT_SAMPLE_ROWS, InputFileError, choose_text_column, format_of
from kesheng.models.rows import PREDICTION_KEYS, column_kind, flat_values, jsonl_fields, prediction_columns
from kesheng.serve.batch.tagging import TagFileOptions, text_for_model

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DistributedOptions", "tag_with_ray"]

OUTPUT_FORMATS = ("parquet", "csv", "jsonl")


@dataclass
class DistributedOptions:
    text_field: str | None = None  # column holding the comment; None: found as `kesheng tag` finds it
    keep_columns: tuple[str, ...] | None = None  # input columns copied to the output; None keeps all
    model_dir: str | None = None  # model directory, at this path on every node; None: the bundled model
    address: str | None = None  # Ray cluster address; None: $RAY_ADDRESS, else a Ray started on this machine
    workers: int | None = None  # tagging actors (one model each); None or too many: one per CPU but one
    batch_rows: int = 2000  # rows per model call inside an actor
    output_format: str = "parquet"  # parquet, csv or jsonl part files
    input_format: str | None = None  # csv, tsv, jsonl or parquet; None: from the input's extension
    overwrite: bool = False  # replace an existing output directory

    @classmethod
    def from_tag_options(cls, options: TagFileOptions, model_dir: os.PathLike | None, address: str | None) -> "DistributedOptions":
        return cls(
            text_field=options.text_field,
            keep_columns=options.keep_columns,
            model_dir=str(model_dir) if model_dir is not None else None,
            address=address,
            workers=options.workers if options.workers > 1 else None,
            batch_rows=options.chunk_rows,
            overwrite=options.overwrite,
        )


class _RayTagger:
    """A Ray actor: loads the model once, then tags pandas batches."""

    def __init__(self, model_dir: str | None, text_field: str, nested: bool):
        from kesheng.stores.registry import load_model

        self.model = load_model(model_dir)
        self.text_field = text_field
        self.nested = nested  # JSONL parts: the nested record of `kesheng tag`; tables: flat columns
        self.tag_names = tuple(self.model.taxonomy_.names)
        self.version = self.model.meta_.get("model_version")
        self.columns = prediction_columns(self.tag_names)

    def __call__(self, batch: "pd.DataFrame") -> "pd.DataFrame":
        import pandas as pd

        texts, notes = [], []
        for value in batch[self.text_field].tolist():
            text, text_notes = text_for_model(value)
            texts.append(text)
            notes.append(text_notes)
        predictions = self.model.predict(texts)
        batch = batch.copy()
        if self.nested:
            batch = batch.rename(columns={k: f"input_{k}" for k in batch.columns if k in PREDICTION_KEYS and k != "id"})
            records = [jsonl_fields(p, n, self.version) for p, n in zip(predictions, notes)]
            for key in PREDICTION_KEYS[1:]:
                batch[key] = [record[key] for record in records]
            return batch
        values = [flat_values(p, self.tag_names, n, self.version) for p, n in zip(predictions, notes)]
        for position, name in enumerate(self.columns):
            column = [row[position] for row in values]
            # A missing value (no sentiment or escalate for a row without text) stays null, not a
            # float NaN; flags stay integers in every block, with or without a null among them.
            dtype = "Int8" if column_kind(name, self.tag_names) == "int8" else (object if None in column else None)
            batch[name] = pd.Series(column, index=batch.index, dtype=dtype)
        return batch


def _read(ray_data, source: str, fmt: str):
    if fmt in ("csv", "tsv"):
        import pyarrow.csv as pacsv

        # Comments contain line breaks inside quotes; Arrow's CSV reader refuses them by default.
        parse = pacsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",", newlines_in_values=True)
        return ray_data.read_csv(source, parse_options=parse)
    if fmt == "jsonl":
        return ray_data.read_json(source, lines=True)
    if fmt == "parquet":
        return ray_data.read_parquet(source)
    raise InputFileError(f"--engine ray reads CSV, TSV, JSONL or Parquet, not {fmt}; convert the file with `kesheng tag` locally")


def _input_format(source: Path) -> str:
    if not source.is_dir():
        return format_of(source)
    files = sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith((".", "_")))
    if not files:
        raise InputFileError(f"{source}: empty directory, nothing to tag")
    return format_of(files[0])


def tag_with_ray(input_path: str | os.PathLike, output_dir: str | os.PathLike, options: DistributedOptions = DistributedOptions()) -> int:
    """Tag every row of the input into a directory of part files; returns the number of rows."""
    import ray
    import ray.data

    source, target = str(input_path), Path(output_dir)
    fmt = options.input_format or _input_format(Path(source))
    if options.output_format not in OUTPUT_FORMATS:
        raise InputFileError(f"output format {options.output_format!r}: use one of {list(OUTPUT_FORMATS)}")
    occupied = (target.is_dir() and any(target.iterdir())) or target.is_file()
    if occupied and not options.overwrite:
        raise InputFileError(f"{target} exists; pass --overwrite to replace it")
    if not ray.is_initialized():
        ray.init(address=options.address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # part files in input order, as `kesheng tag` writes rows
    dataset = _read(ray.data, source, fmt)
    columns = dataset.schema().names
    if options.text_field is None:
        options = replace(options, text_field=choose_text_column(columns, dataset.take(TEXT_SAMPLE_ROWS))[0])
    if options.text_field not in columns:
        raise InputFileError(f"{source}: column {options.text_field!r} not found; columns are {columns}")
    if options.keep_columns is not None:
        unknown = [c for c in options.keep_columns if c not in columns]
        if unknown:
            raise InputFileError(f"{source}: columns to keep {unknown} not found; columns are {columns}")
        dataset = dataset.select_columns([c for c in columns if c in {*options.keep_columns, options.text_field}])
    # Actors that hold every CPU starve the read and write tasks that feed them (Ray Data then
    # waits forever), so one CPU's worth is always left to those.
    cpus = float(ray.cluster_resources().get("CPU", 1))
    concurrency = max(1, min(options.workers or int(cpus), int(cpus) - 1))
    actor_cpus = min(1.0, (cpus - 1) / concurrency) if cpus > 1 else cpus / 2
    tagged = dataset.map_batches(
        _RayTagger,
        fn_constructor_kwargs={"model_dir": options.model_dir, "text_field": options.text_field, "nested": options.output_format == "jsonl"},
        batch_format="pandas",
        batch_size=options.batch_rows,
        concurrency=concurrency,
        num_cpus=actor_cpus,
    )
    # Written beside the target and renamed, so that a failed run never looks like a result.
    staging = target.with_name(f".{target.name}.ray-partial")
    shutil.rmtree(staging, ignore_errors=True)
    {"parquet": tagged.write_parquet, "csv": tagged.write_csv, "jsonl": tagged.write_json}[options.output_format](str(staging))
    replace_directory(staging, target)
    return _read(ray.data, str(target), options.output_format).count()
