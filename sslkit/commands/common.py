"""Options that mean the same in every command, and result printing."""

from __future__ import annotations

from typing import Any

import click

from sslkit.cli import debug_option

__all__ = ["debug_option", "device_option", "json_option", "seed_option", "print_table",
           "skip_bad_images_option", "report_skipped", "shot_table", "CommaList"]

device_option = click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
    help="Where to compute: CUDA when present (auto), or force cpu / cuda.",
)  # fmt: skip
seed_option = click.option("--seed", type=int, default=None, help="Random seed.")
json_option = click.option(
    "--json", "json_path", type=str, default=None, metavar="PATH",
    help="Also write the results as JSON to PATH ('-' for stdout).",
)  # fmt: skip

skip_bad_images_option = click.option(
    "--skip-bad-images", is_flag=True,
    help="Leave out image-folder files that do not decode (each is decoded once up front) "
         "and report how many, instead of stopping at the first.",
)  # fmt: skip


class CommaList(click.ParamType):
    """Comma-separated numbers: ``"10,20,100,200"`` -> ``(10, 20, 100, 200)``."""

    name = "list"

    def __init__(self, kind: type = int, positive: bool = True, example: str = "10,20") -> None:
        self.kind, self.positive, self.example = kind, positive, example

    def convert(self, value: Any, param, ctx) -> tuple:
        """Parse the text (a tuple, e.g. a default already parsed, passes through)."""
        if isinstance(value, tuple):
            return value
        try:
            items = tuple(self.kind(part) for part in str(value).split(",") if part.strip())
        except ValueError:
            items = ()
        if not items or (self.positive and min(items) <= 0) or min(items) < 0:
            what = "integers" if self.kind is int else "numbers"
            what = f"positive {what}" if self.positive else what
            self.fail(f"use comma-separated {what}, e.g. {self.example}", param, ctx)
        return items


def report_skipped(skipped: list[str] | tuple[str, ...]) -> None:
    """One stderr line on the images ``--skip-bad-images`` left out (nothing when none)."""
    if skipped:
        click.echo(f"skipped {len(skipped)} unreadable image(s), e.g. {skipped[0]}", err=True)


def print_table(title: str, columns: list[str], rows: list[list[Any]], to_stderr: bool) -> None:
    """A rich table for people (on stderr when JSON goes to stdout); cells are plain text
    (a ``[`` in a path or a description is not rich markup) and floats have two decimals."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title))
    for column in columns:
        table.add_column(Text(column))
    for row in rows:
        table.add_row(*[Text(f"{v:.2f}" if isinstance(v, float) else str(v)) for v in row])
    Console(stderr=to_stderr).print(table)


def shot_table(groups: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of the many / medium / few-shot table: classes and top-1 % per group."""
    many, few = groups["many_above"], groups["few_below"]
    columns = ["", f"many (>{many})", f"medium ({few}-{many})", f"few (<{few})"]
    cells = [groups.get(group) for group in ("many", "medium", "few")]
    rows = [["classes", *[cell["classes"] if cell else 0 for cell in cells]],
            ["top-1 %", *[cell["top1"] if cell else "-" for cell in cells]]]  # fmt: skip
    return columns, rows
