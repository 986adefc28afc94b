"""Client errors: an ``APIError`` is the server's meta/v1 ``Status``.

Every transport turns a failed request into ``APIError`` (the apiserver
answered, with a code and a reason) or ``APIConnectionError`` (it did not:
refused, reset, timed out). Callers branch on the helpers — ``is_not_found``,
``is_conflict``, ``is_gone``, ``is_already_exists`` — as client-go callers use
``apierrors.IsNotFound``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "APIConnectionError",
    "APIError",
    "ClientError",
    "is_already_exists",
    "is_conflict",
    "is_gone",
    "is_not_found",
]

# HTTP code -> Kubernetes reason, for answers that carry no Status body.
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ClientError(Exception):
    """Base of everything the client raises for a failed call."""


class APIConnectionError(ClientError):
    """The apiserver could not be reached, or the connection broke mid-request."""


@dataclass
class APIError(ClientError):
    """The apiserver refused a request; fields are those of its meta/v1 Status."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)

    def __str__(self) -> str:
        return f"{self.message} ({self.code} {self.reason})" if self.reason else self.message

    @classmethod
    def from_status(cls, status: Any, http_code: int = 0) -> APIError:
        """Build from a Status document (a dict); tolerant of anything else."""
        if not isinstance(status, dict) or status.get("kind") != "Status":
            code = http_code or 500
            text = status if isinstance(status, str) else ""
            return cls(code, _REASONS.get(code, "Unknown"),
                       text.strip()[:500] or f"the server answered {code}")
        code = status.get("code") or http_code or 500
        if not isinstance(code, int):
            code = http_code or 500
        reason = status.get("reason") or _REASONS.get(code, "")
        details = status.get("details") if isinstance(status.get("details"), dict) else {}
        return cls(code, str(reason), str(status.get("message", "")), dict(details or {}))

    @property
    def retry_after_seconds(self) -> int:
        value = self.details.get("retryAfterSeconds", 0)
        return value if isinstance(value, int) else 0

    def is_not_found(self) -> bool:
        return self.reason == "NotFound" or (self.code == 404 and not self.reason)

    def is_conflict(self) -> bool:
        return self.reason == "Conflict" or (self.code == 409 and self.reason != "AlreadyExists")

    def is_gone(self) -> bool:
        """410: the requested resourceVersion is compacted away (watch must relist)."""
        return self.code == 410 or self.reason in ("Gone", "Expired")

    def is_already_exists(self) -> bool:
        return self.reason == "AlreadyExists"


def is_not_found(exc: BaseException) -> bool:
    return isinstance(exc, APIError) and exc.is_not_found()


def is_conflict(exc: BaseException) -> bool:
    return isinstance(exc, APIError) and exc.is_conflict()


def is_gone(exc: BaseException) -> bool:
    return isinstance(exc, APIError) and exc.is_gone()


def is_already_exists(exc: BaseException) -> bool:
    return isinstance(exc, APIError) and exc.is_already_exists()
