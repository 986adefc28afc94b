"""API errors: every failure a client sees is a meta/v1 ``Status``.

``StatusError`` carries the HTTP code, the Kubernetes reason and the details
(kind, name, causes); the REST frontend writes it as a ``Status`` body and the
gRPC frontend maps it to a status code with the same body attached. The
constructors mirror k8s.io/apimachinery/pkg/api/errors so messages read the
same as Kubernetes' ("pods \\"web\\" not found").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Cause:
    """One cause of an Invalid (or BadRequest) error: a field path and what is wrong."""

    reason: str  # FieldValueInvalid, FieldValueRequired, FieldValueDuplicate, ...
    message: str
    field: str = ""

    def to_dict(self) -> dict[str, str]:
        out = {"reason": self.reason, "message": self.message}
        if self.field:
            out["field"] = self.field
        return out


@dataclass
class StatusError(Exception):
    code: int
    reason: str
    message: str
    kind: str = ""
    name: str = ""
    group: str = ""
    causes: list[Cause] = field(default_factory=list)
    retry_after_seconds: int = 0
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)

    def __str__(self) -> str:
        return self.message

    def to_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        details: dict[str, Any] = {}
        if self.name:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = [c.to_dict() for c in self.causes]
        if self.retry_after_seconds:
            details["retryAfterSeconds"] = self.retry_after_seconds
        if details:
            status["details"] = details
        if not status["reason"]:
            del status["reason"]
        return status


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, name: str, group: str = "") -> StatusError:
    return StatusError(404, "NotFound", f'{_qualified(resource, group)} "{name}" not found',
                       kind=resource, name=name, group=group)


def already_exists(resource: str, name: str, group: str = "") -> StatusError:
    return StatusError(409, "AlreadyExists",
                       f'{_qualified(resource, group)} "{name}" already exists',
                       kind=resource, name=name, group=group)


def conflict(resource: str, name: str, why: str, group: str = "") -> StatusError:
    return StatusError(
        409, "Conflict",
        f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {why}',
        kind=resource, name=name, group=group,
    )


OBJECT_MODIFIED = "the object has been modified; please apply your changes to the latest " \
                  "version and try again"


def invalid(kind: str, name: str, causes: list[Cause], group: str = "") -> StatusError:
    text = ", ".join(
        f"{c.field}: {c.message}" if c.field else c.message for c in causes
    ) or "invalid object"
    qualified = f"{kind}.{group}" if group else kind
    return StatusError(422, "Invalid", f'{qualified} "{name}" is invalid: {text}',
                       kind=kind, name=name, group=group, causes=causes)


def bad_request(message: str, causes: list[Cause] | None = None) -> StatusError:
    return StatusError(400, "BadRequest", message, causes=causes or [])


def gone(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def method_not_supported(resource: str, verb: str) -> StatusError:
    return StatusError(405, "MethodNotAllowed",
                       f"{verb} is not supported on resources of kind \"{resource}\"",
                       kind=resource)


def not_acceptable(accept: str) -> StatusError:
    return StatusError(406, "NotAcceptable",
                       f"the server was unable to respond with a content type that the client "
                       f"supports ({accept!r}); supported: application/json, "
                       f"application/yaml, Table")


def unsupported_media_type(content_type: str) -> StatusError:
    return StatusError(415, "UnsupportedMediaType",
                       f"the body of the request was in an unknown format - accepted media "
                       f"types include: application/json, application/yaml, "
                       f"application/json-patch+json, application/merge-patch+json, "
                       f"application/strategic-merge-patch+json (got {content_type!r})")


def too_large(limit: int) -> StatusError:
    return StatusError(413, "RequestEntityTooLarge",
                       f"the request body is larger than the limit of {limit} bytes")


def forbidden(resource: str, name: str, why: str, group: str = "") -> StatusError:
    what = f'{_qualified(resource, group)} "{name}"' if name else _qualified(resource, group)
    return StatusError(403, "Forbidden", f"{what} is forbidden: {why}",
                       kind=resource, name=name, group=group)


def internal(message: str) -> StatusError:
    return StatusError(500, "InternalError", f"Internal error occurred: {message}")


def timeout(message: str, retry_after: int = 1) -> StatusError:
    return StatusError(504, "Timeout", message, retry_after_seconds=retry_after)


def too_many_requests(message: str, retry_after: int = 1) -> StatusError:
    return StatusError(429, "TooManyRequests", message, retry_after_seconds=retry_after)


def service_unavailable(message: str) -> StatusError:
    return StatusError(503, "ServiceUnavailable", message)
