"""Shared client machinery: typed client, informers, work queues, leader election, events.

Every component (scheduler, controllers, kubelet, proxy, cloud controller) reaches
the apiserver through these; see README.md in this folder.
"""

from pilothouse.client.client import Client, connect
from pilothouse.client.errors import (
    APIConnectionError,
    APIError,
    ClientError,
    is_already_exists,
    is_conflict,
    is_gone,
    is_not_found,
)
from pilothouse.client.events import EventRecorder
from pilothouse.client.informer import (
    DeletedFinalStateUnknown,
    Informer,
    SharedInformerFactory,
    copy_object,
    meta_namespace_key,
    split_key,
)
from pilothouse.client.leaderelection import LeaderElector
from pilothouse.client.transport import (
    DeleteOptions,
    ListOptions,
    ObjectList,
    Transport,
    WatchEvent,
    WatchOptions,
)
from pilothouse.client.workqueue import ShutDown, WorkQueue, run_worker

__all__ = [
    "APIConnectionError",
    "APIError",
    "Client",
    "ClientError",
    "DeleteOptions",
    "DeletedFinalStateUnknown",
    "EventRecorder",
    "Informer",
    "LeaderElector",
    "ListOptions",
    "ObjectList",
    "SharedInformerFactory",
    "ShutDown",
    "Transport",
    "WatchEvent",
    "WatchOptions",
    "WorkQueue",
    "connect",
    "copy_object",
    "is_already_exists",
    "is_conflict",
    "is_gone",
    "is_not_found",
    "meta_namespace_key",
    "run_worker",
    "split_key",
]
