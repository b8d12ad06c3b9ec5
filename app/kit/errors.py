"""Domain errors. Each carries the HTTP status and the machine-readable code the gateway answers with."""

from __future__ import annotations


class DomainError(Exception):
    status = 400
    code = "bad_request"
    # Several faults at once (a batch's bad rows): the error body's `errors`, each {field, type, message}
    # and maybe `row`. None: the one fault named by `field`.
    details: list[dict] | None = None

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    @property
    def headers(self) -> dict[str, str]:
        return {}


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class SlugTaken(Conflict):
    code = "slug_taken"


class NotReady(Conflict):
    code = "not_ready"

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after else {}


class Unavailable(DomainError):
    """A part the request needs is down for a while (the image store): 503, and when to try again."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Invalid(DomainError):
    """Well-formed input that the domain refuses (422). The same code as a malformed one: a client tells
    them apart by `errors`, never by where in the gateway the check happens to be."""

    status = 422
    code = "validation_error"


class PayloadTooLong(Invalid):
    code = "payload_too_long"


class TooLarge(DomainError):
    """A body larger than the route accepts (the gateway's own limit for every body is in hardening.py)."""

    status = 413
    code = "too_large"


class UnsupportedMediaType(DomainError):
    status = 415
    code = "unsupported_media_type"
