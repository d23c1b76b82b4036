"""Running the notebooks as CI does: every cell, top to bottom, in a fresh kernel."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
POOL = ROOT.parent / "shared" / "data" / "pool"


def use_public_corpora(monkeypatch) -> None:
    """Notebooks on real comments read the public corpora ($KESHENG_CORPUS_DIR, or shared/data/pool beside the repository)."""
    from kesheng.training.corpus import CorpusError, resolve_corpus_dir

    try:
        resolve_corpus_dir(None)
    except CorpusError:
        if not POOL.is_dir():
            pytest.skip("this notebook works on the public corpora ($KESHENG_CORPUS_DIR, or shared/data/pool beside the repository)")
        monkeypatch.setenv("KESHENG_CORPUS_DIR", str(POOL))


def run_notebook(name: str, timeout: int) -> str:
    """Execute notebooks/NAME and return the text its cells printed; a cell that raises fails the test."""
    import nbformat
    from nbclient import NotebookClient

    path = ROOT / "notebooks" / name
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    return "".join(o.get("text", "") for o in outputs)
