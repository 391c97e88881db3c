"""Resolving FILE.py:NAME and package.module:NAME references."""

from __future__ import annotations

import sys

import pytest

from isthmus.errors import LoaderError
from isthmus.loader import load_module, parse_ref, resolve


def test_parse_ref() -> None:
    assert parse_ref("score.py:predict") == ("score.py", "predict", True)
    assert parse_ref("dir/score.py") == ("dir/score.py", None, True)
    assert parse_ref("pkg.mod:Model") == ("pkg.mod", "Model", False)
    for bad in ("", "a b:c", "score.py:1x"):
        with pytest.raises(LoaderError):
            parse_ref(bad)


def test_file_function_class_generator(write_udf) -> None:  # type: ignore[no-untyped-def]
    path = write_udf("ldr_basic.py", """
        from isthmus import udf
        calls = []

        @udf(name="renamed")
        def f(batch):
            return batch

        def plain(batch):
            return batch

        class Model:
            def setup(self):
                calls.append("setup")
            def __call__(self, batch):
                return batch

        def gen(batches):
            for b in batches:
                yield b
    """)
    by_udf_name = resolve(f"{path}:renamed")
    assert by_udf_name.spec.kind == "function" and by_udf_name.spec.registered
    plain = resolve(f"{path}:plain")
    assert plain.spec.kind == "function" and not plain.spec.registered
    model = resolve(f"{path}:Model")
    module = load_module(path)
    assert model.spec.kind == "class" and module.calls == ["setup"]
    assert model.instance is model.target and type(model.instance).__name__ == "Model"
    assert resolve(f"{path}:gen").spec.kind == "generator"
    # The module is imported once.
    assert resolve(f"{path}:plain").spec.obj is plain.spec.obj
    # The file's directory is importable for its neighbours.
    assert sys.path[0] == str(__import__("os").path.dirname(path)) or str(__import__("os").path.dirname(path)) in sys.path


def test_single_udf_needs_no_name(write_udf) -> None:  # type: ignore[no-untyped-def]
    path = write_udf("ldr_single.py", """
        from isthmus import udf
        @udf
        def only(batch):
            return batch
        def helper():
            pass
    """)
    assert resolve(path).spec.name == "only"


def test_missing_file() -> None:
    with pytest.raises(LoaderError) as info:
        resolve("no_such_dir/absent.py:f")
    assert "UDF file not found: expected no_such_dir/absent.py at" in str(info.value)


def test_missing_module() -> None:
    with pytest.raises(LoaderError) as info:
        resolve("no_such_pkg_xyz.mod:f")
    msg = str(info.value)
    assert "expected module 'no_such_pkg_xyz.mod' on sys.path" in msg
    assert "no module 'no_such_pkg_xyz'" in msg


def test_missing_name_lists_what_exists(write_udf) -> None:  # type: ignore[no-untyped-def]
    path = write_udf("ldr_names.py", """
        from isthmus import udf
        @udf
        def predict(batch):
            return batch
        def clean(batch):
            return batch
        THRESHOLD = 3
    """)
    with pytest.raises(LoaderError) as info:
        resolve(f"{path}:predcit")
    msg = str(info.value)
    assert "no UDF named 'predcit' in ldr_names.py" in msg
    assert "UDFs predict" in msg and "functions/classes clean" in msg
    assert "did you mean predict" in msg
    with pytest.raises(LoaderError, match="ldr_names.py:THRESHOLD: expected a function, a class or a generator function, found int"):
        resolve(f"{path}:THRESHOLD")


def test_two_udfs_need_a_name(write_udf) -> None:  # type: ignore[no-untyped-def]
    path = write_udf("ldr_two.py", """
        from isthmus import udf
        @udf
        def a(batch): return batch
        @udf
        def b(batch): return batch
    """)
    with pytest.raises(LoaderError, match="registers 2 UDFs, so NAME is needed.*UDFs a, b"):
        resolve(path)


def test_import_error_carries_user_traceback(write_udf) -> None:  # type: ignore[no-untyped-def]
    path = write_udf("ldr_broken.py", """
        import os
        x = 1
        raise RuntimeError("cannot load model weights")
    """)
    with pytest.raises(LoaderError) as info:
        resolve(f"{path}:f")
    err = info.value
    assert "importing ldr_broken.py failed: RuntimeError: cannot load model weights" in str(err)
    assert err.exc_type == "RuntimeError"
    assert 'raise RuntimeError("cannot load model weights")' in err.traceback
    assert "isthmus/loader.py" not in err.traceback and "importlib" not in err.traceback


def test_missing_dependency_suggests_pip(write_udf) -> None:  # type: ignore[no-untyped-def]
    path = write_udf("ldr_dep.py", "import definitely_not_installed_pkg\n")
    with pytest.raises(LoaderError) as info:
        resolve(f"{path}:f")
    assert "-m pip install definitely_not_installed_pkg" in str(info.value)


def test_duplicate_udf_in_file_fails_at_import(write_udf) -> None:  # type: ignore[no-untyped-def]
    path = write_udf("ldr_dup.py", """
        from isthmus import udf
        @udf(name="p")
        def one(batch): return batch
        @udf(name="p")
        def two(batch): return batch
    """)
    with pytest.raises(LoaderError, match="duplicate UDF name 'p'"):
        resolve(f"{path}:p")


def test_setup_failure(write_udf) -> None:  # type: ignore[no-untyped-def]
    path = write_udf("ldr_setup.py", """
        class Model:
            def setup(self):
                raise FileNotFoundError("model.pkl")
            def __call__(self, batch):
                return batch
    """)
    with pytest.raises(LoaderError) as info:
        resolve(f"{path}:Model")
    assert "Model.setup() failed: FileNotFoundError: model.pkl" in str(info.value)
    assert "raise FileNotFoundError" in info.value.traceback


def test_dotted_module_reference(write_udf, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path = write_udf("ldr_pkgmod.py", """
        def f(batch):
            return batch
    """)
    monkeypatch.syspath_prepend(str(__import__("os").path.dirname(path)))
    loaded = resolve("ldr_pkgmod:f")
    assert loaded.spec.name == "f"
