"""Options that mean the same in every command, and result printing."""

from __future__ import annotations

from typing import Any

import click

from sslkit.cli import debug_option

__all__ = ["debug_option", "device_option", "json_option", "seed_option", "print_table",
           "skip_bad_images_option", "report_skipped"]

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


def report_skipped(skipped: list[str] | tuple[str, ...]) -> None:
    """One stderr line on the images ``--skip-bad-images`` left out (nothing when none)."""
    if skipped:
        click.echo(f"skipped {len(skipped)} unreadable image(s), e.g. {skipped[0]}", err=True)


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


def run_evaluation(name: str, workdir: str | None, state_file: str, resume: bool, force: bool,
                   device: str, run, report, json_path: str | None) -> None:  # fmt: skip
    """The frame shared by the training evaluations (``linear``, ``semisup``).

    Refuses to overwrite a workdir's state without ``--resume``/``--force``, joins the
    process group under torchrun, calls ``run(env, folder) -> dict``, adds the wall time,
    and on rank 0 writes ``WORKDIR/<name>.json``, prints ``report(output, json_path)`` and
    the ``--json`` output.
    """
    import time
    from pathlib import Path

    from sslkit import distributed
    from sslkit.errors import BadInput
    from sslkit.utils.jsonout import write_json

    started = time.perf_counter()
    folder = Path(workdir) if workdir else None
    if folder is not None and (folder / state_file).exists() and not (resume or force):
        raise BadInput(f"{folder} already holds a {name} run: pass --resume to continue it "
                       "or --force to start over")  # fmt: skip
    env = distributed.setup(device)
    try:
        output = run(env, folder)
    finally:
        distributed.teardown()
    output["seconds"] = round(time.perf_counter() - started, 3)
    if env.is_main:
        if folder is not None:
            write_json(output, str(folder / f"{name}.json"))
        report(output, json_path)
        write_json(output, json_path)
