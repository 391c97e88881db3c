"""Put on a worker's PYTHONPATH, makes it a helper that does not announce `input_file`
(PROTOCOL.md section 19): an older or third-party 1.1 worker that speaks `shm` only."""
import isthmus.runtime as _runtime

_capabilities = _runtime.capabilities


def _without_input_file() -> list[str]:
    return [c for c in _capabilities() if c != "input_file"]


_runtime.capabilities = _without_input_file
