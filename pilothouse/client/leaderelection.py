"""Leader election over a coordination.k8s.io/v1 Lease, as client-go's leaderelection.

Each candidate runs ``LeaderElector.run``. It tries every ``retry_period``
(plus jitter) to take the Lease, which it may do when the Lease does not
exist, has no holder (released), or has not changed for ``lease_duration``
as measured on the candidate's own monotonic clock since it last saw the
Lease change (never by comparing the holder's timestamps: clocks differ).
Every write is conditional on the Lease's resourceVersion, so two
candidates can never both succeed.

The leader renews every ``retry_period``; if it cannot renew within
``renew_deadline`` it has lost the lease: ``on_started_leading``'s task is
cancelled, ``on_stopped_leading`` runs and ``run`` returns (a component
should then exit, as Kubernetes' do). When ``run`` is cancelled while
leading, the Lease is released (holder cleared, duration 1 s, as client-go's
``ReleaseOnCancel``) so another candidate takes over at its next try.

Defaults are Kubernetes' (15 s / 10 s / 2 s).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pilothouse.api.timeutil import micro_time_from_proto, micro_time_to_proto
from pilothouse.client.client import Client
from pilothouse.client.clock import AsyncClock, real_clock
from pilothouse.client.errors import APIError, ClientError
from pilothouse.gen.k8s.coordination.v1 import coordination_pb2

__all__ = ["JITTER_FACTOR", "LeaderElectionRecord", "LeaderElector"]

log = logging.getLogger("pilothouse.client.leaderelection")

JITTER_FACTOR = 1.2


@dataclass(frozen=True, slots=True)
class LeaderElectionRecord:
    """What the Lease says, in the terms of client-go's LeaderElectionRecord."""

    holder_identity: str = ""
    lease_duration_seconds: int = 0
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    leader_transitions: int = 0

    @classmethod
    def from_lease(cls, lease: coordination_pb2.Lease) -> LeaderElectionRecord:
        spec = lease.spec
        return cls(
            holder_identity=spec.holderIdentity,
            lease_duration_seconds=spec.leaseDurationSeconds,
            acquire_time=micro_time_from_proto(spec.acquireTime)
            if spec.HasField("acquireTime") else None,
            renew_time=micro_time_from_proto(spec.renewTime)
            if spec.HasField("renewTime") else None,
            leader_transitions=spec.leaseTransitions,
        )

    def write_to(self, lease: coordination_pb2.Lease) -> None:
        spec = lease.spec
        spec.holderIdentity = self.holder_identity
        spec.leaseDurationSeconds = self.lease_duration_seconds
        spec.leaseTransitions = self.leader_transitions
        if self.acquire_time is not None:
            spec.acquireTime.CopyFrom(micro_time_to_proto(self.acquire_time))
        if self.renew_time is not None:
            spec.renewTime.CopyFrom(micro_time_to_proto(self.renew_time))


class LeaderElector:
    """One candidate for the Lease ``lock_namespace/lock_name`` (see the module docstring)."""

    def __init__(self, client: Client, lock_namespace: str, lock_name: str, identity: str, *,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0,
                 retry_period: float = 2.0, clock: AsyncClock | None = None,
                 release_on_cancel: bool = True,
                 rand: Callable[[], float] = random.random) -> None:
        if not identity:
            raise ValueError("leader election requires a non-empty identity")
        if not lock_name or not lock_namespace:
            raise ValueError("leader election requires the Lease's namespace and name")
        if lease_duration <= renew_deadline:
            raise ValueError("leaseDuration must be greater than renewDeadline")
        if renew_deadline <= JITTER_FACTOR * retry_period:
            raise ValueError("renewDeadline must be greater than retryPeriod*JitterFactor")
        if retry_period < 0 or lease_duration < 1:
            raise ValueError("retryPeriod must not be negative and leaseDuration at least 1s")
        self.client = client
        self.lock_namespace = lock_namespace
        self.lock_name = lock_name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock or real_clock()
        self.release_on_cancel = release_on_cancel
        self._rand = rand
        self._lease: coordination_pb2.Lease | None = None  # as last read or written
        self._observed = LeaderElectionRecord()
        self._observed_time = 0.0
        self._reported_leader = ""
        self._on_new_leader: Callable[[str], None] | None = None

    # -- state ------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self._observed.holder_identity == self.identity

    def get_leader(self) -> str:
        """The holder this candidate last observed ("" if none)."""
        return self._observed.holder_identity

    @property
    def observed_record(self) -> LeaderElectionRecord:
        return self._observed

    # -- run ----------------------------------------------------------------------

    async def run(self, on_started_leading: Callable[[], Coroutine[Any, Any, None]],
                  on_stopped_leading: Callable[[], None] | None = None,
                  on_new_leader: Callable[[str], None] | None = None) -> None:
        """Campaign, lead, and return when leadership is lost.

        ``on_started_leading`` runs as a task while this candidate leads and is
        cancelled when it stops; if it raises, the lease is released and the
        exception propagates. ``on_stopped_leading`` runs once after leading
        ends; ``on_new_leader(identity)`` whenever the observed holder changes.
        """
        self._on_new_leader = on_new_leader
        leading: asyncio.Task[None] | None = None
        try:
            await self._acquire()
            leading = asyncio.create_task(on_started_leading(), name=f"leading:{self.identity}")
            renewing = asyncio.create_task(self._renew_loop(), name=f"renew:{self.identity}")
            try:
                done, _ = await asyncio.wait([leading, renewing],
                                             return_when=asyncio.FIRST_COMPLETED)
                if leading in done and leading.exception() is None:
                    await renewing  # the work ended; keep the lease until cancelled or lost
                elif leading in done:
                    leading.result()  # raises
            finally:
                renewing.cancel()
                await asyncio.gather(renewing, return_exceptions=True)
        finally:
            if leading is not None:
                if not leading.done():
                    leading.cancel()
                await asyncio.gather(leading, return_exceptions=True)
            if self.release_on_cancel and self.is_leader():
                await self.release()
            if leading is not None and on_stopped_leading is not None:
                on_stopped_leading()

    async def _acquire(self) -> None:
        log.info("%s: trying to acquire lease %s/%s", self.identity, self.lock_namespace,
                 self.lock_name)
        while not await self.try_acquire_or_renew():
            await self.clock.sleep(self.retry_period * (1 + self._rand() * JITTER_FACTOR))
        log.info("%s: acquired lease %s/%s", self.identity, self.lock_namespace, self.lock_name)

    async def _renew_loop(self) -> None:
        while True:
            await self.clock.sleep(self.retry_period)
            deadline = self.clock.monotonic() + self.renew_deadline
            while True:
                try:
                    async with asyncio.timeout(self.renew_deadline):
                        renewed = await self.try_acquire_or_renew()
                except TimeoutError:
                    renewed = False
                if renewed:
                    break
                remaining = deadline - self.clock.monotonic()
                if remaining <= 0:
                    log.warning("%s: failed to renew lease %s/%s within %ss", self.identity,
                                self.lock_namespace, self.lock_name, self.renew_deadline)
                    return
                await self.clock.sleep(min(self.retry_period, remaining))

    # -- one attempt ------------------------------------------------------------------

    async def try_acquire_or_renew(self) -> bool:
        """One attempt to take or keep the Lease; True if this candidate holds it now."""
        now = self.clock.now()
        wanted = LeaderElectionRecord(self.identity, max(1, round(self.lease_duration)),
                                      now, now, 0)
        # Fast path: the leader renews what it last wrote, without reading first.
        if self.is_leader() and self._lease is not None:
            record = LeaderElectionRecord(
                self.identity, wanted.lease_duration_seconds, self._observed.acquire_time, now,
                self._observed.leader_transitions)
            if await self._write(self._lease, record):
                return True
        try:
            lease = await self.client.get(coordination_pb2.Lease, self.lock_name,
                                          namespace=self.lock_namespace)
        except APIError as exc:
            if not exc.is_not_found():
                log.warning("%s: error reading lease: %s", self.identity, exc)
                return False
            return await self._create(wanted)
        except ClientError as exc:
            log.warning("%s: error reading lease: %s", self.identity, exc)
            return False
        self._lease = lease
        old = LeaderElectionRecord.from_lease(lease)
        if old != self._observed:
            self._observe(old)
        if (old.holder_identity and old.holder_identity != self.identity
                and self._observed_time + old.lease_duration_seconds > self.clock.monotonic()):
            return False  # someone else holds a lease that has not expired
        if old.holder_identity == self.identity:
            record = LeaderElectionRecord(self.identity, wanted.lease_duration_seconds,
                                          old.acquire_time, now, old.leader_transitions)
        else:
            record = LeaderElectionRecord(self.identity, wanted.lease_duration_seconds, now, now,
                                          old.leader_transitions + 1)
        return await self._write(lease, record)

    async def _create(self, record: LeaderElectionRecord) -> bool:
        lease = coordination_pb2.Lease()
        lease.metadata.name = self.lock_name
        lease.metadata.namespace = self.lock_namespace
        record.write_to(lease)
        try:
            self._lease = await self.client.create(lease)
        except ClientError as exc:
            log.info("%s: could not create lease: %s", self.identity, exc)
            return False
        self._observe(record)
        return True

    async def _write(self, lease: coordination_pb2.Lease, record: LeaderElectionRecord) -> bool:
        """Update the Lease conditionally on its resourceVersion."""
        new = coordination_pb2.Lease()
        new.CopyFrom(lease)
        new.spec.Clear()
        record.write_to(new)
        try:
            self._lease = await self.client.update(new)
        except ClientError as exc:
            log.info("%s: could not update lease: %s", self.identity, exc)
            return False
        self._observe(record)
        return True

    def _observe(self, record: LeaderElectionRecord) -> None:
        self._observed = record
        self._observed_time = self.clock.monotonic()
        holder = record.holder_identity
        if holder != self._reported_leader:
            self._reported_leader = holder
            if holder and self._on_new_leader is not None:
                self._on_new_leader(holder)

    async def release(self) -> bool:
        """Give the Lease up (holder cleared, duration 1 s) if this candidate holds it."""
        if not self.is_leader() or self._lease is None:
            return False
        now = self.clock.now()
        record = LeaderElectionRecord("", 1, now, now, self._observed.leader_transitions)
        released = await self._write(self._lease, record)
        if released:
            log.info("%s: released lease %s/%s", self.identity, self.lock_namespace,
                     self.lock_name)
        return released
