"""What every command shares: the error exit, the --model option and model loading."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn, Optional

import typer

MODEL_OPTION = typer.Option(None, "--model", "-m", help="Model directory (default: $KESHENG_MODEL, the promoted model, or the bundled one).")


def fail(message: str) -> NoReturn:
    """One line on stderr and exit status 2: how every command reports bad input."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def load(model_dir: Optional[Path]):
    """The model a command uses (see `kesheng.stores.registry.resolve_model`), or a clean error."""
    from kesheng.models import ModelLoadError
    from kesheng.stores.registry import load_model

    try:
        return load_model(model_dir)
    except ModelLoadError as exc:
        fail(str(exc))


def count(n: int, noun: str) -> str:
    """"1 row", "2 rows", "1,234 rows"."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def split_commas(values: Optional[list[str]]) -> Optional[tuple[str, ...]]:
    """`--keep a,b --keep c` -> ("a", "b", "c"); None when the option was not given."""
    if not values:
        return None
    return tuple(c.strip() for item in values for c in item.split(",") if c.strip())
