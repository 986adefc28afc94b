"""In-memory range allocators for Service cluster IPs and node ports.

Both implement the ``Allocator`` protocol of ``strategy.py``. State is not
persisted: the registry re-seeds an allocator at start from the stored Services
(``mark_used``), as Kubernetes' repair controllers rebuild their bitmaps.

Free values are handed out by scanning from a rotating offset, so a value just
released is not reused at once (Kubernetes picks at random for the same reason:
a stale client still pointing at an old IP should not hit a new Service).
As Kubernetes' static subranges do, the scan starts above a low band of the
range, so values users pick by hand there (``10.96.0.10`` for cluster DNS)
stay free as long as the upper band has room.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterable


class AllocationError(ValueError):
    """A value that cannot be allocated; the message is Kubernetes' wording."""


class _Range:
    """Integers [first, first+size) with a used set and a rotating scan start."""

    def __init__(self, first: int, size: int, reserved: frozenset[int] = frozenset(),
                 static_band: int = 0) -> None:
        if size <= 0:
            raise ValueError("an allocation range must hold at least one value")
        self.first = first
        self.size = size
        self.reserved = reserved  # only taken when asked for by value
        self.used: set[int] = set()
        self._next = static_band if static_band < size else 0
        self._lock = threading.Lock()

    def contains(self, value: int) -> bool:
        return self.first <= value < self.first + self.size

    def take(self, value: int) -> bool:
        with self._lock:
            if value in self.used:
                return False
            self.used.add(value)
            return True

    def take_any(self) -> int | None:
        with self._lock:
            for step in range(self.size):
                offset = (self._next + step) % self.size
                value = self.first + offset
                if value not in self.used and value not in self.reserved:
                    self.used.add(value)
                    self._next = (offset + 1) % self.size
                    return value
            return None

    def free(self, value: int) -> None:
        with self._lock:
            self.used.discard(value)


class IPRangeAllocator:
    """Cluster IPs from a CIDR (``10.96.0.0/12``).

    The network address (and, for IPv4, the broadcast address) is never handed
    out; the first usable address (``10.96.0.1``) is reserved for the
    ``kubernetes`` Service: it is only given to a request that names it.
    """

    def __init__(self, cidr: str) -> None:
        try:
            self.network = ipaddress.ip_network(cidr, strict=False)
        except ValueError as exc:
            raise ValueError(f"invalid service CIDR {cidr!r}: {exc}") from None
        self.cidr = str(self.network)
        base = int(self.network.network_address)
        size = self.network.num_addresses
        usable = size - (2 if self.network.version == 4 else 1)
        if usable < 2:
            raise ValueError(f"service CIDR {cidr!r} is too small")
        self._reserved = base + 1
        band = min(max(16, usable // 16), 256)
        self._range = _Range(base + 1, usable, frozenset({base + 1}), band)

    @property
    def first_address(self) -> str:
        """The address of the ``kubernetes`` Service."""
        return str(ipaddress.ip_address(self._reserved))

    def _parse(self, requested: str) -> int:
        try:
            ip = ipaddress.ip_address(requested)
        except ValueError:
            raise AllocationError(f"failed to allocate IP {requested}: "
                                  f"{requested!r} is not a valid IP address") from None
        value = int(ip)
        if ip.version != self.network.version or not self._range.contains(value):
            raise AllocationError(
                f"failed to allocate IP {requested}: the provided IP ({requested}) is not in the "
                f"valid range. The range of valid IPs is {self.cidr}")
        return value

    def allocate(self, requested: str = "") -> str:
        if requested:
            value = self._parse(requested)
            if not self._range.take(value):
                raise AllocationError(
                    f"failed to allocate IP {requested}: provided IP is already allocated")
            return str(ipaddress.ip_address(value))
        taken = self._range.take_any()
        if taken is None:
            raise AllocationError("failed to allocate a serviceIP: range is full")
        return str(ipaddress.ip_address(taken))

    def release(self, value: str) -> None:
        try:
            number = int(ipaddress.ip_address(value))
        except ValueError:
            return
        self._range.free(number)

    def mark_used(self, values: Iterable[str]) -> None:
        """Record values already held by stored objects (values outside the range are
        ignored: a range may shrink across restarts)."""
        for value in values:
            try:
                number = int(ipaddress.ip_address(value))
            except ValueError:
                continue
            if self._range.contains(number):
                self._range.take(number)

    def used_count(self) -> int:
        return len(self._range.used)


class PortRangeAllocator:
    """Node ports from an inclusive range (``30000-32767``)."""

    def __init__(self, port_range: str = "30000-32767") -> None:
        first, sep, last = port_range.partition("-")
        try:
            lo, hi = int(first), int(last if sep else first)
        except ValueError:
            raise ValueError(f"invalid port range {port_range!r}: want FIRST-LAST") from None
        if not 0 < lo <= hi <= 65535:
            raise ValueError(f"invalid port range {port_range!r}")
        self.port_range = f"{lo}-{hi}"
        size = hi - lo + 1
        self._range = _Range(lo, size, static_band=min(max(16, size // 32), 128))

    def allocate(self, requested: str = "") -> str:
        if requested:
            try:
                port = int(requested)
            except ValueError:
                raise AllocationError(f"invalid port {requested!r}") from None
            if not self._range.contains(port):
                raise AllocationError(
                    "provided port is not in the valid range. The range of valid ports is "
                    f"{self.port_range}")
            if not self._range.take(port):
                raise AllocationError("provided port is already allocated")
            return str(port)
        value = self._range.take_any()
        if value is None:
            raise AllocationError("range is full")
        return str(value)

    def release(self, value: str) -> None:
        try:
            self._range.free(int(value))
        except ValueError:
            return

    def mark_used(self, values: Iterable[str]) -> None:
        for value in values:
            try:
                port = int(value)
            except ValueError:
                continue
            if self._range.contains(port):
                self._range.take(port)

    def used_count(self) -> int:
        return len(self._range.used)


# The brief's name for the generic one; both classes satisfy the Allocator protocol.
RangeAllocator = IPRangeAllocator | PortRangeAllocator


def default_allocators(service_cidr: str = "10.96.0.0/12",
                       node_port_range: str = "30000-32767") -> dict[str, object]:
    """The allocators a ``StrategyContext`` needs, keyed as the Service strategy looks them up."""
    return {"service-ip": IPRangeAllocator(service_cidr),
            "node-port": PortRangeAllocator(node_port_range)}
