"""``sslkit methods``: list every discovered method."""

from __future__ import annotations

import click

from sslkit.commands.common import complete_method, debug_option, json_option, print_table
from sslkit.utils.jsonout import write_json


@click.command()
@click.option("--show", "show", default=None, metavar="NAME", shell_complete=complete_method,
              help="Also list the hyper-parameters of method NAME.")  # fmt: skip
@click.option("--check", "check", default=None, metavar="NAME", shell_complete=complete_method,
              help="Check that method NAME keeps the plugin contract on tiny synthetic data "
                   "(seconds); exit 1 naming the rule it breaks.")  # fmt: skip
@click.option("--processes", type=click.IntRange(1, 8), default=1, show_default=True,
              help="--check: also run a step on this many gloo processes (2 checks DDP).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="--check: a method setting, e.g. --set method.queries=2 (repeatable).")
@json_option
@debug_option
def methods(show: str | None, check: str | None, processes: int, overrides: tuple[str, ...],
            json_path: str | None) -> None:
    """List the methods sslkit can train (built-in and plugins) and the add-ons they take.

    A method with add-ons is spelled base+addon, e.g. moco+cld. A name two packages
    register is listed twice; pick one with --method PACKAGE:NAME.

    \b
    Examples:
      sslkit methods --show moco
      sslkit methods --show moco+cld
      sslkit methods --check simclr
      sslkit methods --check moco+cld --set method.queries=2
    """
    from sslkit.api.methods import list_methods

    if check:
        _check(check, processes, overrides, json_path)
        return

    result = list_methods(show).to_dict()
    to_stderr = json_path == "-"
    for title, rows in (("sslkit methods", result["methods"]),
                        ("add-ons (--method BASE+ADDON)", result["addons"])):  # fmt: skip
        print_table(title, ["name", "package", "description"],
                    [[row["name"], row["package"], _described(row)] for row in rows], to_stderr)
    if show:
        params = result["hyperparameters"]
        print_table(f"{show} hyper-parameters (--set method.NAME=VALUE)",
                    ["name", "default", "meaning"],
                    [[name, str(p["default"]), p["help"]] for name, p in params.items()],
                    to_stderr)  # fmt: skip
    write_json(result, json_path)


def _described(row: dict) -> str:
    """The description, and who else registers the name (``--method PACKAGE:NAME``)."""
    if not row["also_registered_by"]:
        return row["description"]
    others = ", ".join(row["also_registered_by"])
    return (f"{row['description']} [also registered by {others}: "
            f"--method {row['package']}:{row['name']} picks this one]")


def _check(name: str, processes: int, overrides: tuple[str, ...], json_path: str | None) -> None:
    """``--check NAME``: a line per rule held; exit 1 with the rule broken."""
    from sslkit.api.methods import check
    from sslkit.api.pretrain import nested_overrides, parse_overrides
    from sslkit.errors import BadInput

    settings = nested_overrides(parse_overrides(overrides))
    if set(settings) - {"method"}:
        raise BadInput("--check takes method settings only: write --set method.KEY=VALUE")
    stderr = json_path == "-"
    try:
        result = check(name, overrides=settings.get("method"), processes=processes,
                       on_rule=lambda rule: click.echo(f"ok  {rule}", err=stderr))  # fmt: skip
    except AssertionError as exc:  # sslkit.testing.ContractError: the rule's name first
        click.echo(f"FAILED  {exc}", err=True)
        write_json({"method": name, "failed": getattr(exc, "rule", ""), "error": str(exc)},
                   json_path)  # fmt: skip
        raise click.exceptions.Exit(1) from exc
    click.echo(f"{name} keeps the method contract ({len(result['rules'])} rules)", err=stderr)
    write_json(result.to_dict(), json_path)
