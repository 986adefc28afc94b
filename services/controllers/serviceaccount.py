"""The ServiceAccount controller: every active namespace has a ``default`` ServiceAccount.

``sync(namespace)`` creates the accounts in ``ACCOUNTS`` that the namespace
lacks; a namespace being deleted gets none. Deleting ``default`` brings it
back. (Tokens are the security work's business: none are minted here.)
"""

from __future__ import annotations

from typing import Any

from pilothouse.client import APIError
from pilothouse.client.informer import object_of
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.controllers.base import (
    Controller,
    ControllerContext,
    ControllerDescriptor,
)
from pilothouse.services.controllers.replicaset_utils import is_namespace_terminating

__all__ = ["ACCOUNTS", "DESCRIPTOR", "ServiceAccountController"]

ACCOUNTS = ("default",)


class ServiceAccountController(Controller):
    name = "serviceaccount"

    def __init__(self, ctx: ControllerContext, accounts: tuple[str, ...] = ACCOUNTS) -> None:
        super().__init__(ctx)
        self.accounts = accounts
        self.namespaces = ctx.informers.informer_for(core_pb2.Namespace)
        self.serviceaccounts = ctx.informers.informer_for(core_pb2.ServiceAccount)
        self.namespaces.add_event_handler(on_add=self._namespace_changed,
                                          on_update=lambda old, new:
                                          self._namespace_changed(new))
        self.serviceaccounts.add_event_handler(on_delete=self._account_deleted)

    def _namespace_changed(self, ns: core_pb2.Namespace) -> None:
        self.enqueue(ns.metadata.name)

    def _account_deleted(self, obj: Any) -> None:
        sa = object_of(obj)
        if sa.metadata.name in self.accounts:
            self.enqueue(sa.metadata.namespace)

    async def sync(self, key: str) -> None:
        ns = self.namespaces.get(key)
        if ns is None or ns.metadata.HasField("deletionTimestamp") or \
                ns.status.phase == "Terminating":
            return
        for name in self.accounts:
            if self.serviceaccounts.get(name, key) is not None:
                continue
            sa = core_pb2.ServiceAccount()
            sa.metadata.name = name
            sa.metadata.namespace = key
            try:
                await self.client.create(sa)
            except APIError as exc:
                # Exists already (our cache lags), or the namespace is going away.
                if exc.is_already_exists() or exc.is_not_found() or \
                        is_namespace_terminating(exc):
                    continue
                raise


async def start_serviceaccount(ctx: ControllerContext) -> None:
    workers = int(ctx.settings.get("concurrent-serviceaccount-syncs", ctx.workers))  # type: ignore[call-overload]
    controller = ServiceAccountController(ctx)
    ctx.informers.start()
    await controller.run(workers=workers)


DESCRIPTOR = ControllerDescriptor("serviceaccount", start_serviceaccount)
