"""The optional API key (``KO_STS_API_KEY``), checked the same way for HTTP and gRPC.

Callers send ``Authorization: Bearer <key>`` (an HTTP header, or gRPC metadata ``authorization``),
as BentoML's own clients do with ``token=``. Only a SHA-256 digest of the key is kept, and keys are
compared digest to digest with :func:`hmac.compare_digest`, so neither the comparison's time nor
this object's repr tells anything about the key; the key is never logged.
"""

from __future__ import annotations

import hashlib
import hmac

from serving.errors import Unauthenticated

SCHEME = "bearer"
MISSING = "send the service's API key as 'Authorization: Bearer <key>' (it is set with KO_STS_API_KEY)"


class ApiKey:
    """Checks ``Authorization`` values against one key."""

    def __init__(self, key: str) -> None:
        if not key.strip():
            raise ValueError("KO_STS_API_KEY is empty: unset it to serve without a key, or set a key")
        if not (key.isascii() and key.isprintable()) or " " in key:
            raise ValueError("KO_STS_API_KEY must be printable ASCII without spaces: it travels in a header")
        self._digest = hashlib.sha256(key.encode()).digest()

    def __repr__(self) -> str:
        return "ApiKey(****)"

    def check(self, authorization: str | None) -> None:
        """Raises :class:`~serving.errors.Unauthenticated` unless ``authorization`` is ``Bearer <the key>``."""
        scheme, _, given = (authorization or "").strip().partition(" ")
        if scheme.lower() != SCHEME or not given.strip():
            raise Unauthenticated(f"no API key: {MISSING}")
        if not hmac.compare_digest(hashlib.sha256(given.strip().encode()).digest(), self._digest):
            raise Unauthenticated(f"wrong API key: {MISSING}")
