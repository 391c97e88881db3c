"""The ``@udf`` decorator and the module-level UDF registry.

``@udf`` marks a function, a class or a generator function as a stage that the
Isthmus host can run. It works bare and with arguments, returns the decorated
object itself (so it stays directly callable, picklable and testable), and
records a :class:`UDFSpec` in a registry keyed by module and UDF name. Two
different definitions with the same UDF name in one module are an error at
import time.

Calling conventions (the ``kind`` of a spec):

``function``
    ``f(batch) -> table``, called once per input batch.
``class``
    A class with an optional ``setup()``, a ``__call__(batch) -> table`` and an
    optional ``teardown()``. The worker instantiates it once with no arguments,
    calls ``setup()`` once before READY, ``__call__`` per batch and
    ``teardown()`` on CLOSE.
``generator``
    ``f(batches) -> Iterator[table]`` (a generator function, or a class whose
    ``__call__`` is one): receives an iterator over every input batch the worker
    will see and yields results. It runs once per worker, so state kept in
    local variables survives across batches; everything it yields after taking
    batch *k* and before asking for batch *k+1* is the result of batch *k*.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .errors import UDFDefinitionError
from .protocol import INPUT_FORMATS

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["UDFSpec", "udf", "registered", "get_spec", "spec_for", "clear_module", "schema_from"]

F = TypeVar("F", bound=Callable[..., Any])

#: Attribute under which ``@udf`` stores the spec on the decorated object.
SPEC_ATTR = "__isthmus_udf__"

_lock = threading.Lock()
_registry: dict[str, dict[str, "UDFSpec"]] = {}


@dataclass(frozen=True)
class UDFSpec:
    """What ``@udf`` recorded about one UDF.

    ``obj`` is the decorated function or class; ``schema`` the declared output
    schema (``None`` when undeclared); ``source`` is ``file:line`` of the
    definition, used in error messages.
    """

    name: str
    obj: Any
    kind: str
    input: str
    schema: "pa.Schema | None"
    module: str
    qualname: str
    source: str
    registered: bool = True

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description (used by ``isthmus-worker --list``)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "input": self.input,
            "schema": None if self.schema is None else describe_schema(self.schema),
            "registered": self.registered,
            "source": self.source,
        }


def describe_schema(schema: "pa.Schema") -> list[dict[str, Any]]:
    """A schema as a list of ``{"name", "type", "nullable"}``."""
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]


def schema_from(schema: Any, where: str = "schema") -> "pa.Schema | None":
    """Normalises a declared schema: ``None``, a ``pyarrow.Schema``, or a mapping
    of column name to ``pyarrow.DataType`` or type name (``"int64"``, ``"string"``)."""
    if schema is None:
        return None
    import pyarrow as pa

    if isinstance(schema, pa.Schema):
        return schema
    if isinstance(schema, Mapping):
        fields = []
        for name, typ in schema.items():
            if not isinstance(name, str):
                raise UDFDefinitionError(
                    f"{where}: expected column names to be str, found {type(name).__name__} {name!r}"
                )
            if isinstance(typ, str):
                try:
                    typ = pa.type_for_alias(typ)
                except (ValueError, KeyError):
                    raise UDFDefinitionError(
                        f"{where}: expected a pyarrow type name for column {name!r}, found {typ!r}"
                    ) from None
            if isinstance(typ, pa.Field):
                fields.append(typ.with_name(name))
                continue
            if not isinstance(typ, pa.DataType):
                raise UDFDefinitionError(
                    f"{where}: expected a pyarrow.DataType for column {name!r}, found {type(typ).__name__}"
                )
            fields.append(pa.field(name, typ))
        return pa.schema(fields)
    raise UDFDefinitionError(
        f"{where}: expected a pyarrow.Schema or a dict of column name to pyarrow type, "
        f"found {type(schema).__name__}"
    )


def _source_of(obj: Any) -> str:
    code = getattr(obj, "__code__", None)
    if code is not None:
        return f"{os.path.basename(code.co_filename)}:{code.co_firstlineno}"
    try:
        file = inspect.getsourcefile(obj) or inspect.getfile(obj)
    except (TypeError, OSError):
        return "<unknown>"
    try:
        line = inspect.getsourcelines(obj)[1]
    except (OSError, TypeError, IndexError):
        code = getattr(obj, "__code__", None)
        line = code.co_firstlineno if code is not None else 0
    return f"{os.path.basename(file)}:{line}"


def kind_of(obj: Any, where: str) -> str:
    """The calling convention of ``obj``: ``function``, ``class`` or ``generator``."""
    if inspect.isclass(obj):
        call = next((vars(k)["__call__"] for k in obj.__mro__[:-1] if "__call__" in vars(k)), None)
        if isinstance(call, (staticmethod, classmethod)):
            call = call.__func__
        if call is None:
            raise UDFDefinitionError(
                f"{where}: expected a class with a __call__(self, batch) method, found class "
                f"{obj.__qualname__} without one"
            )
        if inspect.isgeneratorfunction(call):
            return "generator"
        if inspect.iscoroutinefunction(call):
            raise UDFDefinitionError(
                f"{where}: expected a plain __call__ method, found an async one in {obj.__qualname__}"
            )
        return "class"
    if inspect.isgeneratorfunction(obj):
        return "generator"
    if inspect.iscoroutinefunction(obj) or inspect.isasyncgenfunction(obj):
        raise UDFDefinitionError(
            f"{where}: expected a function, a class or a generator function, found async "
            f"function {getattr(obj, '__qualname__', obj)!r}"
        )
    if callable(obj):
        return "function"
    raise UDFDefinitionError(
        f"{where}: expected a function, a class or a generator function, found {type(obj).__name__}"
    )


def make_spec(
    obj: Any,
    *,
    name: str | None = None,
    schema: Any = None,
    input: str = "arrow",
    registered: bool = True,
) -> UDFSpec:
    """Builds (but does not register) the spec of ``obj``."""
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__name__
    where = f"@udf on {qualname}"
    if name is not None and (not isinstance(name, str) or not name):
        raise UDFDefinitionError(f"{where}: expected name to be a non-empty str, found {name!r}")
    if input not in INPUT_FORMATS:
        raise UDFDefinitionError(
            f"{where}: expected input to be one of {', '.join(repr(f) for f in INPUT_FORMATS)}, found {input!r}"
        )
    kind = kind_of(obj, where)
    return UDFSpec(
        name=name or str(getattr(obj, "__name__", qualname)),
        obj=obj,
        kind=kind,
        input=input,
        schema=schema_from(schema, where),
        module=getattr(obj, "__module__", None) or "__main__",
        qualname=qualname,
        source=_source_of(obj),
        registered=registered,
    )


def _register(spec: UDFSpec) -> None:
    with _lock:
        entries = _registry.setdefault(spec.module, {})
        old = entries.get(spec.name)
        if old is not None and old.obj is not spec.obj:
            # Re-running the same definition (importlib.reload, a notebook cell run
            # again) replaces it; two different definitions sharing a name do not.
            same_definition = old.qualname == spec.qualname and (
                old.source == spec.source or spec.module == "__main__"
            )
            if not same_definition:
                raise UDFDefinitionError(
                    f"duplicate UDF name {spec.name!r} in module {spec.module}: expected each UDF "
                    f"name to be defined once, found {old.qualname} ({old.source}) and "
                    f"{spec.qualname} ({spec.source}); pass @udf(name=...) to tell them apart"
                )
        entries[spec.name] = spec


@overload
def udf(obj: F, /) -> F: ...


@overload
def udf(
    obj: None = None,
    /,
    *,
    name: str | None = None,
    schema: Any = None,
    input: str = "arrow",
) -> Callable[[F], F]: ...


def udf(
    obj: Any = None,
    /,
    *,
    name: str | None = None,
    schema: Any = None,
    input: str = "arrow",
) -> Any:
    """Marks a function, class or generator function as an Isthmus UDF.

    Use it bare (``@udf``) or with arguments::

        @udf(name="score", schema={"y": pa.float64()}, input="pandas")
        def predict(df): ...

    ``name`` defaults to the object's ``__name__``; ``schema`` (a
    ``pyarrow.Schema`` or a dict of column name to pyarrow type) is enforced
    on every result; ``input`` selects what the function receives: a
    ``pyarrow.RecordBatch`` ("arrow"), a ``pandas.DataFrame`` ("pandas") or a
    dict of numpy arrays ("numpy"). The decorated object is returned
    unchanged apart from an ``__isthmus_udf__`` attribute.
    """

    def decorate(target: F) -> F:
        spec = make_spec(target, name=name, schema=schema, input=input)
        try:
            setattr(target, SPEC_ATTR, spec)
        except (AttributeError, TypeError):
            raise UDFDefinitionError(
                f"@udf on {spec.qualname}: expected an object that accepts attributes, "
                f"found {type(target).__name__}"
            ) from None
        _register(spec)
        return target

    if obj is not None:
        if isinstance(obj, str):
            raise UDFDefinitionError(f"@udf: expected @udf(name={obj!r}), found @udf({obj!r})")
        return decorate(obj)
    return decorate


def registered(module: str | None = None) -> list[UDFSpec]:
    """The UDFs registered by ``module`` (every module when ``None``), in
    definition order."""
    with _lock:
        if module is not None:
            return list(_registry.get(module, {}).values())
        return [s for entries in _registry.values() for s in entries.values()]


def get_spec(module: str, name: str) -> UDFSpec | None:
    """The UDF registered under ``name`` by ``module``, if any."""
    with _lock:
        return _registry.get(module, {}).get(name)


def spec_for(obj: Any) -> UDFSpec | None:
    """The spec ``@udf`` attached to ``obj`` (``None`` for undecorated objects)."""
    spec = getattr(obj, SPEC_ATTR, None)
    return spec if isinstance(spec, UDFSpec) and spec.obj is obj else None


def clear_module(module: str) -> None:
    """Forgets the registrations of ``module`` (the loader calls it before
    executing a module, so a fresh import starts from an empty slate)."""
    with _lock:
        _registry.pop(module, None)
