"""The themes-to-tag notebook runs top to bottom on real comments and the team's labels (as in CI)."""

import pytest

from tests.notebooks import run_notebook, use_public_corpora


@pytest.mark.slow
def test_themes_to_tag_notebook_runs_top_to_bottom(monkeypatch):
    use_public_corpora(monkeypatch)
    text = run_notebook("themes_to_tag.ipynb", timeout=900)
    assert "pre-annotated counterfeit" in text and "confirmed counterfeit" in text and "change in F1 of the existing tags" in text
