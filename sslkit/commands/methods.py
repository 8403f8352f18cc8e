"""``sslkit methods``: list every discovered method."""

from __future__ import annotations

import click

from sslkit.commands.common import debug_option, json_option, print_table


@click.command()
@click.option("--show", "show", default=None, metavar="NAME",
              help="Also list the hyper-parameters of method NAME.")  # fmt: skip
@json_option
@debug_option
def methods(show: str | None, json_path: str | None) -> None:
    """List the methods sslkit can train (built-in and plugins) and the add-ons they take.

    A method with add-ons is spelled base+addon, e.g. moco+cld.

    \b
    Examples:
      sslkit methods --show moco
      sslkit methods --show moco+cld
    """
    from sslkit.methods.registry import ADDON_GROUP, discover, get_method
    from sslkit.utils.jsonout import write_json

    found = discover()
    rows = [[e.name, e.package, e.description] for e in found.values()]
    result = {"methods": [
        {"name": e.name, "package": e.package, "target": e.target, "loaded": e.error is None,
         "description": e.description, "error": e.error} for e in found.values()
    ]}  # fmt: skip
    addons = discover(ADDON_GROUP)
    result["addons"] = [
        {"name": e.name, "package": e.package, "target": e.target, "loaded": e.error is None,
         "description": e.description, "error": e.error} for e in addons.values()
    ]  # fmt: skip
    to_stderr = json_path == "-"
    print_table("sslkit methods", ["name", "package", "description"], rows, to_stderr)
    print_table("add-ons (--method BASE+ADDON)", ["name", "package", "description"],
                [[e.name, e.package, e.description] for e in addons.values()], to_stderr)
    if show:
        method_cls = get_method(show)
        params = method_cls.hyperparameters()
        result["hyperparameters"] = {name: {"default": d, "help": h} for name, d, h in params}
        print_table(f"{show} hyper-parameters (--set method.NAME=VALUE)",
                    ["name", "default", "meaning"],
                    [[n, str(d), h] for n, d, h in params], to_stderr)  # fmt: skip
    write_json(result, json_path)
