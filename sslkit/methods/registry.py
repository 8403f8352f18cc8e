"""Methods and add-ons found through the ``sslkit.methods`` / ``sslkit.addons`` entry points.

Built-in methods are registered in sslkit's own ``pyproject.toml`` exactly as a
third-party plugin registers its own. The names come from the installed packages'
metadata alone: :func:`get_method` imports only the entry point it is asked for, so a
broken or slow unrelated plugin never affects a run. :func:`discover` (what ``sslkit
methods`` shows) imports every entry point and lists one that fails with its error.

Two packages registering one name are both listed, and asking for that name is bad input
naming both; ``PACKAGE:NAME`` (e.g. ``sslkit-simclr:simclr``) picks one.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from sslkit.errors import BadInput

GROUP = "sslkit.methods"
ADDON_GROUP = "sslkit.addons"


@dataclass(frozen=True)
class Registration:
    """One entry point as the package metadata declares it (nothing imported)."""

    name: str
    package: str
    target: str
    group: str
    entry_point: EntryPoint

    @property
    def qualified(self) -> str:
        """``PACKAGE:NAME``, the spelling that picks this registration."""
        return f"{self.package}:{self.name}"

    def try_load(self) -> tuple[type | None, str | None]:
        """``(class, None)``, or ``(None, "ImportError: ...")`` when importing it fails or it
        is not a subclass of the group's base class (a broken plugin breaks nothing else)."""
        try:
            return _checked_class(self.entry_point.load(), self), None
        except Exception as exc:
            return None, _error_text(exc)

    def load(self) -> type:
        """Import the class; a failure or a wrong type is :class:`BadInput`."""
        loaded, error = self.try_load()
        if loaded is None:
            kind = "add-on" if self.group == ADDON_GROUP else "method"
            raise BadInput(f"{kind} '{self.name}' (package {self.package}) failed to load: "
                           f"{error}")  # fmt: skip
        return loaded


@dataclass
class MethodEntry:
    """One discovered method or add-on: its name, package, and class or load error."""

    name: str
    package: str
    target: str
    method_class: type | None = None
    error: str | None = None
    also_registered_by: tuple[str, ...] = ()  # other packages registering the same name

    @property
    def description(self) -> str:
        """The one-line description (or the load error)."""
        if self.method_class is None:
            return f"failed to load: {self.error}"
        return getattr(self.method_class, "description", "")


def registrations(group: str = GROUP) -> dict[str, list[Registration]]:
    """Every registered name and who registers it, from the package metadata alone."""
    found: dict[str, list[Registration]] = {}
    for entry_point in sorted(entry_points(group=group), key=lambda e: (e.name, e.value)):
        package = entry_point.dist.name if entry_point.dist is not None else "?"
        registration = Registration(entry_point.name, package, entry_point.value, group,
                                    entry_point)  # fmt: skip
        found.setdefault(entry_point.name, []).append(registration)
    return found


def discover(group: str = GROUP) -> dict[str, MethodEntry]:
    """Every method (or add-on) by name, each imported; a failure is kept as its error.

    A name registered by several packages is listed once per package, the later ones
    under ``PACKAGE:NAME``, each saying who else registers it.
    """
    found: dict[str, MethodEntry] = {}
    for name, registered in registrations(group).items():
        for position, registration in enumerate(registered):
            loaded, error = registration.try_load()
            others = tuple(r.package for r in registered if r is not registration)
            found[name if position == 0 else registration.qualified] = MethodEntry(
                name, registration.package, registration.target, loaded, error, others)
    return found


def resolve(name: str, group: str = GROUP) -> Registration:
    """The one registration ``name`` (or ``PACKAGE:NAME``) means; unknown or ambiguous
    names are :class:`BadInput` with the fix."""
    kind = "add-on" if group == ADDON_GROUP else "method"
    package, _, plain = name.rpartition(":")
    registered = registrations(group)
    candidates = registered.get(plain, [])
    if package:
        candidates = [r for r in candidates if r.package == package]
    if not candidates:
        known = ", ".join(registered) or "none"
        hint = " (write them after the method, e.g. moco+cld)" if group == ADDON_GROUP else ""
        raise BadInput(f"unknown {kind} '{name}': known {kind}s are {known}{hint}")
    if len(candidates) > 1:
        both = " and ".join(f"{r.package} ({r.target})" for r in candidates)
        picks = " or ".join(r.qualified for r in candidates)
        raise BadInput(f"{kind} '{name}' is registered by {both}: pick one with "
                       f"{picks}, or uninstall one of the packages")  # fmt: skip
    return candidates[0]


def get_addon(name: str) -> type:
    """The add-on class registered as ``name``; unknown, ambiguous or broken names are bad
    input. Only that entry point is imported."""
    return resolve(name, ADDON_GROUP).load()


def get_method(name: str) -> type:
    """The method class registered as ``name``; unknown, ambiguous or broken names are bad
    input. Only the entry points ``name`` names are imported.

    ``base+addon[+addon...]`` (e.g. ``moco+cld``) is the base method with add-ons
    (entry-point group ``sslkit.addons``; see :mod:`sslkit.methods.addons`).
    """
    if "+" in name:
        from sslkit.methods.addons import compose

        base, *addons = name.split("+")
        return compose(get_method(base), [get_addon(addon) for addon in addons])
    return resolve(name).load()


def _checked_class(loaded: object, registration: Registration) -> type:
    """``loaded`` if it subclasses the group's base class, else a ``TypeError``."""
    if registration.group == ADDON_GROUP:
        from sslkit.methods.addons import AddOn as required
    else:
        from sslkit.methods.base import Method as required
    if not (isinstance(loaded, type) and issubclass(loaded, required)):
        raise TypeError(f"{registration.target} is not a subclass of "
                        f"{required.__module__}.{required.__name__}")  # fmt: skip
    return loaded


def _error_text(exc: BaseException) -> str:
    """``ImportError: message`` (its first line)."""
    text = str(exc).strip()
    return f"{exc.__class__.__name__}: {text.splitlines()[0] if text else ''}"
