"""One generic registry for methods, datasets and encoders.

Built-ins register themselves with a decorator in their own module; the registry imports every
module of its built-in package the first time a name is looked up. Third-party plugins register
through an entry-point group (``cirbench.methods``, ``cirbench.datasets``, ``cirbench.encoders``)
and are loaded lazily too. A built-in name wins over a plugin of the same name (with a warning);
two built-ins of one name are an error. Unknown names get a "did you mean" and the list.

A plugin that cannot be used (its entry point fails to import, or loads to something that is not a
method class, dataset class or encoder factory) is never hidden: it is listed as broken with the
reason, and asking for it by name says why it cannot run. Plugins without packaging (a file or a
module named by ``--plugin`` or ``CIRBENCH_PLUGINS``) are loaded by cirbench.contracts.plugins.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import warnings
from importlib import metadata
from typing import Callable, Generic, Iterator, TypeVar

from cirbench.errors import UsageError

T = TypeVar("T")


# plugin files or modules that did not load (cirbench.contracts.plugins): spec -> why
PLUGIN_ERRORS: dict[str, str] = {}


ENTRY_POINTS_ENV = "CIRBENCH_ENTRY_POINTS"  # "0": load no installed plugin (a run independent of the environment)


def import_failure(exc: BaseException) -> str:
    """Why a plugin's import failed, in one line (its sys.exit said as such)."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r}) while being imported"
    return f"{type(exc).__name__}: {exc}"


def entry_points(group: str):
    import os

    if os.environ.get(ENTRY_POINTS_ENV, "1").strip().lower() in ("0", "no", "false", "off"):
        return []
    return metadata.entry_points(group=group)


class RegistryError(Exception):
    """A programming error in registrations (a name registered twice)."""


class Registry(Generic[T]):
    def __init__(self, kind: str, group: str, builtin_package: str, builtin_modules: tuple[str, ...] = ()):
        self.kind = kind
        self.group = group
        self.builtin_package = builtin_package
        self.builtin_modules = builtin_modules  # built-ins living outside the package (the world's encoder)
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._origin: dict[str, str] = {}
        self._loaded = False
        self._loading = False
        self.broken: dict[str, str] = {}  # plugin name -> why it cannot be used
        # obj -> None when usable, else the reason (set by the module that defines the base class)
        self.validator: Callable[[object], str | None] | None = None

    # -- registration -------------------------------------------------------------------------
    def register(self, name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self.add(name, obj, aliases=aliases, origin=getattr(obj, "__module__", "?"))
            return obj

        return decorator

    def add(self, name: str, obj: T, *, aliases: tuple[str, ...] = (), origin: str = "?") -> None:
        problem = self.validator(obj) if self.validator else None
        if problem:
            raise RegistryError(f"{self.kind} {name!r} ({origin}) cannot be registered: {problem}")
        for key in (name, *aliases):
            existing = self._items.get(key) if key == name else None
            if key == name and existing is not None and existing is not obj:
                raise RegistryError(
                    f"{self.kind} name {name!r} is registered twice "
                    f"({self._origin[name]} and {origin})"
                )
            if key in self._aliases and self._aliases[key] != name:
                raise RegistryError(f"{self.kind} alias {key!r} already points to {self._aliases[key]!r}")
            if key != name and key in self._items:
                raise RegistryError(f"{self.kind} alias {key!r} ({origin}) is the name of the {self.kind} registered "
                                    f"by {self._origin[key]}")
            if key == name and key in self._aliases:
                raise RegistryError(f"{self.kind} name {name!r} ({origin}) is an alias of {self._aliases[key]!r}")
        self._items[name] = obj
        self._origin[name] = origin
        for alias in aliases:
            self._aliases[alias] = name
        try:
            setattr(obj, "registry_name", name)
        except (AttributeError, TypeError):
            pass

    # -- loading --------------------------------------------------------------------------------
    def _load(self) -> None:
        if self._loaded or self._loading:
            return
        self._loading = True
        try:
            package = importlib.import_module(self.builtin_package)
            for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{self.builtin_package}.{info.name}")
            for module in self.builtin_modules:
                importlib.import_module(module)
            builtins = set(self._items)
            for ep in entry_points(self.group):
                if ep.name in builtins:
                    warnings.warn(
                        f"plugin {self.kind} {ep.name!r} from {ep.value} is ignored: "
                        f"a built-in {self.kind} has that name",
                        stacklevel=2,
                    )
                    continue
                state = self.snapshot()
                try:
                    obj = ep.load()
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:  # a broken plugin (or its sys.exit) must not break the harness
                    self.restore(state)  # nothing it registered before failing stays
                    self._broken(ep, f"importing {ep.value} failed: {import_failure(exc)}")
                    continue
                if obj is not None and self._items.get(ep.name) is obj:  # its module registered it already
                    continue
                problem = self.validator(obj) if self.validator else None
                if problem is None and obj is None:
                    problem = "it loads to None"
                if problem:
                    self._broken(ep, problem)
                    continue
                try:
                    self.add(ep.name, obj, origin=ep.value)
                except RegistryError as exc:
                    self._broken(ep, str(exc))
            self._loaded = True
        finally:
            self._loading = False

    def _broken(self, ep, why: str) -> None:
        self.broken[ep.name] = f"{why} (entry point {ep.name} = {ep.value})"
        self._origin.setdefault(ep.name, ep.value)
        warnings.warn(f"plugin {self.kind} {ep.name!r} is broken: {self.broken[ep.name]}", stacklevel=3)

    # -- lookup ---------------------------------------------------------------------------------
    def snapshot(self) -> tuple:
        return dict(self._items), dict(self._aliases), dict(self._origin)

    def restore(self, state: tuple) -> None:
        """Back to a snapshot: what a plugin that failed half-way registered is taken away again."""
        items, aliases, origin = state
        self._items, self._aliases, self._origin = dict(items), dict(aliases), dict(origin)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def canonical(self, name: str) -> str:
        self._load()
        if name in self._items:
            return name
        if name in self._aliases:
            return self._aliases[name]
        if name in self.broken:
            raise UsageError(f"{self.kind} {name!r} is a broken plugin: {self.broken[name]}")
        known = self.names()
        close = difflib.get_close_matches(name, known + list(self._aliases), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        failed = "".join(f"; plugin {spec} did not load: {why}" for spec, why in PLUGIN_ERRORS.items())
        raise UsageError(f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {', '.join(known)}{failed}")

    def get(self, name: str) -> T:
        return self._items[self.canonical(name)]

    def name_of(self, obj) -> str | None:
        """The name ``obj`` is registered under, if it is."""
        self._load()
        return next((n for n, o in self._items.items() if o is obj), None)

    def origin(self, name: str) -> str:
        return self._origin[self.canonical(name)]

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


methods: Registry = Registry("method", "cirbench.methods", "cirbench.methods")
datasets: Registry = Registry("dataset", "cirbench.datasets", "cirbench.datasets")
encoders: Registry = Registry("encoder", "cirbench.encoders", "cirbench.encoders", ("cirbench.world.encoder",))
