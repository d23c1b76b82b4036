"""The retraining-loop notebook runs top to bottom on the team's real labels (as in CI)."""

import pytest

from tests.notebooks import run_notebook, use_public_corpora


@pytest.mark.slow
def test_retraining_loop_notebook_runs_top_to_bottom(monkeypatch):
    use_public_corpora(monkeypatch)
    text = run_notebook("retraining_loop.ipynb", timeout=600)
    assert "费用争议" in text and "promoted" in text and "change in F1 of the existing tags" in text
