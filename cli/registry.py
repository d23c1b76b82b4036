"""`kesheng promote` and `kesheng models`: the registry of promoted models."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kesheng.cli.options import fail, load
from kesheng.cli.train import labeled_for


def promote(
    model_dir: Path = typer.Argument(..., help="The model directory to make the default of `tag` and `serve`."),
    registry: Optional[Path] = typer.Option(None, help="Registry directory ($KESHENG_REGISTRY, else ~/.local/share/kesheng/registry)."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Labeled file to compare with the current model first."),
    labels: list[Path] = typer.Option(None, "--labels", help="Label file(s) by corpus id to compare on first."),
    split: Optional[str] = typer.Option("test", help="With --labels: the split to compare on."),
    corpus_dir: Optional[Path] = typer.Option(None, help="Directory with the public corpora ($KESHENG_CORPUS_DIR)."),
    force: bool = typer.Option(False, "--force", help="Promote even if the comparison says it is worse."),
    reason: str = typer.Option("", help="Why (kept in the registry history)."),
):
    """Make a model the default that `tag` and `serve` use (refused if it compares worse, unless --force)."""
    from kesheng.stores.registry import Registry, RegistryError
    from kesheng.training.compare import format_comparison, promotion_check, union_taxonomy

    target = Registry(registry)
    candidate = load(model_dir)
    if data or labels:
        incumbent = load(target.incumbent())
        taxonomy = union_taxonomy(incumbent.taxonomy_, candidate.taxonomy_)
        check = promotion_check(incumbent, candidate, labeled_for(labels, data, split, corpus_dir, taxonomy))
        typer.echo(format_comparison(check.comparison, show_examples=False))
        if not check.allowed and not force:
            fail(f"not promoted: the candidate is worse ({check.summary}); use --force to promote anyway")
        reason = f"{reason} ({check.summary})".strip()
    try:
        promotion = target.promote(model_dir, reason=reason, model=candidate)
    except (RegistryError, OSError) as exc:
        fail(str(exc))
    typer.echo(f"promoted {promotion.model_version} (previous: {promotion.previous}) -> {target.current_link}")


def models(
    registry: Optional[Path] = typer.Option(None, help="Registry directory ($KESHENG_REGISTRY, else ~/.local/share/kesheng/registry)."),
):
    """The registry: the current model and every promotion."""
    from kesheng.stores.registry import Registry, resolve_model

    target = Registry(registry)
    typer.echo(f"registry {target.root}; current {target.current_version() or '(none: the bundled model is the default)'}")
    typer.echo(f"`kesheng tag` and `kesheng serve` use: {resolve_model()}")
    for p in target.history():
        typer.echo(f"  {p.promoted_at}  {p.model_version}  from {p.source}  (previous {p.previous})  {p.reason}")


