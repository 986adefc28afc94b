"""``Status``: every plugin verdict.

As in Kubernetes, ``None`` means success (Go's nil status): hot paths return
``None`` for a node that fits and allocate nothing. Anything else is a
``Status`` with a code, human-readable reasons and the plugin that produced it.
A plugin never raises to say "no": an exception is a bug, and the framework
turns it into an ``ERROR`` status naming the plugin.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["Code", "Status", "is_success", "status_code"]


class Code(enum.IntEnum):
    """Status codes, with Kubernetes' names and meanings."""

    SUCCESS = 0
    #: An internal error: the pod is retried with back-off.
    ERROR = 1
    #: The pod does not fit on this node now; preemption may help.
    UNSCHEDULABLE = 2
    #: The pod cannot fit on this node and preemption will not help.
    UNSCHEDULABLE_AND_UNRESOLVABLE = 3
    #: Permit: wait before binding.
    WAIT = 4
    #: PreFilter/PreScore: this plugin has nothing to do for this pod; its
    #: Filter/Score is not called in this cycle.
    SKIP = 5
    #: The pod waits for something outside the scheduler (PreEnqueue, Permit).
    PENDING = 6


_NAMES: Final = {
    Code.SUCCESS: "Success",
    Code.ERROR: "Error",
    Code.UNSCHEDULABLE: "Unschedulable",
    Code.UNSCHEDULABLE_AND_UNRESOLVABLE: "UnschedulableAndUnresolvable",
    Code.WAIT: "Wait",
    Code.SKIP: "Skip",
    Code.PENDING: "Pending",
}


class Status:
    """A verdict: code, reasons (each one line a user reads), the failing plugin.

    Statuses for common rejections are shared constants in the plugin modules:
    treat a returned status as immutable (``with_plugin`` copies).
    """

    __slots__ = ("code", "error", "plugin", "reasons")

    def __init__(self, code: Code = Code.SUCCESS, *reasons: str, plugin: str = "",
                 error: BaseException | None = None) -> None:
        self.code = code
        self.reasons: tuple[str, ...] = reasons
        self.plugin = plugin
        self.error = error

    # -- constructors ------------------------------------------------------------------

    @classmethod
    def unschedulable(cls, *reasons: str, plugin: str = "") -> Status:
        return cls(Code.UNSCHEDULABLE, *reasons, plugin=plugin)

    @classmethod
    def unresolvable(cls, *reasons: str, plugin: str = "") -> Status:
        return cls(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, *reasons, plugin=plugin)

    @classmethod
    def as_error(cls, error: BaseException | str, plugin: str = "") -> Status:
        if isinstance(error, BaseException):
            return cls(Code.ERROR, str(error) or type(error).__name__, plugin=plugin,
                       error=error)
        return cls(Code.ERROR, error, plugin=plugin)

    @classmethod
    def skip(cls) -> Status:
        return _SKIP

    # -- predicates --------------------------------------------------------------------

    def is_success(self) -> bool:
        return self.code is Code.SUCCESS

    def is_skip(self) -> bool:
        return self.code is Code.SKIP

    def is_wait(self) -> bool:
        return self.code is Code.WAIT

    def is_rejected(self) -> bool:
        """Unschedulable, unresolvable or pending: the pod does not go forward (not an error)."""
        return self.code in (Code.UNSCHEDULABLE, Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
                             Code.PENDING)

    def is_unschedulable(self) -> bool:
        return self.code in (Code.UNSCHEDULABLE, Code.UNSCHEDULABLE_AND_UNRESOLVABLE)

    @property
    def code_name(self) -> str:
        return _NAMES[self.code]

    def message(self) -> str:
        """The reasons joined as Kubernetes joins them (", ")."""
        return ", ".join(self.reasons)

    def with_plugin(self, plugin: str) -> Status:
        """This status attributed to ``plugin`` (a copy when it names another plugin)."""
        if self.plugin == plugin:
            return self
        return Status(self.code, *self.reasons, plugin=plugin, error=self.error)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Status):
            return NotImplemented
        return self.code == other.code and self.reasons == other.reasons

    def __hash__(self) -> int:
        return hash((self.code, self.reasons))

    def __repr__(self) -> str:
        who = f" {self.plugin}" if self.plugin else ""
        return f"<Status{who} {self.code_name}: {self.message()!r}>"


_SKIP: Final = Status(Code.SKIP)


def is_success(status: Status | None) -> bool:
    """True for ``None`` and for a SUCCESS status."""
    return status is None or status.code is Code.SUCCESS


def status_code(status: Status | None) -> Code:
    return Code.SUCCESS if status is None else status.code
