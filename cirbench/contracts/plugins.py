"""Plugins without packaging: a Python file or an importable module whose import registers methods,
datasets or encoder kinds (with ``@register_method("name")`` and the like), named on the command line
(``--plugin PATH.py`` or ``--plugin module.name``, repeatable), in the Python API (``plugins=[...]``) or
in ``CIRBENCH_PLUGINS`` (os.pathsep-separated). They get the validation of entry-point plugins: a class
that is not a Method, Dataset or encoder factory is refused, a name already taken is refused, and a
plugin that does not load is listed by ``cirbench list`` as broken with the reason instead of failing
the run that did not ask for it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
import traceback
import warnings
from pathlib import Path

from cirbench.contracts.registry import PLUGIN_ERRORS, datasets, encoders, import_failure, methods
from cirbench.errors import UsageError

ENV = "CIRBENCH_PLUGINS"
loaded: dict[str, str] = {}  # spec -> the module name it was imported as
broken = PLUGIN_ERRORS  # spec -> why it did not load (the registries name them in unknown-name errors)
REGISTRIES = (methods, datasets, encoders)


def env_specs() -> list[str]:
    return [s for s in os.environ.get(ENV, "").split(os.pathsep) if s.strip()]


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    return f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def _import(spec: str) -> str:
    path = Path(spec).expanduser()
    if spec.endswith(".py") or os.sep in spec or "/" in spec:
        if not path.is_file():
            raise FileNotFoundError(f"no such plugin file {path}")
        name = f"cirbench_plugin_{path.stem}_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # dataclasses and pickling look their module up by name
        try:
            module_spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return name
    importlib.import_module(spec)
    return spec


def load(specs=(), strict: bool = True) -> list[str]:
    """Import each plugin once, and those of CIRBENCH_PLUGINS (the built-ins and entry points are loaded
    first, so a plugin cannot take their names). A plugin that does not load: a UsageError naming it and
    why when ``strict`` and the user named it for this command, else recorded in ``broken`` (listed by
    ``cirbench list``; a run that does not ask for it is not stopped)."""
    for registry in (methods, datasets, encoders):
        registry.names()
    named = [str(s) for s in specs or []]
    done = []
    for spec in dict.fromkeys([*env_specs(), *named]):
        strict_here = strict and spec in named
        if spec in loaded:
            done.append(loaded[spec])
            continue
        if spec not in broken:
            before = [r.snapshot() for r in REGISTRIES]
            try:
                loaded[spec] = _import(spec)
                done.append(loaded[spec])
                if all(r.snapshot()[0] == b[0] for r, b in zip(REGISTRIES, before)):
                    warnings.warn(f"plugin {spec} registered no method, dataset or encoder (does its import "
                                  "reach a @register_... decorator?)", stacklevel=2)
                continue
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # a plugin's bug (or its sys.exit) must not take the harness down
                for registry, state in zip(REGISTRIES, before):
                    registry.restore(state)  # nothing of a plugin that failed half-way stays registered
                broken[spec] = f"{import_failure(exc)}{_where(exc)}"
        if strict_here:
            raise UsageError(f"plugin {spec} does not load: {broken[spec]}")
    return done
