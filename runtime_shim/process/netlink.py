"""Just enough rtnetlink to wire a pod: veth pairs, link flags, addresses, routes.

The process backend used to run ``ip`` several times per sandbox; these are the
same requests made over a ``NETLINK_ROUTE`` socket, a few hundred bytes each.
A netlink socket belongs to the network namespace it was opened in, so a
process that opens one, then ``unshare(CLONE_NEWNET)`` and opens another, can
configure both sides of a pod's veth pair without entering anything again.

Standard library only (the zygote imports it and must start fast).
"""

from __future__ import annotations

import errno
import os
import socket
import struct

RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 17, 20, 24
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLMSG_ERROR = 2
IFF_UP = 0x1
IFLA_IFNAME, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_FD = 3, 10, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_OIF, RTA_GATEWAY = 4, 5
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RT_SCOPE_HOST, RTN_UNICAST = 254, 3, 0, 254, 1
_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBi")
_RTMSG = struct.Struct("=BBBBBBBBI")


class NetlinkError(OSError):
    pass


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _name(kind: int, name: str) -> bytes:
    return _attr(kind, name.encode() + b"\0")


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, struct.pack("=I", value))


def _ifinfo(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change)


class Route:
    """A NETLINK_ROUTE socket in the network namespace of the thread that opens it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  socket.NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Route:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, kind: int, body: bytes, flags: int = 0, what: str = "") -> None:
        """Send one request and wait for its acknowledgement; raise NetlinkError on refusal."""
        self.seq += 1
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind,
                                NLM_F_REQUEST | NLM_F_ACK | flags, self.seq, 0)
        self.sock.send(header + body)
        while True:
            data = self.sock.recv(65536)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, mtype, _, seq, _ = _NLMSGHDR.unpack_from(data, offset)
                if mtype == NLMSG_ERROR and seq == self.seq:
                    code = -struct.unpack_from("=i", data, offset + _NLMSGHDR.size)[0]
                    if code:
                        raise NetlinkError(code, f"{what}: {os.strerror(code)}")
                    return
                offset += max(length, _NLMSGHDR.size) + (-length % 4)

    # -- links ---------------------------------------------------------------------
    def add_veth(self, name: str, peer: str, peer_netns_fd: int, *, master: int = 0,
                 up: bool = True) -> None:
        """``name`` here (on bridge ``master`` if given), ``peer`` in the namespace of the fd."""
        peer_info = _ifinfo() + _name(IFLA_IFNAME, peer) + _u32(IFLA_NET_NS_FD, peer_netns_fd)
        linkinfo = _attr(IFLA_INFO_KIND, b"veth") + _attr(
            IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer_info))
        body = (_ifinfo(flags=IFF_UP if up else 0, change=IFF_UP if up else 0)
                + _name(IFLA_IFNAME, name) + _attr(IFLA_LINKINFO, linkinfo))
        if master:
            body += _u32(IFLA_MASTER, master)
        self.request(RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL, f"add veth {name}")

    def set_up(self, index: int) -> None:
        self.request(RTM_NEWLINK, _ifinfo(index, IFF_UP, IFF_UP), what=f"link {index} up")

    def delete_link(self, name: str) -> None:
        """Delete the link ``name``; a link that is already gone is not an error."""
        try:
            self.request(RTM_DELLINK, _ifinfo() + _name(IFLA_IFNAME, name),
                         what=f"delete link {name}")
        except NetlinkError as err:
            if err.errno not in (errno.ENODEV, errno.ENOENT):
                raise

    # -- addresses and routes --------------------------------------------------------
    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        raw = socket.inet_pton(socket.AF_INET, address)
        body = (_IFADDRMSG.pack(socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, index)
                + _attr(IFA_LOCAL, raw) + _attr(IFA_ADDRESS, raw))
        self.request(RTM_NEWADDR, body, NLM_F_CREATE | NLM_F_EXCL,
                     f"add address {address}/{prefixlen}")

    def add_default_route(self, gateway: str, index: int) -> None:
        body = (_RTMSG.pack(socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT,
                            RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
                + _attr(RTA_GATEWAY, socket.inet_pton(socket.AF_INET, gateway))
                + _u32(RTA_OIF, index))
        self.request(RTM_NEWROUTE, body, NLM_F_CREATE | NLM_F_EXCL,
                     f"add default route via {gateway}")
