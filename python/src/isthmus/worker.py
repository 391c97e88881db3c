"""``isthmus-worker`` / ``python -m isthmus.worker``: the worker process entry point.

Usage::

    isthmus-worker --connect ENDPOINT --token HEX --slot N   # normally started by the host
    isthmus-worker --version                                 # {"helper": ..., "protocol": ...}
    isthmus-worker --list score.py                           # the UDFs a module defines, as JSON

The host starts workers with ``ISTHMUS_ENDPOINT``, ``ISTHMUS_TOKEN`` and
``ISTHMUS_SLOT`` in the environment (the flags override them). Optional:
``ISTHMUS_THREADS`` (BLAS/OpenMP threads, default 1), ``ISTHMUS_MEMORY_LIMIT``
(address-space limit in bytes, ``K``/``M``/``G``/``Ki``/``Mi``/``Gi`` suffixes
allowed), ``ISTHMUS_HOST_PID`` (exit at once if the parent is not that
process), ``ISTHMUS_HANDSHAKE_MS`` (how long to wait for OPEN, default 30000),
``ISTHMUS_PDEATHSIG`` (``0`` disables the Linux parent-death signal),
``ISTHMUS_CURVE_SERVERKEY`` / ``ISTHMUS_CURVE_PUBLICKEY`` /
``ISTHMUS_CURVE_SECRETKEY`` (Z85 CurveZMQ keys; required for ``tcp://``).

This module imports only the standard library at the top: thread pinning must
happen before numpy (which pyarrow imports) is loaded, and a missing pyzmq or
pyarrow must turn into one readable line, not a traceback. Nothing is written
to stdout except ``--version`` and ``--list`` output.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import signal
import sys
import threading
import time
from typing import Any, NoReturn

from ._version import HELPER_VERSION, PROTOCOL_VERSION

__all__ = ["main", "pin_threads", "parse_size", "list_udfs"]

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)

_PIP_NAMES = {"zmq": "pyzmq", "pyarrow": "pyarrow"}

EXIT_USAGE = 2
EXIT_SETUP = 3
EXIT_PARENT_DIED = 70


def _say(message: str) -> None:
    sys.stderr.write(f"isthmus-worker: {message}\n")
    sys.stderr.flush()


def _fail(message: str, code: int) -> NoReturn:
    _say(message)
    raise SystemExit(code)


def pin_threads(environ: dict[str, str] | None = None) -> str:
    """Sets the BLAS/OpenMP thread variables to ``ISTHMUS_THREADS`` (default 1)
    unless the user set them already. Must run before numpy is imported."""
    env = os.environ if environ is None else environ
    threads = env.get("ISTHMUS_THREADS", "").strip() or "1"
    if not threads.isdigit() or int(threads) < 1:
        _fail(f"expected ISTHMUS_THREADS to be a positive integer, found {threads!r}", EXIT_USAGE)
    for var in THREAD_VARIABLES:
        if not env.get(var):
            env[var] = threads
    return threads


_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,
    "ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4,
}


def parse_size(text: str) -> int:
    """``<n>[K|M|G|T|Ki|Mi|Gi|Ti]`` to bytes; a bare number means bytes."""
    raw = text.strip()
    digits = raw.rstrip("bBkKmMgGtTiI")
    unit = raw[len(digits):].lower()
    if unit.endswith("b") and unit != "b":
        unit = unit[:-1]
    try:
        value = float(digits)
    except ValueError:
        raise ValueError(f"expected a size like 4Gi or 4000000000, found {text!r}") from None
    if unit not in _SIZE_UNITS or value <= 0:
        raise ValueError(f"expected a size like 4Gi or 4000000000, found {text!r}")
    return int(value * _SIZE_UNITS[unit])


#: Address space a worker needs beyond what it holds after its imports: the runtime, the
#: UDF's module and the first batches.
_MEMORY_HEADROOM = 64 << 20


def _address_space_bytes() -> int:
    """This process's address space (VmSize), or 0 where /proc does not say."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _apply_memory_limit() -> None:
    text = os.environ.get("ISTHMUS_MEMORY_LIMIT", "").strip()
    if not text:
        return
    try:
        limit = parse_size(text)
    except ValueError as exc:
        _fail(f"ISTHMUS_MEMORY_LIMIT: {exc}", EXIT_USAGE)
    # The limit caps address space, and the interpreter with pyarrow and numpy already holds
    # hundreds of MiB of it: a limit below that plus room to import the rest would fail the
    # next allocation anywhere (even compiling a module), with a traceback that names nothing.
    in_use = _address_space_bytes()
    if in_use and limit < in_use + _MEMORY_HEADROOM:
        _fail(
            f"ISTHMUS_MEMORY_LIMIT={text} (--worker-memory-limit): expected at least "
            f"{(in_use + _MEMORY_HEADROOM + (1 << 20) - 1) >> 20} MiB, found {limit} bytes; the worker already uses "
            f"{in_use >> 20} MiB of address space after importing its libraries",
            EXIT_USAGE,
        )
    try:
        import resource

        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY and limit > hard:
            limit = hard
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError) as exc:
        _say(f"could not apply ISTHMUS_MEMORY_LIMIT={text}: {exc}")


def _watch_parent() -> None:
    """Exit when the process that started us goes away: the Linux parent-death
    signal, plus a thread that polls ``getppid()`` every 0.2 s (every platform,
    and the case where the parent died before prctl ran)."""
    parent = os.getppid()
    host_pid = os.environ.get("ISTHMUS_HOST_PID", "").strip()
    if sys.platform.startswith("linux") and os.environ.get("ISTHMUS_PDEATHSIG", "1") != "0":
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if host_pid.isdigit():
        try:
            os.kill(int(host_pid), 0)
        except ProcessLookupError:
            os._exit(EXIT_PARENT_DIED)  # the host died before we got here
        except OSError:
            pass  # exists, owned by someone else

    def watch() -> None:
        while True:
            time.sleep(0.2)
            if os.getppid() != parent:
                os._exit(EXIT_PARENT_DIED)

    threading.Thread(target=watch, name="isthmus-parent-watch", daemon=True).start()


def _import_dependencies() -> None:
    for module in ("zmq", "pyarrow"):
        try:
            __import__(module)
        except ModuleNotFoundError as exc:
            package = _PIP_NAMES[module]
            if exc.name is None or exc.name.split(".")[0] == module:
                exe = sys.executable
                _fail(
                    f"missing Python package '{package}' in {exe}; install it with: {exe} -m pip install {package}",
                    EXIT_SETUP,
                )
            _fail(f"importing {package} failed in {sys.executable}: {exc}", EXIT_SETUP)
        except ImportError as exc:
            _fail(f"importing {_PIP_NAMES[module]} failed in {sys.executable}: {exc}", EXIT_SETUP)


def _z85_key(var: str) -> bytes | None:
    value = os.environ.get(var, "").strip()
    if not value:
        return None
    if len(value) != 40:
        _fail(f"expected {var} to be a 40-character Z85 CurveZMQ key, found {len(value)} characters", EXIT_USAGE)
    return value.encode("ascii")


# -- --list ---------------------------------------------------------------------------------


def list_udfs(location: str) -> dict[str, Any]:
    """The JSON document printed by ``--list``."""
    from .loader import load_module, module_udfs

    # User code may print while it is imported; keep stdout for the JSON only.
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        module = load_module(location)
        specs = module_udfs(module)
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
    return {
        "version": 1,
        "helper": HELPER_VERSION,
        "protocol": PROTOCOL_VERSION,
        "module": location,
        "udfs": [s.describe() for s in specs],
    }


# -- main -----------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="isthmus-worker",
        description="Isthmus Python worker: connects to an Isthmus host and runs UDF stages.",
    )
    p.add_argument("--connect", metavar="ENDPOINT", help="host endpoint (default: $ISTHMUS_ENDPOINT)")
    p.add_argument("--token", metavar="HEX", help="per-run token, 32 hex digits (default: $ISTHMUS_TOKEN)")
    p.add_argument("--slot", metavar="N", help="worker slot number (default: $ISTHMUS_SLOT)")
    p.add_argument("--server-key", metavar="KEY",
                   help="the host's CurveZMQ public key (Z85, 40 characters), for tcp:// endpoints "
                        "(default: $ISTHMUS_CURVE_SERVERKEY)")
    p.add_argument("--insecure", action="store_true",
                   help="allow a plaintext tcp:// endpoint (only for hosts started with --insecure)")
    p.add_argument("--version", action="store_true", help="print helper and protocol versions as JSON and exit")
    p.add_argument("--list", metavar="FILE", help="print the UDFs FILE.py (or a module) defines as JSON and exit")
    return p


#: Options whose value may begin with "-": a Z85 key does about once in 85 (the alphabet has
#: "-"), and argparse would take ``--server-key -NC}...`` for a missing value.
_DASH_VALUES = ("--server-key",)


def _join_dash_values(argv: list[str]) -> list[str]:
    """``--server-key VALUE`` as ``--server-key=VALUE``, so that a value starting with "-"
    stays the option's value."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in _DASH_VALUES and i + 1 < len(argv):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``isthmus-worker`` and ``python -m isthmus.worker``."""
    args = _parser().parse_args(_join_dash_values(sys.argv[1:] if argv is None else list(argv)))

    if args.version:
        sys.stdout.write(json.dumps({"helper": HELPER_VERSION, "protocol": PROTOCOL_VERSION}) + "\n")
        return

    if args.list:
        _import_dependencies()
        from .errors import IsthmusError

        try:
            doc = list_udfs(args.list)
        except IsthmusError as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            _fail(message, EXIT_USAGE)
        sys.stdout.write(json.dumps(doc) + "\n")
        return

    # Worker mode. Crash reports first: a segfault in the UDF prints the Python stack.
    faulthandler.enable(file=sys.stderr, all_threads=True)
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True, chain=False)
    # The host owns shutdown: Ctrl-C reaches the whole process group, but a worker
    # keeps serving until the host sends CLOSE (or goes away).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)

    endpoint = args.connect or os.environ.get("ISTHMUS_ENDPOINT", "")
    if args.server_key:
        os.environ["ISTHMUS_CURVE_SERVERKEY"] = args.server_key
    token = args.token or os.environ.get("ISTHMUS_TOKEN", "")
    if not token and endpoint.startswith("tcp://"):
        # Over tcp:// the CurveZMQ handshake authenticates the connection; the run token
        # only guards the local ipc:// socket, so a remote worker sends an all-zero one.
        token = "0" * 32
    slot_text = args.slot if args.slot is not None else os.environ.get("ISTHMUS_SLOT", "0")
    if not endpoint:
        _fail("expected --connect ENDPOINT or ISTHMUS_ENDPOINT, found neither (workers are started by the isthmus host)", EXIT_USAGE)
    if len(token) != 32 or any(c not in "0123456789abcdefABCDEF" for c in token):
        _fail(f"expected --token or ISTHMUS_TOKEN to be 32 hex digits, found {len(token)} characters", EXIT_USAGE)
    try:
        slot = int(slot_text)
        if slot < 0:
            raise ValueError
    except ValueError:
        _fail(f"expected --slot or ISTHMUS_SLOT to be a non-negative integer, found {slot_text!r}", EXIT_USAGE)
    handshake_text = os.environ.get("ISTHMUS_HANDSHAKE_MS", "30000").strip()
    if not handshake_text.isdigit() or int(handshake_text) <= 0:
        _fail(f"expected ISTHMUS_HANDSHAKE_MS to be a positive integer, found {handshake_text!r}", EXIT_USAGE)
    server_key = _z85_key("ISTHMUS_CURVE_SERVERKEY")
    if endpoint.startswith("tcp://") and server_key is None and not args.insecure:
        _fail(
            f"expected ISTHMUS_CURVE_SERVERKEY for the tcp:// endpoint {endpoint}, found none "
            f"(tcp connections must use CurveZMQ; local hosts use ipc://)",
            EXIT_USAGE,
        )

    pin_threads()  # before numpy is imported (pyarrow imports numpy)
    _watch_parent()
    _import_dependencies()
    _apply_memory_limit()

    from .runtime import Worker, WorkerConfig

    config = WorkerConfig(
        endpoint=endpoint,
        token=token.lower(),
        slot=slot,
        handshake_ms=int(handshake_text),
        curve_server_key=server_key,
        curve_public_key=_z85_key("ISTHMUS_CURVE_PUBLICKEY"),
        curve_secret_key=_z85_key("ISTHMUS_CURVE_SECRETKEY"),
    )
    try:
        code = Worker(config).run()
    except Exception:
        import traceback

        _say("internal error (a bug in the isthmus helper):")
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    raise SystemExit(code)


if __name__ == "__main__":
    main()
