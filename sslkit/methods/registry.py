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


def _load(entry_point: EntryPoint) -> MethodEntry:
    package = entry_point.dist.name if entry_point.dist is not None else "?"
    entry = MethodEntry(entry_point.name, package, entry_point.value)
    try:
        from sslkit.methods.base import Method

        loaded = entry_point.load()
        if not (isinstance(loaded, type) and issubclass(loaded, Method)):
            raise TypeError(f"{entry_point.value} is not a subclass of sslkit.methods.base.Method")
        entry.method_class = loaded
    except Exception as exc:  # a broken plugin must not break the others
        entry.error = f"{exc.__class__.__name__}: {exc}"
    return entry


def discover() -> dict[str, MethodEntry]:
    """All methods registered in the environment, by name (sorted)."""
    found: dict[str, MethodEntry] = {}
    for entry_point in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        if entry_point.name not in found:
            found[entry_point.name] = _load(entry_point)
    return found


def get_method(name: str) -> type:
    """The method class registered as ``name``; unknown or broken names are bad input."""
    methods = discover()
    if name not in methods:
        known = ", ".join(n for n, e in methods.items() if e.method_class is not None)
        raise BadInput(f"unknown method '{name}': known methods are {known or 'none'}")
    entry = methods[name]
    if entry.method_class is None:
        raise BadInput(f"method '{name}' (package {entry.package}) failed to load: {entry.error}")
    return entry.method_class
