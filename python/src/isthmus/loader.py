"""Resolves UDF references such as ``score.py:predict`` or ``models.churn:Scorer``.

A reference is ``LOCATION:NAME``. LOCATION is a file (it ends in ``.py`` or
contains a path separator) or a dotted module name. A file is imported once,
through an importlib spec, with its directory put at the front of
``sys.path`` so that it can import its neighbours. NAME is looked up first
among the UDFs the module registered with ``@udf`` (under their UDF name),
then among the module's attributes; it may be a function, a class (the loader
instantiates it with no arguments and calls ``setup()`` once) or a generator
function. ``:NAME`` may be left out when the module registers exactly one UDF.

Failures raise :class:`~isthmus.errors.LoaderError` naming what was looked
for and what exists.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import os
import sys
import threading
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ._tb import exc_text, exc_type_name, format_user_traceback
from .errors import LoaderError, UDFDefinitionError
from .udf import UDFSpec, clear_module, get_spec, make_spec, registered, spec_for

__all__ = ["LoadedUDF", "parse_ref", "load_module", "resolve", "module_udfs", "available_names"]

_lock = threading.RLock()
_file_modules: dict[str, types.ModuleType] = {}


@dataclass
class LoadedUDF:
    """A resolved, ready-to-call UDF.

    ``target`` is what the worker calls: the function, the generator function,
    or the instance of a class (``instance`` is then that object, so that
    ``teardown()`` can be called on it).
    """

    ref: str
    spec: UDFSpec
    target: Callable[..., Any]
    instance: Any = None

    def teardown(self) -> None:
        """Calls ``teardown()`` on a class instance, if it defines one."""
        hook = getattr(self.instance, "teardown", None) if self.instance is not None else None
        if callable(hook):
            hook()


def parse_ref(ref: str) -> tuple[str, str | None, bool]:
    """Splits a reference into ``(location, name or None, is_file)``."""
    if not isinstance(ref, str) or not ref.strip():
        raise LoaderError(f"expected a UDF reference FILE.py:NAME or package.module:NAME, found {ref!r}")
    ref = ref.strip()
    location, name = ref, None
    head, sep, tail = ref.rpartition(":")
    # A colon followed by a path separator is a drive letter (C:\x.py), not NAME.
    if sep and head and tail and not any(c in tail for c in "/\\."):
        location, name = head, tail
    elif sep and head and not tail:
        raise LoaderError(f"expected a UDF name after ':' in {ref!r}, found nothing")
    is_file = location.endswith(".py") or "/" in location or os.sep in location
    if not is_file and not all(part.isidentifier() for part in location.split(".")):
        raise LoaderError(
            f"expected a UDF reference FILE.py:NAME or package.module:NAME, found {ref!r}"
        )
    if name is not None and not name.isidentifier():
        raise LoaderError(f"expected a Python identifier as UDF name in {ref!r}, found {name!r}")
    return location, name, is_file


def _module_name_for(path: str) -> str:
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem.isidentifier() and stem not in sys.modules:
        return stem
    base = "isthmus_udf_" + "".join(c if c.isalnum() else "_" for c in stem)
    name, n = base, 1
    while name in sys.modules:
        n += 1
        name = f"{base}_{n}"
    return name


def _import_file(location: str) -> types.ModuleType:
    path = os.path.abspath(location)
    with _lock:
        cached = _file_modules.get(path)
        if cached is not None:
            return cached
        if not os.path.isfile(path):
            if os.path.isdir(path):
                raise LoaderError(f"expected a Python file, found a directory: {location} ({path})")
            raise LoaderError(f"UDF file not found: expected {location} at {path}, found nothing there")
        directory = os.path.dirname(path)
        if directory not in sys.path:
            sys.path.insert(0, directory)
        name = _module_name_for(path)
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise LoaderError(f"expected an importable Python file, found {location} (no loader for it)")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        clear_module(name)
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:
            sys.modules.pop(name, None)
            clear_module(name)
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise _import_failed(os.path.basename(location), exc) from exc
        _file_modules[path] = module
        return module


def _import_failed(display: str, exc: BaseException) -> LoaderError:
    if isinstance(exc, UDFDefinitionError):
        message = f"importing {display} failed: {exc_text(exc)}"
    elif isinstance(exc, SystemExit):
        message = f"importing {display} failed: the module called sys.exit({exc.code!r})"
    else:
        message = f"importing {display} failed: {exc_type_name(exc)}: {exc_text(exc)}"
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".", 1)[0]
        message += f" (install it in the worker's environment: {sys.executable} -m pip install {top})"
    return LoaderError(message, exc_type=exc_type_name(exc), traceback=format_user_traceback(exc))


def _import_dotted(location: str) -> types.ModuleType:
    if location in sys.modules:
        return sys.modules[location]
    try:
        return importlib.import_module(location)
    except ModuleNotFoundError as exc:
        parts = location.split(".")
        prefixes = {".".join(parts[: i + 1]) for i in range(len(parts))}
        if exc.name in prefixes:
            shown = [p for p in sys.path[:4] if p] or ["(empty)"]
            raise LoaderError(
                f"UDF module not found: expected module {location!r} on sys.path, found no "
                f"module {exc.name!r} (searched {', '.join(shown)}{', ...' if len(sys.path) > 4 else ''}); "
                f"for a file use FILE.py:NAME"
            ) from None
        raise _import_failed(location, exc) from exc
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise _import_failed(location, exc) from exc


def load_module(location: str, is_file: bool | None = None) -> types.ModuleType:
    """Imports a UDF module (a file path or a dotted name) once and returns it."""
    if is_file is None:
        is_file = location.endswith(".py") or "/" in location or os.sep in location
    return _import_file(location) if is_file else _import_dotted(location)


def _plain_members(module: types.ModuleType) -> list[tuple[str, Any]]:
    out = []
    for attr, value in vars(module).items():
        if attr.startswith("_"):
            continue
        if not (inspect.isfunction(value) or inspect.isclass(value)):
            continue
        if getattr(value, "__module__", None) != module.__name__:
            continue  # imported from elsewhere
        out.append((attr, value))
    return out


def module_udfs(module: types.ModuleType) -> list[UDFSpec]:
    """The UDFs a module registers; when it registers none, its public functions
    and classes (as unregistered specs, input "arrow", no schema)."""
    specs = registered(module.__name__)
    if specs:
        return specs
    out = []
    for attr, value in _plain_members(module):
        try:
            out.append(make_spec(value, name=attr, registered=False))
        except UDFDefinitionError:
            continue  # e.g. a class without __call__: not something we could run
    return out


def available_names(module: types.ModuleType) -> str:
    """A human-readable list of what NAME could be in ``module``."""
    udfs = [s.name for s in registered(module.__name__)]
    plain = [a for a, _ in _plain_members(module) if a not in udfs]
    parts = []
    if udfs:
        parts.append("UDFs " + ", ".join(udfs))
    if plain:
        parts.append("functions/classes " + ", ".join(plain))
    return "; ".join(parts) if parts else "nothing (no @udf and no public functions or classes)"


def _instantiate(spec: UDFSpec, display: str) -> tuple[Callable[..., Any], Any]:
    if not inspect.isclass(spec.obj):
        return spec.obj, None
    try:
        instance: Any = spec.obj()
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise LoaderError(
            f"{display}: creating {spec.qualname}() failed: {exc_type_name(exc)}: {exc_text(exc)}",
            exc_type=exc_type_name(exc),
            traceback=format_user_traceback(exc),
        ) from exc
    setup = getattr(instance, "setup", None)
    if callable(setup):
        try:
            setup()
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise LoaderError(
                f"{display}: {spec.qualname}.setup() failed: {exc_type_name(exc)}: {exc_text(exc)}",
                exc_type=exc_type_name(exc),
                traceback=format_user_traceback(exc),
            ) from exc
    return instance, instance


def resolve(
    ref: str,
    *,
    overrides: Mapping[str, Any] | None = None,
    instantiate: bool = True,
) -> LoadedUDF:
    """Resolves ``ref`` to a callable UDF.

    ``overrides`` maps references to objects already in memory (the in-process
    test harness uses it for callables); such an object is treated like a
    module attribute of that name.
    """
    if overrides and ref in overrides:
        obj = overrides[ref]
        spec = spec_for(obj) or _plain_spec(obj, ref.rpartition(":")[2] or ref, ref)
        target, instance = _instantiate(spec, ref) if instantiate else (spec.obj, None)
        return LoadedUDF(ref, spec, target, instance)

    location, name, is_file = parse_ref(ref)
    display = os.path.basename(location) if is_file else location
    module = load_module(location, is_file)

    if name is None:
        specs = registered(module.__name__)
        if len(specs) != 1:
            raise LoaderError(
                f"expected {ref}:NAME (the module registers {len(specs)} UDFs, so NAME is needed); "
                f"available: {available_names(module)}"
            )
        spec = specs[0]
    else:
        found = get_spec(module.__name__, name)
        if found is None and hasattr(module, name):
            obj = getattr(module, name)
            found = spec_for(obj) or _plain_spec(obj, name, f"{display}:{name}")
        if found is None:
            candidates = [s.name for s in registered(module.__name__)] + [a for a, _ in _plain_members(module)]
            close = difflib.get_close_matches(name, candidates, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise LoaderError(
                f"no UDF named {name!r} in {display}: expected a @udf name or a function/class "
                f"of that name, found {available_names(module)}{hint}"
            )
        spec = found

    target, instance = _instantiate(spec, f"{display}:{spec.name}") if instantiate else (spec.obj, None)
    if spec.kind == "generator" and instance is not None:
        target = instance
    return LoadedUDF(ref, spec, target, instance)


def _plain_spec(obj: Any, name: str, where: str) -> UDFSpec:
    try:
        return make_spec(obj, name=name, registered=False)
    except UDFDefinitionError as exc:
        detail = str(exc).split(": ", 1)[-1]  # drop the "@udf on X" prefix
        raise LoaderError(f"{where}: {detail}") from None
