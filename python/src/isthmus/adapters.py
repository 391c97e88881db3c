"""Batch adapters: what a UDF receives and what it may return.

Input formats
    ``arrow``  a ``pyarrow.RecordBatch`` (no conversion, no copy)
    ``pandas`` a ``pandas.DataFrame`` (``RecordBatch.to_pandas()``)
    ``numpy``  a ``dict`` of column name to ``numpy.ndarray``
               (``Array.to_numpy(zero_copy_only=False)``: no copy for
               primitive columns without nulls)

Return values accepted from a UDF (or yielded by a generator UDF)
    ``pyarrow.RecordBatch``, ``pyarrow.Table`` (any number of chunks),
    ``pandas.DataFrame`` (the index is dropped), or a ``dict`` of column name
    to array-like (``pyarrow.Array``/``ChunkedArray``, ``numpy.ndarray``,
    ``pandas.Series``, ``list``).

A declared output schema is enforced on every result: dicts and DataFrames are
converted to the declared types (safe casts only), Arrow results must already
have them. Violations raise :class:`~isthmus.errors.SchemaError`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa

from .errors import SchemaError

__all__ = [
    "input_converter",
    "OutputNormalizer",
    "combine",
    "empty_batch",
    "has_dictionary",
    "format_schema",
]

_RETURN_TYPES = "a pyarrow.RecordBatch, pyarrow.Table, pandas.DataFrame or dict of columns"


def input_converter(fmt: str) -> Callable[[pa.RecordBatch], Any]:
    """The function that turns an input batch into what the UDF expects."""
    if fmt == "arrow":
        return _identity
    if fmt == "pandas":
        import pandas  # noqa: F401  (fail at setup, not at the first batch)

        return _to_pandas
    if fmt == "numpy":
        import numpy  # noqa: F401

        return _to_numpy
    raise ValueError(f"expected an input format arrow, pandas or numpy, found {fmt!r}")


def _identity(batch: pa.RecordBatch) -> pa.RecordBatch:
    return batch


def _to_pandas(batch: pa.RecordBatch) -> Any:
    return batch.to_pandas()


def _to_numpy(batch: pa.RecordBatch) -> dict[str, Any]:
    return {
        name: column.to_numpy(zero_copy_only=False)
        for name, column in zip(batch.schema.names, batch.columns)
    }


def empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    """A zero-row batch of ``schema``."""
    return pa.RecordBatch.from_arrays([pa.array([], type=f.type) for f in schema], schema=schema)


def combine(batches: list[pa.RecordBatch], schema: pa.Schema) -> pa.RecordBatch:
    """One batch holding the rows of ``batches`` (no copy when there is one)."""
    if len(batches) == 1:
        return batches[0]
    if not batches:
        return empty_batch(schema)
    table = pa.Table.from_batches(batches, schema=schema).combine_chunks()
    parts = table.to_batches()
    return parts[0] if parts else empty_batch(schema)


def _type_has_dictionary(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return True
    if isinstance(t, pa.BaseExtensionType):  # no fields of its own: look at its storage
        return _type_has_dictionary(t.storage_type)
    return any(_type_has_dictionary(t.field(i).type) for i in range(t.num_fields))


def has_dictionary(schema: pa.Schema) -> bool:
    """Whether any field (nested ones included) is dictionary-encoded."""
    return any(_type_has_dictionary(f.type) for f in schema)


def format_schema(schema: pa.Schema) -> str:
    """``{x: int64, y: double not null}``."""
    inner = ", ".join(f"{f.name}: {f.type}{'' if f.nullable else ' not null'}" for f in schema)
    return "{" + inner + "}"


def _describe_value(value: Any) -> str:
    if value is None:
        return "None (did the function forget to return?)"
    t = type(value)
    module = t.__module__
    if module in ("builtins", None):
        return t.__name__
    return f"{module.split('.')[0]}.{t.__qualname__}"


class OutputNormalizer:
    """Turns the values a stage returns into record batches of one schema and
    enforces the declared schema and row-count options.

    ``role`` names the callable in messages: "function", "generator" or
    "__call__".
    """

    def __init__(self, stage: str, declared: pa.Schema | None, role: str = "function") -> None:
        self.stage = stage
        self.declared = declared
        self.role = role
        self.verb = "yield" if role == "generator" else "return"
        #: The schema of the latest output (declared schema, else the last seen).
        self.schema: pa.Schema | None = declared

    def fail(self, message: str) -> SchemaError:
        return SchemaError(f"stage {self.stage}: {message}")

    # -- conversion ---------------------------------------------------------------------

    def __call__(self, value: Any) -> list[pa.RecordBatch]:
        """The batches of one returned/yielded value (a Table gives one per chunk)."""
        if isinstance(value, pa.RecordBatch):
            batches = [value]
            schema = value.schema
        elif isinstance(value, pa.Table):
            batches = value.to_batches()
            schema = value.schema
        elif isinstance(value, Mapping):
            batch = self._from_mapping(value)
            batches, schema = [batch], batch.schema
        elif _is_dataframe(value):
            batch = self._from_pandas(value)
            batches, schema = [batch], batch.schema
        else:
            raise self.fail(
                f"expected the {self.role} to {self.verb} {_RETURN_TYPES}, found {_describe_value(value)}"
            )
        if self.declared is not None:
            batches = self._enforce(batches, schema)
        else:
            self.schema = schema
        return batches

    def _from_mapping(self, value: Mapping[Any, Any]) -> pa.RecordBatch:
        names = list(value.keys())
        for n in names:
            if not isinstance(n, str):
                raise self.fail(f"expected str column names in the returned dict, found {type(n).__name__} {n!r}")
        if self.declared is not None:
            self._check_names(names, "dict")
            names = self.declared.names
            types: list[pa.DataType | None] = [f.type for f in self.declared]
        else:
            types = [None] * len(names)
        arrays = []
        for name, typ in zip(names, types):
            arrays.append(self._to_array(name, value[name], typ))
        lengths = {len(a) for a in arrays}
        if len(lengths) > 1:
            shown = ", ".join(f"{n}: {len(a)}" for n, a in zip(names, arrays))
            raise self.fail(f"expected every returned column to have the same length, found {shown}")
        if self.declared is not None:
            return pa.RecordBatch.from_arrays(arrays, schema=self._relabel_schema(arrays))
        return pa.RecordBatch.from_arrays(arrays, names=names)

    def _to_array(self, name: str, data: Any, typ: pa.DataType | None) -> pa.Array:
        try:
            if isinstance(data, pa.ChunkedArray):
                data = data.combine_chunks()
            if isinstance(data, pa.Array):
                if typ is not None and not data.type.equals(typ):
                    data = data.cast(typ, safe=True)
                return data
            if _is_scalar(data):
                raise self.fail(
                    f"column {name!r}: expected an array-like (numpy array, list, pyarrow array, "
                    f"pandas Series), found {_describe_value(data)}"
                )
            fast = _float_array_without_nan(data, typ)
            if fast is not None:
                return fast
            return pa.array(data, type=typ, from_pandas=True)
        except SchemaError:
            raise
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError, OverflowError) as exc:
            want = f"values convertible to {typ}" if typ is not None else "values pyarrow can convert"
            raise self.fail(f"column {name!r}: expected {want}, found: {exc}") from None

    def _from_pandas(self, df: Any) -> pa.RecordBatch:
        names = [str(c) for c in df.columns]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise self.fail(f"expected unique DataFrame column names, found duplicates {', '.join(dupes)}")
        if self.declared is not None:
            self._check_names(names, "DataFrame")
            arrays = [self._to_array(f.name, df[f.name], f.type) for f in self.declared]
            return pa.RecordBatch.from_arrays(arrays, schema=self._relabel_schema(arrays))
        try:
            batch = pa.RecordBatch.from_pandas(df, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError) as exc:
            raise self.fail(f"expected a DataFrame pyarrow can convert, found: {exc}") from None
        return batch.replace_schema_metadata(None)

    def _check_names(self, names: list[str], what: str) -> None:
        assert self.declared is not None
        want = self.declared.names
        if sorted(names) == sorted(want):
            return
        missing = [n for n in want if n not in names]
        extra = [n for n in names if n not in want]
        details = []
        if missing:
            details.append("missing " + ", ".join(missing))
        if extra:
            details.append("not declared " + ", ".join(extra))
        raise self.fail(
            f"expected the returned {what} to have the declared columns {', '.join(want)}, "
            f"found {', '.join(names) or 'none'} ({'; '.join(details)})"
        )

    def _relabel_schema(self, arrays: list[pa.Array]) -> pa.Schema:
        assert self.declared is not None
        for f, a in zip(self.declared, arrays):
            if not f.nullable and a.null_count:
                raise self.fail(
                    f"column {f.name!r}: expected no nulls (declared not null), found {a.null_count}"
                )
        return self.declared

    # -- enforcement ----------------------------------------------------------------------

    def _enforce(self, batches: list[pa.RecordBatch], schema: pa.Schema) -> list[pa.RecordBatch]:
        declared = self.declared
        assert declared is not None
        if schema is declared or schema.equals(declared):
            for b in batches:
                self._check_nulls(b)
            return batches
        problems = []
        found = {f.name: f for f in schema}
        for f in declared:
            g = found.get(f.name)
            if g is None:
                problems.append(f"{f.name}: expected {f.type}, found no such column")
            elif not g.type.equals(f.type):
                problems.append(f"{f.name}: expected {f.type}, found {g.type}")
        for g in schema:
            if declared.get_field_index(g.name) < 0:
                problems.append(f"{g.name}: expected no such column, found {g.type}")
        if not problems and schema.names != declared.names:
            problems.append(f"column order: expected {', '.join(declared.names)}, found {', '.join(schema.names)}")
        if problems:
            raise self.fail(
                f"expected output schema {format_schema(declared)}, found {format_schema(schema)}: "
                + "; ".join(problems)
            )
        # Same names and types; only nullability or metadata differ.
        out = []
        for b in batches:
            self._check_nulls(b)
            out.append(pa.RecordBatch.from_arrays(b.columns, schema=declared))
        return out

    def _check_nulls(self, batch: pa.RecordBatch) -> None:
        assert self.declared is not None
        for i, f in enumerate(self.declared):
            if not f.nullable:
                nulls = batch.column(i).null_count
                if nulls:
                    raise self.fail(f"column {f.name!r}: expected no nulls (declared not null), found {nulls}")


def _is_dataframe(value: Any) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(value, pd.DataFrame)


def _float_array_without_nan(data: Any, typ: pa.DataType | None) -> pa.Array | None:
    """A 1-d numpy float array with no NaN, as an Arrow array without a copy; else None.

    ``from_pandas=True`` turns NaN into null, and pyarrow pays for that with a scan it runs
    even when there is no NaN (measured: 25 µs for 8,192 float64 values, against 3 µs for
    numpy's own check and 2 µs for the conversion). The result is the same array."""
    np = sys.modules.get("numpy")
    if np is None or type(data) is not np.ndarray or data.ndim != 1 or data.dtype.kind != "f":
        return None
    if typ is not None and not typ.equals(pa.from_numpy_dtype(data.dtype)):
        return None
    if np.isnan(data).any():
        return None
    return pa.array(data)


def _is_scalar(value: Any) -> bool:
    if isinstance(value, (str, bytes, int, float, bool)) or value is None:
        return True
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.generic):
        return True
    return not hasattr(value, "__len__") and not hasattr(value, "__iter__")
