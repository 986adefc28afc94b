"""Per-kind strategies; importing this package registers every one of them."""

from pilothouse.services.apiserver.strategies import pods, services  # noqa: F401
