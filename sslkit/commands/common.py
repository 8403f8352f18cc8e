"""Options that mean the same in every command, and result printing."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource

from sslkit.cli import debug_option

__all__ = ["debug_option", "device_option", "json_option", "seed_option", "print_table",
           "skip_bad_images_option", "report_skipped", "shot_table", "CommaList",
           "no_progress_option", "renamed", "complete_method", "complete_recipe"]

device_option = click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
    help="Where to compute: CUDA when present (auto), or force cpu / cuda.",
)  # fmt: skip
seed_option = click.option("--seed", type=int, default=None, help="Random seed.")
json_option = click.option(
    "--json", "json_path", type=str, default=None, metavar="PATH",
    help="Also write the results as JSON to PATH ('-' for stdout).",
)  # fmt: skip

no_progress_option = click.option(
    "--no-progress", is_flag=True,
    help="No progress on stderr (default: a bar on a terminal, else a log line every "
         "$SSLKIT_PROGRESS_SECONDS seconds, 30 by default).",
)  # fmt: skip

skip_bad_images_option = click.option(
    "--skip-bad-images", is_flag=True,
    help="Leave out image-folder files that do not decode (each is decoded once up front) "
         "and report how many, instead of stopping at the first.",
)  # fmt: skip


encoder_option = click.option(
    "--encoder", type=click.Choice(["online", "momentum"]), default="online", show_default=True,
    help="Which backbone embeds the images: online (the papers' protocol) or the momentum "
         "(key / target) encoder of MoCo, PCL, HCSC and BYOL.")  # fmt: skip
train_labels_option = click.option(
    "--train-labels", type=click.Path(dir_okay=False), default=None, metavar="FILE.npy",
    help="Labels (N integers) of --train-features from another tool that carry none, e.g. a "
         ".npy array.")  # fmt: skip
test_labels_option = click.option(
    "--test-labels", type=click.Path(dir_okay=False), default=None, metavar="FILE.npy",
    help="Labels (N integers) of --test-features from another tool that carry none.")  # fmt: skip
recompute_bn_option = click.option(
    "--recompute-bn", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
    help="Recompute the BatchNorm statistics on N clean training images before embedding "
         "(0: keep the checkpoint's, the papers' protocol).")  # fmt: skip


def renamed(old: str, new: str, name: str, **option: Any) -> Callable:
    """Keep the old spelling ``old`` of option ``new`` (parameter ``name``) for one release.

    The old spelling is hidden from ``--help``; using it prints a one-line note on stderr
    and fills ``name``. ``option`` are the click settings of the old spelling (its type).
    Put it below ``@click.command()``.
    """
    hidden_name = f"deprecated_{name}"

    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            value = kwargs.pop(hidden_name)
            if value is not None and value != ():
                from sslkit.errors import BadInput

                context = click.get_current_context()
                if context.get_parameter_source(name) is ParameterSource.COMMANDLINE:
                    raise BadInput(f"{old} is the old spelling of {new}: give {new} only")
                click.echo(f"note: {old} is deprecated and goes in the next release: "
                           f"write {new}", err=True)  # fmt: skip
                kwargs[name] = value
            return function(*args, **kwargs)

        return click.option(old, hidden_name, hidden=True, default=None, **option)(wrapper)

    return decorate


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

    table = Table()
    for column in columns:
        table.add_column(Text(column))
    for row in rows:
        table.add_row(*[Text(f"{v:.2f}" if isinstance(v, float) else str(v)) for v in row])
    console = Console(stderr=to_stderr)
    console.print(Text(title, style="italic"))  # above the table, never wrapped to its width
    console.print(table)


def print_baselines(title: str, rows: list[tuple[Any, Callable[[dict], Any]]], output: dict,
                    to_stderr: bool) -> None:  # fmt: skip
    """One score per row (``(label, pick)``) for the encoder and its ``--baselines``."""
    refs = output["baselines"]
    table = [[label, pick(output), pick(refs["random_init"]), pick(refs["raw_pixels"])]
             for label, pick in rows]  # fmt: skip
    print_table(title, ["", "this encoder", "random init", "raw pixels"], table, to_stderr)


def shot_table(groups: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of the many / medium / few-shot table: classes and top-1 % per group."""
    many, few = groups["many_above"], groups["few_below"]
    columns = ["", f"many (>{many})", f"medium ({few}-{many})", f"few (<{few})"]
    cells = [groups.get(group) for group in ("many", "medium", "few")]
    rows = [["classes", *[cell["classes"] if cell else 0 for cell in cells]],
            ["top-1 %", *[cell["top1"] if cell else "-" for cell in cells]]]  # fmt: skip
    return columns, rows


def complete_method(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    """Shell completion of ``--method``: the installed methods, and after ``METHOD+`` the
    add-ons."""
    from click.shell_completion import CompletionItem

    from sslkit.api.methods import registered_names

    methods, addons = registered_names()
    if "+" in incomplete:
        host = incomplete.rpartition("+")[0]
        names = [f"{host}+{addon}" for addon in addons]
    else:
        names = methods
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


def complete_recipe(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    """Shell completion of ``--config``: the shipped recipes, else file names."""
    from click.shell_completion import CompletionItem

    from sslkit.api.methods import recipe_names

    names = [name for name in recipe_names() if name.startswith(incomplete)]
    return [CompletionItem(name) for name in names] or [CompletionItem(incomplete, type="file")]


#: Options naming where a command writes, checked for writability when they are parsed
#: (so a command fails in a second, not after its work): parameter name -> is a folder.
OUTPUT_OPTIONS = {"json_path": False, "out": False, "cache_dir": True, "workdir": True}


def guard_outputs(command: click.Command) -> click.Command:
    """Make ``command`` check each of its :data:`OUTPUT_OPTIONS` can be written (``-``,
    stdout, is always fine) as soon as the option is read; returns ``command``."""
    if getattr(command, "_sslkit_outputs_guarded", False):
        return command
    from sslkit.utils.writable import check_writable

    for param in command.params:
        if param.name not in OUTPUT_OPTIONS:
            continue
        folder, inner = OUTPUT_OPTIONS[param.name], param.callback

        def checked(ctx, option, value, folder=folder, inner=inner):
            if inner is not None:
                value = inner(ctx, option, value)
            if value is not None and str(value) != "-" and not ctx.resilient_parsing:
                check_writable(value, folder, option.opts[0])
            return value

        param.callback = checked
    command._sslkit_outputs_guarded = True  # type: ignore[attr-defined]
    return command
