"""Per-kind strategies; importing this package registers every one of them."""

from pilothouse.services.apiserver.strategies import (  # noqa: F401
    apiextensions,
    apps,
    batch,
    core,
    discovery,
    leases,
    pods,
    policy,
    rbac,
    scheduling,
    services,
)
