"""The walkthrough notebook runs top to bottom (as in CI) on its small labeled file."""

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "report_walkthrough.ipynb"


@pytest.mark.slow
def test_report_walkthrough_notebook_runs_top_to_bottom():
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    # A cell that raises stops execute() with CellExecutionError: reaching here means every cell ran.
    outputs = {i: cell.get("outputs", []) for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"}
    text = "".join(str(o.get("data", {}).get("text/plain", "")) + o.get("text", "") for cell in outputs.values() for o in cell)
    assert "false positive" in text or "false negative" in text  # the error table is not empty
    assert "report.html" in text
    assert "响应缓慢" in text and "信息不透明" in text  # the problem table names the tags in Chinese
    images = [o for cell in outputs.values() for o in cell if "image/png" in o.get("data", {})]
    assert len(images) == 2
