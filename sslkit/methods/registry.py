"""Discovery of methods through the ``sslkit.methods`` entry-point group.

Built-in methods are registered in sslkit's own ``pyproject.toml`` exactly as a third-party
plugin registers its own. A plugin that fails to import is listed with its error and
never breaks another command.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from sslkit.errors import BadInput

GROUP = "sslkit.methods"
ADDON_GROUP = "sslkit.addons"


@dataclass
class MethodEntry:
    """One discovered method: its name, source package, and class or load error."""

    name: str
    package: str
    target: str
    method_class: type | None = None
    error: str | None = None

    @property
    def description(self) -> str:
        """The method's one-line description (or its load error)."""
        if self.method_class is None:
            return f"failed to load: {self.error}"
        return getattr(self.method_class, "description", "")


def _load(entry_point: EntryPoint, group: str = GROUP) -> MethodEntry:
    package = entry_point.dist.name if entry_point.dist is not None else "?"
    entry = MethodEntry(entry_point.name, package, entry_point.value)
    try:
        if group == ADDON_GROUP:
            from sslkit.methods.addons import AddOn as required
        else:
            from sslkit.methods.base import Method as required

        loaded = entry_point.load()
        if not (isinstance(loaded, type) and issubclass(loaded, required)):
            raise TypeError(f"{entry_point.value} is not a subclass of "
                            f"{required.__module__}.{required.__name__}")  # fmt: skip
        entry.method_class = loaded
    except Exception as exc:  # a broken plugin must not break the others
        entry.error = f"{exc.__class__.__name__}: {exc}"
    return entry


def discover(group: str = GROUP) -> dict[str, MethodEntry]:
    """All methods (or, with ``group="sslkit.addons"``, add-ons) registered, by name."""
    found: dict[str, MethodEntry] = {}
    for entry_point in sorted(entry_points(group=group), key=lambda e: e.name):
        if entry_point.name not in found:
            found[entry_point.name] = _load(entry_point, group)
    return found


def get_addon(name: str) -> type:
    """The add-on class registered as ``name``; unknown or broken names are bad input."""
    addons = discover(ADDON_GROUP)
    if name not in addons:
        known = ", ".join(n for n, e in addons.items() if e.method_class is not None)
        raise BadInput(f"unknown add-on '{name}': known add-ons are {known or 'none'} "
                       "(write them after the method, e.g. moco+cld)")  # fmt: skip
    entry = addons[name]
    if entry.method_class is None:
        raise BadInput(f"add-on '{name}' (package {entry.package}) failed to load: {entry.error}")
    return entry.method_class


def get_method(name: str) -> type:
    """The method class registered as ``name``; unknown or broken names are bad input.

    ``base+addon[+addon...]`` (e.g. ``moco+cld``) is the base method with add-ons
    (entry-point group ``sslkit.addons``; see :mod:`sslkit.methods.addons`).
    """
    if "+" in name:
        from sslkit.methods.addons import compose

        base, *addons = name.split("+")
        return compose(get_method(base), [get_addon(addon) for addon in addons])
    methods = discover()
    if name not in methods:
        known = ", ".join(n for n, e in methods.items() if e.method_class is not None)
        raise BadInput(f"unknown method '{name}': known methods are {known or 'none'}")
    entry = methods[name]
    if entry.method_class is None:
        raise BadInput(f"method '{name}' (package {entry.package}) failed to load: {entry.error}")
    return entry.method_class
