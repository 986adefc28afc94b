"""Process backend networking: the IPAM files and their index, rtnetlink requests.

The rtnetlink cases run in a network namespace of their own (a forked child that
unshares one), so they touch nothing on the host.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import socket
import subprocess
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pilothouse.runtime_shim.process import linux, netlink
from pilothouse.runtime_shim.process.network import Ipam, NetworkError, link_exists


def test_ipam_hands_out_distinct_addresses_never_the_gateway(tmp_path: Path) -> None:
    ipam = Ipam(tmp_path, ipaddress.IPv4Network("10.9.0.0/29"))
    got = [ipam.allocate(f"sb{i}") for i in range(5)]
    assert len(set(got)) == 5
    assert ipam.gateway == ipaddress.IPv4Address("10.9.0.1")
    assert ipam.gateway not in got
    assert all(ip in ipam.cidr for ip in got)
    assert ipam.allocate("sb0") == got[0]  # one address per owner
    with pytest.raises(NetworkError, match="no free address"):
        ipam.allocate("one-too-many")


def test_ipam_survives_a_restart_and_reuses_released_addresses(tmp_path: Path) -> None:
    cidr = ipaddress.IPv4Network("10.9.0.0/29")
    first = Ipam(tmp_path, cidr)
    a, b = first.allocate("a"), first.allocate("b")
    again = Ipam(tmp_path, cidr)  # a new shim reads the files
    assert (again.lookup("a"), again.lookup("b")) == (a, b)
    assert again.allocate("a") == a
    others = {again.allocate(f"x{i}") for i in range(3)}
    assert a not in others and b not in others
    again.release("a")
    again.release("a")  # idempotent
    assert not (tmp_path / str(a)).exists()
    assert again.lookup("a") is None
    assert again.allocate("late") == a  # the only free one left
    assert (tmp_path / str(a)).read_text() == "late"


def in_new_netns(body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``body`` in a forked child inside a fresh network namespace; its result."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            linux.unshare(linux.CLONE_NEWNET)
            result = body()
        except BaseException:
            result = {"error": traceback.format_exc()}
        os.write(write_end, json.dumps(result).encode())
        os._exit(0)
    os.close(write_end)
    data = b""
    while chunk := os.read(read_end, 65536):
        data += chunk
    os.close(read_end)
    os.waitpid(pid, 0)
    result: dict[str, Any] = json.loads(data)
    assert "error" not in result, result.get("error")
    return result


def _wire() -> dict[str, Any]:
    out: dict[str, Any] = {}
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    with netlink.Route() as route:
        route.set_up(1)
        route.add_veth("vtest0", "vtest1", own)
        index = socket.if_nametoindex("vtest1")
        route.add_address(index, "10.9.0.2", 24)
        route.set_up(index)
        route.add_default_route("10.9.0.1", index)
        try:
            route.add_veth("vtest0", "vtest2", own)
        except netlink.NetlinkError as err:
            out["again"] = [err.errno, str(err)]
        out["links"] = sorted(name for _, name in socket.if_nameindex())
        out["addr"] = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", "vtest1"],
                                     capture_output=True, text=True).stdout
        out["route"] = Path("/proc/self/net/route").read_text()
        out["flags"] = subprocess.run(["ip", "-o", "link", "show", "dev", "vtest0"],
                                      capture_output=True, text=True).stdout
        route.delete_link("vtest0")  # takes its peer with it
        route.delete_link("vtest0")  # already gone: not an error
        out["after"] = sorted(name for _, name in socket.if_nameindex())
    os.close(own)
    return out


def test_rtnetlink_wires_a_veth_pair_address_and_default_route() -> None:
    out = in_new_netns(_wire)
    assert {"lo", "vtest0", "vtest1"} <= set(out["links"])
    assert "inet 10.9.0.2/24" in out["addr"]
    default = [line.split() for line in out["route"].splitlines()[1:]
               if line.split()[1] == "00000000"]
    assert default and default[0][0] == "vtest1"
    assert socket.inet_ntoa(bytes.fromhex(default[0][2])[::-1]) == "10.9.0.1"
    assert "UP" in out["flags"].split(">")[0]  # created up
    assert out["again"][0] == errno.EEXIST and "add veth vtest0" in out["again"][1]
    assert out["after"] == ["lo"]


def test_link_exists_asks_the_callers_namespace_not_sysfs() -> None:
    """Under ``nsenter --net`` (a namespace entered without remounting /sys) sysfs still
    lists the host's links; the shim must see only its own namespace's."""
    name = f"phlx{os.getpid() % 100000}"
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    try:
        assert link_exists(name)
        out = in_new_netns(lambda: {"lo": link_exists("lo"), "host": link_exists(name),
                                    "sysfs": os.path.exists(f"/sys/class/net/{name}"),
                                    "missing": link_exists("phlx-none")})
    finally:
        subprocess.run(["ip", "link", "del", name], check=False)
    assert out == {"lo": True, "host": False, "sysfs": True, "missing": False}
