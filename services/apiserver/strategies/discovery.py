"""discovery.k8s.io/v1 EndpointSlices."""

from __future__ import annotations

import ipaddress
from typing import Final

from google.protobuf.message import Message

from pilothouse.gen.k8s.discovery.v1 import discovery_pb2
from pilothouse.services.apiserver.errors import Cause
from pilothouse.services.apiserver.strategies._common import KindStrategy
from pilothouse.services.apiserver.strategy import StrategyContext, register_strategy
from pilothouse.services.apiserver.validation import (
    duplicate,
    each,
    immutable,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_valid_port_num,
    not_supported,
    required,
    too_many,
)

ADDRESS_TYPES: Final = ("FQDN", "IPv4", "IPv6")
PROTOCOLS: Final = ("SCTP", "TCP", "UDP")
MAX_ADDRESSES: Final = 100
MAX_ENDPOINTS: Final = 1000
MAX_PORTS: Final = 20000


def _address_errors(address: str, address_type: str) -> list[str]:
    if address_type == "FQDN":
        return is_dns1123_subdomain(address)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return ["must be a valid IP address"]
    want = 4 if address_type == "IPv4" else 6
    if ip.version != want:
        return [f"must be an {address_type} address"]
    return []


@register_strategy("discovery.k8s.io", "endpointslices")
class EndpointSliceStrategy(KindStrategy):
    def validate(self, obj: Message, ctx: StrategyContext) -> list[Cause]:
        assert isinstance(obj, discovery_pb2.EndpointSlice)
        causes: list[Cause] = []
        kind = obj.addressType
        if not kind:
            causes.append(required("addressType"))
        elif kind not in ADDRESS_TYPES:
            causes.append(not_supported("addressType", kind, ADDRESS_TYPES))
        if len(obj.endpoints) > MAX_ENDPOINTS:
            causes.append(too_many("endpoints", len(obj.endpoints), MAX_ENDPOINTS))
        for i, endpoint in enumerate(obj.endpoints):
            path = f"endpoints[{i}]"
            if not endpoint.addresses:
                causes.append(required(f"{path}.addresses",
                                       "must contain at least 1 address"))
            elif len(endpoint.addresses) > MAX_ADDRESSES:
                causes.append(too_many(f"{path}.addresses", len(endpoint.addresses),
                                       MAX_ADDRESSES))
            if kind in ADDRESS_TYPES:
                for j, address in enumerate(endpoint.addresses):
                    causes.extend(each(f"{path}.addresses[{j}]", address,
                                       _address_errors(address, kind)))
            if endpoint.hostname:
                causes.extend(each(f"{path}.hostname", endpoint.hostname,
                                   is_dns1123_label(endpoint.hostname)))
            if endpoint.nodeName:
                causes.extend(each(f"{path}.nodeName", endpoint.nodeName,
                                   is_dns1123_subdomain(endpoint.nodeName)))
        names: set[str] = set()
        for i, port in enumerate(obj.ports):
            path = f"ports[{i}]"
            if port.name:
                causes.extend(each(f"{path}.name", port.name, is_dns1123_label(port.name)))
            if port.name in names:
                causes.append(duplicate(f"{path}.name", port.name))
            names.add(port.name)
            if port.protocol and port.protocol not in PROTOCOLS:
                causes.append(not_supported(f"{path}.protocol", port.protocol, PROTOCOLS))
            if port.HasField("port"):
                causes.extend(each(f"{path}.port", port.port, is_valid_port_num(port.port)))
        if len(obj.ports) > MAX_PORTS:
            causes.append(too_many("ports", len(obj.ports), MAX_PORTS))
        return causes

    def validate_update(self, new: Message, old: Message, ctx: StrategyContext) -> list[Cause]:
        assert isinstance(new, discovery_pb2.EndpointSlice)
        assert isinstance(old, discovery_pb2.EndpointSlice)
        causes = self.validate(new, ctx)
        if new.addressType != old.addressType:
            causes.append(immutable("addressType", new.addressType))
        return causes

