"""Options that mean the same in every command, and result printing."""

from __future__ import annotations

from typing import Any

import click

from sslkit.cli import debug_option

__all__ = ["debug_option", "device_option", "json_option", "seed_option", "print_table"]

device_option = click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
    help="Where to compute: CUDA when present (auto), or force cpu / cuda.",
)  # fmt: skip
seed_option = click.option("--seed", type=int, default=None, help="Random seed.")
json_option = click.option(
    "--json", "json_path", type=str, default=None, metavar="PATH",
    help="Also write the results as JSON to PATH ('-' for stdout).",
)  # fmt: skip


def print_table(title: str, columns: list[str], rows: list[list[Any]], to_stderr: bool) -> None:
    """A rich table for people (on stderr when JSON goes to stdout)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[f"{v:.2f}" if isinstance(v, float) else str(v) for v in row])
    Console(stderr=to_stderr).print(table)
