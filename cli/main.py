"""`kesheng` (客声, the voice of the customer): the command and its command groups."""

from __future__ import annotations

from typing import Optional

import typer

from kesheng.cli import labels, registry, report, serve, tag, themes, train

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None, help="客声 kesheng: service-quality tags and sentiment for Chinese customer feedback.")

app.command()(tag.tag)
app.command()(report.report)
app.command()(themes.themes)
app.command()(train.train)
app.command()(train.evaluate)
app.command()(train.compare)
app.command()(registry.promote)
app.command()(registry.models)
app.command()(labels.suggest)
app.command("check-labels")(labels.check_labels)
app.command()(serve.serve)


def _print_version(value: bool) -> None:
    if value:
        from kesheng import __version__

        typer.echo(f"kesheng {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Optional[bool] = typer.Option(None, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """客声 kesheng: service-quality tags and sentiment for Chinese customer feedback."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
