"""Version numbers of the helper package and of the wire protocol it speaks."""

from __future__ import annotations

__all__ = ["HELPER_VERSION", "PROTOCOL_MAJOR", "PROTOCOL_MINOR", "PROTOCOL_VERSION"]

#: Version of the ``isthmus`` Python package.
HELPER_VERSION = "0.1.0"
#: Major version of the bridge protocol; peers with another major cannot talk.
PROTOCOL_MAJOR = 1
#: Minor version of the bridge protocol; minors of one major interoperate.
PROTOCOL_MINOR = 1
#: ``"MAJOR.MINOR"`` as it appears in HELLO and ``--version``.
PROTOCOL_VERSION = f"{PROTOCOL_MAJOR}.{PROTOCOL_MINOR}"
