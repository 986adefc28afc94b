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
from pilothouse.client.transport import (
    DeleteOptions,
    ListOptions,
    ObjectList,
    Transport,
    WatchEvent,
    WatchOptions,
)

__all__ = [
    "APIConnectionError",
    "APIError",
    "Client",
    "ClientError",
    "DeleteOptions",
    "ListOptions",
    "ObjectList",
    "Transport",
    "WatchEvent",
    "WatchOptions",
    "connect",
    "is_already_exists",
    "is_conflict",
    "is_gone",
    "is_not_found",
]
