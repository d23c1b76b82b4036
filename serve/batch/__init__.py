"""Tagging files at scale: any supported format in and out, in order, resumable; Ray for clusters."""

from kesheng.files.readers import InputFileError
from kesheng.serve.batch.tagging import TagFileOptions, TagFileResult, tag_file, tag_stream, write_jsonl

__all__ = ["InputFileError", "TagFileOptions", "TagFileResult", "tag_file", "tag_stream", "write_jsonl"]
