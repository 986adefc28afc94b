"""Errors a backend raises; the servicers turn each into its gRPC status code.

A backend never returns a wrong success: what it cannot do raises
:class:`Unimplemented` with a sentence saying why.
"""

from __future__ import annotations

import grpc


class CRIError(Exception):
    """A failure with a gRPC status code and a message for the CRI client."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(CRIError):
    code = grpc.StatusCode.NOT_FOUND


class InvalidArgument(CRIError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class AlreadyExists(CRIError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(CRIError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unimplemented(CRIError):
    code = grpc.StatusCode.UNIMPLEMENTED


class DeadlineExceeded(CRIError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class RuntimeFailure(CRIError):
    """The runtime tried and failed (a process, a mount, a registry)."""

    code = grpc.StatusCode.UNKNOWN
