"""Ray Data tagging in Ray's single-machine mode: same rows, same order, same values as `kesheng tag`."""

import pytest

from kesheng.models.rows import prediction_columns
from kesheng.serve.batch import InputFileError, TagFileOptions, tag_file
from tests.batch_helpers import survey_rows, write_rows

ray = pytest.importorskip("ray", reason="the distributed extra is not installed")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_output_equals_local_tagging(local_ray, model_dir, tmp_path):
    import pandas as pd

    from kesheng.serve.batch.distributed import DistributedOptions, tag_with_ray

    source = write_rows(tmp_path / "in.csv", survey_rows(500))
    local = tmp_path / "local.csv"
    tag_file(model_dir, source, local, TagFileOptions(keep_columns=("resp_id",)))
    out_dir = tmp_path / "ray_out"
    options = DistributedOptions(keep_columns=("resp_id",), model_dir=str(model_dir), workers=2, batch_rows=64)
    assert tag_with_ray(source, out_dir, options) == 500
    distributed = pd.read_parquet(out_dir, dtype_backend="numpy_nullable")  # int flags with nulls stay ints
    expected = pd.read_csv(local, dtype=str, keep_default_na=False)
    assert list(distributed.columns) == list(expected.columns)
    assert list(distributed["resp_id"]) == list(expected["resp_id"])
    tag_names = [c for c in expected.columns if f"{c}_score" in expected.columns]
    for column in prediction_columns(tag_names):
        got = distributed[column].map(lambda v: "" if pd.isna(v) else str(v))  # null (no sentiment) = an empty CSV cell
        assert list(got) == list(expected[column]), column

    with pytest.raises(InputFileError, match="exists"):
        tag_with_ray(source, out_dir, options)
    with pytest.raises(InputFileError, match=r"'comment' not found; columns are \['resp_id', 'channel', 'date', 'text'\]"):
        tag_with_ray(source, tmp_path / "other", DistributedOptions(text_field="comment", model_dir=str(model_dir)))


@pytest.mark.slow
def test_ray_jsonl_parts_are_the_nested_records_of_kesheng_tag(local_ray, model_dir, tmp_path):
    import json

    from kesheng.serve.batch.distributed import DistributedOptions, tag_with_ray

    source = write_rows(tmp_path / "in.csv", survey_rows(40))
    local = tmp_path / "local.jsonl"
    tag_file(model_dir, source, local, TagFileOptions(keep_columns=("resp_id",)))
    out_dir = tmp_path / "ray_jsonl"
    options = DistributedOptions(keep_columns=("resp_id",), model_dir=str(model_dir), workers=1, batch_rows=16, output_format="jsonl")
    assert tag_with_ray(source, out_dir, options) == 40
    parts = sorted(p for p in out_dir.iterdir() if p.suffix == ".json" or p.suffix == ".jsonl")
    distributed = [json.loads(line) for part in parts for line in part.read_text(encoding="utf-8").splitlines()]
    expected = [json.loads(line) for line in local.read_text(encoding="utf-8").splitlines()]
    # One schema: the same keys (the local engine adds the row's id) and the same nested values.
    for got, want in zip(distributed, expected, strict=True):
        assert {k: v for k, v in want.items() if k != "id"} == got
