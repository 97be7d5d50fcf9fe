"""The `vmrules` command: parse options, call one library function, print the result."""

from __future__ import annotations

import sys

import click

from vmrules import __version__
from vmrules.report import FORMATS, format_problems
from vmrules.schema import schema_text
from vmrules.validate import validate_paths

DEFAULT_PATHS = ("rules/",)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vmrules")
def main() -> None:
    """Declarative YAML rules for VictoriaMetrics: validate rule files, apply them, export the rows."""


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="text: path:line:col: error: message; json: one document; github: workflow annotations.")
@click.option("-q", "--quiet", is_flag=True, help="Print problems only, no closing line.")
def validate(paths: tuple[str, ...], fmt: str, quiet: bool) -> None:
    """Check rule files (default: rules/) without reading secrets or touching the network.

    Exit 0 when every file is valid, 1 when any problem is found, 2 on a wrong command line.
    """
    try:
        result = validate_paths(paths or DEFAULT_PATHS)
    except FileNotFoundError as exc:
        raise click.UsageError(str(exc)) from None
    out = format_problems(result.problems, fmt)
    if out:
        click.echo(out)
    if fmt == "text" and not quiet:
        n = len(result.files)
        status = "valid" if result.ok else f"{len(result.problems)} problem(s)"
        click.echo(f"{n} file(s), {status}", err=True)
    sys.exit(0 if result.ok else 1)


@main.command("schema")
def schema_cmd() -> None:
    """Print the JSON Schema of rule files (for editors and other tools)."""
    click.echo(schema_text(), nl=False)
