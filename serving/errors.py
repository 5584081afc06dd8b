"""Errors a caller can cause or meet, and the one table that maps each to HTTP and gRPC.

Every protocol adapter (the BentoML HTTP service, the gRPC server) raises or translates these
and nothing else, so a failure means the same on both.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ErrorKind(Enum):
    """What went wrong, as a client sees it."""

    MALFORMED = "malformed"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    INVALID_INPUT = "invalid_input"
    TOO_LARGE = "too_large"
    OVERLOADED = "overloaded"
    QUEUE_TIMEOUT = "queue_timeout"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    UNAUTHENTICATED = "unauthenticated"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


@dataclass(frozen=True)
class Status:
    """How one kind of error is answered on each protocol."""

    http: int
    grpc: str  # name of a grpc.StatusCode member
    retry: bool  # whether a client may safely retry it (with backoff)


ERROR_TABLE: dict[ErrorKind, Status] = {
    ErrorKind.MALFORMED: Status(http=400, grpc="INVALID_ARGUMENT", retry=False),
    ErrorKind.UNSUPPORTED_MEDIA_TYPE: Status(http=415, grpc="INVALID_ARGUMENT", retry=False),
    ErrorKind.INVALID_INPUT: Status(http=422, grpc="INVALID_ARGUMENT", retry=False),
    ErrorKind.TOO_LARGE: Status(http=413, grpc="INVALID_ARGUMENT", retry=False),
    ErrorKind.OVERLOADED: Status(http=429, grpc="RESOURCE_EXHAUSTED", retry=False),
    ErrorKind.QUEUE_TIMEOUT: Status(http=503, grpc="UNAVAILABLE", retry=True),
    ErrorKind.DEADLINE_EXCEEDED: Status(http=504, grpc="DEADLINE_EXCEEDED", retry=False),
    ErrorKind.UNAUTHENTICATED: Status(http=401, grpc="UNAUTHENTICATED", retry=False),
    ErrorKind.UNAVAILABLE: Status(http=503, grpc="UNAVAILABLE", retry=True),
    ErrorKind.INTERNAL: Status(http=500, grpc="INTERNAL", retry=False),
}


CALLER_ERRORS = frozenset(
    {
        ErrorKind.MALFORMED,
        ErrorKind.UNSUPPORTED_MEDIA_TYPE,
        ErrorKind.INVALID_INPUT,
        ErrorKind.TOO_LARGE,
        ErrorKind.UNAUTHENTICATED,
    }
)
"""Kinds caused by the request itself: each refusal is logged as one line (never with the request's text)."""


class ServiceError(Exception):
    """A failure with a kind, a message that says what to do, and optionally when to retry."""

    kind: ErrorKind = ErrorKind.INTERNAL

    def __init__(self, message: str, retry_after_s: float | None = None, log_message: str | None = None):
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s
        self.log_message = log_message or message  # the message without anything the caller wrote

    @property
    def status(self) -> Status:
        """The HTTP status and gRPC code for this error."""
        return ERROR_TABLE[self.kind]


class Malformed(ServiceError):
    """The body cannot be read: not UTF-8, not JSON, or nested too deeply."""

    kind = ErrorKind.MALFORMED


class UnsupportedMediaType(ServiceError):
    """The body is not sent as JSON (``Content-Type``)."""

    kind = ErrorKind.UNSUPPORTED_MEDIA_TYPE


class InvalidInput(ServiceError):
    """The request breaks an input rule; the message names the field and the rule."""

    kind = ErrorKind.INVALID_INPUT


class TooLarge(ServiceError):
    """The request holds more than the service accepts at once."""

    kind = ErrorKind.TOO_LARGE


class Overloaded(ServiceError):
    """The queue is full: the service refuses new work instead of queueing without bound."""

    kind = ErrorKind.OVERLOADED


class QueueTimeout(ServiceError):
    """The request waited in the queue longer than the service's refusal deadline."""

    kind = ErrorKind.QUEUE_TIMEOUT


class DeadlineExceeded(ServiceError):
    """The caller's own deadline passed before the work started; the work was dropped."""

    kind = ErrorKind.DEADLINE_EXCEEDED


class Unauthenticated(ServiceError):
    """The service requires an API key and the request had none, or a wrong one."""

    kind = ErrorKind.UNAUTHENTICATED


class Unavailable(ServiceError):
    """The service cannot score now (starting, stopping)."""

    kind = ErrorKind.UNAVAILABLE


def error_of(kind: ErrorKind, message: str, retry_after_s: float | None = None) -> ServiceError:
    """The error of ``kind`` with its message, e.g. as another process reported it."""
    classes = {cls.kind: cls for cls in ServiceError.__subclasses__()}
    return classes.get(kind, ServiceError)(message, retry_after_s=retry_after_s)
