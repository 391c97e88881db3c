"""Isthmus Python helper: run ``@udf`` functions as map stages of an Isthmus pipeline.

Mark a function, class or generator function with :func:`udf`; the Isthmus host
starts ``isthmus-worker`` processes that load it and feed it Arrow record
batches. :mod:`isthmus.testing` runs a UDF through the real worker and protocol
from Python, for tests and notebooks.

Importing this package is cheap: it loads neither pyarrow nor pyzmq.
"""

from __future__ import annotations

from ._version import HELPER_VERSION as __version__
from ._version import PROTOCOL_VERSION
from .errors import IsthmusError, RowError, SchemaError, UDFDefinitionError, UDFError, WorkerError
from .udf import udf

__all__ = [
    "udf",
    "UDFError",
    "RowError",
    "SchemaError",
    "WorkerError",
    "UDFDefinitionError",
    "IsthmusError",
    "__version__",
    "PROTOCOL_VERSION",
]
