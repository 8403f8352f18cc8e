"""What ``sslkit methods`` shows: the installed methods and add-ons, a method's settings."""

from __future__ import annotations

from sslkit.api.results import Result


def list_methods(show: str | None = None) -> Result:
    """Every registered method and add-on (each imported, a failure listed with its error),
    and with ``show`` the hyper-parameters of that method (``base+addon`` too)."""
    from sslkit.methods.registry import ADDON_GROUP, discover, get_method

    result = {"methods": [_row(entry) for entry in discover().values()],
              "addons": [_row(entry) for entry in discover(ADDON_GROUP).values()]}  # fmt: skip
    if show:
        params = get_method(show).hyperparameters()
        result["hyperparameters"] = {name: {"default": default, "help": text}
                                     for name, default, text in params}  # fmt: skip
    return Result(result)


def _row(entry) -> dict:
    return {"name": entry.name, "package": entry.package, "target": entry.target,
            "loaded": entry.error is None, "description": entry.description,
            "error": entry.error, "also_registered_by": list(entry.also_registered_by)}


def check(name: str, *, overrides: dict | None = None, processes: int = 1,
          on_rule=None) -> Result:
    """Run ``sslkit.testing.check_method`` on the method registered as ``name``
    (``base+addon`` too); ``overrides`` are ``method`` settings (``{"queries": 2}``).

    Returns ``{"method": name, "rules": [...]}`` when every rule holds; raises
    ``sslkit.testing.ContractError`` naming the first rule broken.
    """
    from sslkit.methods.registry import get_method
    from sslkit.testing import check_method

    method_class = get_method(name)
    passed = check_method(method_class, overrides=overrides, processes=processes,
                          on_rule=on_rule)  # fmt: skip
    return Result({"method": name, "rules": passed, "processes": processes})


def registered_names() -> tuple[list[str], list[str]]:
    """The names of the registered methods and of the registered add-ons (``--method`` takes
    ``method`` or ``method+addon``), read from the package metadata: nothing is imported."""
    from sslkit.methods.registry import ADDON_GROUP, registrations

    return sorted(registrations()), sorted(registrations(ADDON_GROUP))


def recipe_names() -> list[str]:
    """The shipped recipes, as ``--config`` takes them (``moco/digits``, ...)."""
    from sslkit.config import recipe_names as shipped

    return shipped()
