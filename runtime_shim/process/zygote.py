"""The fork server: a small process the shim starts once, that forks on request.

Starting a container used to start a Python interpreter for its supervisor
(imports included, ~100 ms of CPU on a busy machine), and a sandbox ran
``unshare``, ``sh``, ``hostname`` and ``ip`` twice. The zygote has already
imported what the supervisor needs (the standard library, :mod:`.linux`,
:mod:`.netlink`, :mod:`.supervisor`; no gRPC, no protobuf), so each request is
two forks of a small process:

    python -m pilothouse.runtime_shim.process.zygote FD PARENT_PID

``FD`` is the zygote's end of a ``SOCK_SEQPACKET`` socket pair. Each request is
one datagram, a JSON object, carrying one file descriptor: the write end of a
pipe the shim reads the answer from (``ok ...`` or ``error <message>``, then
end of file). Requests:

- ``{"op": "supervise", "dir": CONTAINER_DIR}``: run the container's
  supervisor (:func:`.supervisor.supervise`); it answers ``ok <pid>`` once the
  container process runs, exactly as the standalone supervisor does.
- ``{"op": "sandbox", "netns": PATH|null, "ipc": PATH|null, "uts": PATH|null,
  "hostname": NAME, "net": {...}|null}``: create the namespaces, bind them at
  the given files, set the hostname, bring ``lo`` up and, with ``net``, create
  the pod's veth pair on the bridge and give ``eth0`` its address and default
  route (rtnetlink, :mod:`.netlink`).

Every piece of work happens in a worker forked for it, in a session of its
own; the zygote ignores SIGCHLD, so the kernel reaps workers and the zygote
never waits for one (a double fork, to make supervisors init's children at
once, cost a second fork and a wait per request: under a burst of pod starts
the zygote is the one serial step). A supervisor outlives the zygote and the
shim: it is re-parented to init when the zygote goes. The zygote dies with
the shim (``PR_SET_PDEATHSIG``, and end of file on its socket); the shim
starts a new one when it finds it gone.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import socket
import sys
import traceback
from typing import Any

from pilothouse.runtime_shim.process import linux, netlink, supervisor


def _answer(fd: int, text: str) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, text.encode()[:4000])


def _describe(err: Exception) -> str:
    if isinstance(err, OSError) and err.strerror:  # "mount x on y: Permission denied"
        return err.strerror + (f": {err.filename}" if err.filename else "")
    return str(err)


def make_sandbox(request: dict[str, Any]) -> None:
    """Namespaces bound at their files, hostname, loopback and the pod's veth (if asked)."""
    net = request.get("net")
    host = netlink.Route() if net else None  # opened before unshare: the host's namespace
    paths = {"net": request.get("netns"), "ipc": request.get("ipc"), "uts": request.get("uts")}
    flags = 0
    for key, flag in (("net", linux.CLONE_NEWNET), ("ipc", linux.CLONE_NEWIPC),
                      ("uts", linux.CLONE_NEWUTS)):
        if paths[key]:
            flags |= flag
    if flags:
        linux.unshare(flags)
    if paths["uts"] and request.get("hostname"):
        socket.sethostname(request["hostname"])
    for key, path in paths.items():
        if path:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o444))
            linux.mount(f"/proc/self/ns/{key}", path, None, linux.MS_BIND)
    if not paths["net"]:
        return
    with netlink.Route() as pod:
        pod.set_up(1)  # lo: always index 1 in a new namespace
        if host is None or net is None:
            return
        own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            host.add_veth(net["host_ifname"], "eth0", own, master=net["bridge_index"])
        finally:
            os.close(own)
            host.close()
        eth0 = socket.if_nametoindex("eth0")
        pod.add_address(eth0, net["ip"], net["prefixlen"])
        pod.set_up(eth0)
        pod.add_default_route(net["gateway"], eth0)


def _work(request: dict[str, Any], reply_fd: int) -> int:
    """In the grandchild: do the request, answer on ``reply_fd``; the exit status."""
    if request.get("op") == "supervise":
        return supervisor.run_detached(request["dir"], reply_fd)
    if request.get("op") == "sandbox":
        try:
            make_sandbox(request)
        except Exception as err:
            _answer(reply_fd, f"error {_describe(err)}")
            return 1
        _answer(reply_fd, "ok")
        return 0
    _answer(reply_fd, f"error unknown zygote request {request.get('op')!r}")
    return 1


def _spawn(request: dict[str, Any], reply_fd: int, control: socket.socket) -> None:
    """Fork the worker. One fork and no wait: the zygote ignores SIGCHLD, so the kernel
    reaps its workers, and the zygote is free for the next request at once."""
    if os.fork() != 0:
        return
    code = 1
    try:  # the worker: a session of its own, the signal dispositions of a new process
        control.close()
        os.setsid()
        with contextlib.suppress(OSError):
            linux.set_name(f"ph-{request.get('op', 'worker')}"[:15])
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD,
                    signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        code = _work(request, reply_fd)
    except BaseException:
        traceback.print_exc()
        _answer(reply_fd, f"error zygote worker: {sys.exc_info()[1]}")
    finally:
        os._exit(code)


def serve(control: socket.socket) -> None:
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 65536, 4)
        except InterruptedError:
            continue
        if not message:
            return  # the shim closed its end (or exited)
        reply_fd = fds[0] if fds else -1
        for extra in fds[1:]:
            os.close(extra)
        try:
            request = json.loads(message)
            if reply_fd < 0:
                continue  # nobody to answer: a malformed request from a confused caller
            _spawn(request, reply_fd, control)
        except Exception as err:
            if reply_fd >= 0:
                _answer(reply_fd, f"error zygote: {err}")
        finally:
            if reply_fd >= 0:
                os.close(reply_fd)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or not all(a.isdigit() for a in args):
        print("usage: python -m pilothouse.runtime_shim.process.zygote FD PARENT_PID",
              file=sys.stderr)
        return 2
    control = socket.socket(fileno=int(args[0]))
    linux.die_with_parent()
    if os.getppid() != int(args[1]):
        return 0  # the shim is already gone
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is for the shim
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # workers are reaped by the kernel
    gc.freeze()  # what is imported now stays shared with every worker (no collector writes)
    serve(control)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
