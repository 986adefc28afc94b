"""The per-container supervisor (like containerd-shim or conmon).

The shim's zygote (:mod:`.zygote`) forks it (:func:`run_detached`), in a session
of its own, so it outlives the shim that asked for it and is re-parented to
init when the zygote goes. As a command of its own (debugging)::

    python -m pilothouse.runtime_shim.process.supervisor CONTAINER_DIR --ready-fd N

it forks once more and the first process exits at once. Either way it then

1. enters a new PID namespace (or the pod's), and forks the container's
   process, which joins its cgroups and the sandbox's network/IPC/UTS
   namespaces, gets a mount namespace with an overlay of the image rootfs as
   ``/`` (pivot_root), ``/proc``, ``/dev``, ``/sys`` and the CRI mounts, drops
   to its user and execs the command (without root: no namespaces and no
   mounts, the image's own executable, looked up inside the image rootfs with
   its symlinks resolved there, run in the image's working directory);
2. reports ``ok <pid>`` (or ``error <message>``) on the ready pipe and writes
   ``state.json`` (pids and start time);
3. copies the process's stdout/stderr into the CRI log file (re-opened on
   SIGUSR1, for ReopenContainerLog);
4. when the process exits, writes ``exit.json`` (exit code, 128+signal for a
   signal, OOM kill from the memory cgroup's counter, finish time) and exits.

Standard library only, and nothing from the rest of pilothouse except the
two small pure helpers, so the zygote that forks it stays small. The spec it runs is
``CONTAINER_DIR/spec.json``, written by the process backend.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import selectors
import signal
import sys
import time
import traceback
from typing import Any

from pilothouse.runtime_shim import logs
from pilothouse.runtime_shim.process import linux

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _write_json(path: str, doc: dict[str, Any]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


def _proc_start_time(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


# -- inside the container's process, before exec ----------------------------------
def _mount_dev(root: str) -> None:
    dev = os.path.join(root, "dev")
    os.makedirs(dev, exist_ok=True)
    linux.mount("tmpfs", dev, "tmpfs", linux.MS_NOSUID, "mode=755,size=65536k")
    for name in ("null", "zero", "full", "random", "urandom", "tty"):
        target = os.path.join(dev, name)
        open(target, "w").close()
        linux.mount(f"/dev/{name}", target, None, linux.MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, os.path.join(dev, name))
    os.makedirs(os.path.join(dev, "pts"))
    with contextlib.suppress(OSError):
        linux.mount("devpts", os.path.join(dev, "pts"), "devpts",
                    linux.MS_NOSUID | linux.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620")
        os.symlink("pts/ptmx", os.path.join(dev, "ptmx"))
    os.makedirs(os.path.join(dev, "shm"))
    linux.mount("shm", os.path.join(dev, "shm"), "tmpfs",
                linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC, "mode=1777,size=65536k")
    os.makedirs(os.path.join(dev, "mqueue"))


def _mount_cgroups(root: str, dirs: dict[str, str]) -> None:
    """The container's own cgroups, read-only, where runc puts them (/sys/fs/cgroup)."""
    if not dirs:
        return
    base = os.path.join(root, "sys", "fs", "cgroup")
    flags = linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY
    if "" in dirs:  # cgroup v2: one hierarchy
        linux.mount(dirs[""], base, None, linux.MS_BIND)
        linux.mount(None, base, None, flags)
        return
    linux.mount("tmpfs", base, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC,
                "mode=755")
    for controller, directory in dirs.items():
        target = os.path.join(base, controller)
        os.makedirs(target, exist_ok=True)
        linux.mount(directory, target, None, linux.MS_BIND)
        linux.mount(None, target, None, flags)
    linux.mount(None, base, None, linux.MS_REMOUNT | linux.MS_RDONLY | linux.MS_NOSUID
                | linux.MS_NODEV | linux.MS_NOEXEC)


def _bind(source: str, root: str, target: str, readonly: bool) -> None:
    dest = linux.resolve_in_root(root, target)
    if os.path.isdir(source):
        os.makedirs(dest, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if not os.path.exists(dest):
            open(dest, "a").close()
    linux.mount(source, dest, None, linux.MS_BIND | linux.MS_REC)
    if readonly:
        linux.mount(None, dest, None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY)


def _enter_rootfs(spec: dict[str, Any]) -> None:
    linux.unshare(linux.CLONE_NEWNS)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
    root = spec["merged"]
    if spec.get("lower"):
        options = f"lowerdir={spec['lower']},upperdir={spec['upper']},workdir={spec['work']}"
        linux.mount("overlay", root, "overlay", 0, options)
    else:  # a copied rootfs: make it a mount point for pivot_root
        linux.mount(root, root, None, linux.MS_BIND | linux.MS_REC)
    proc = os.path.join(root, "proc")
    os.makedirs(proc, exist_ok=True)
    linux.mount("proc", proc, "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
    sys_dir = os.path.join(root, "sys")
    os.makedirs(sys_dir, exist_ok=True)
    try:
        linux.mount("sysfs", sys_dir, "sysfs",
                    linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC | linux.MS_RDONLY)
    except OSError:  # host network: sysfs of the host's netns, read-only bind
        linux.mount("/sys", sys_dir, None, linux.MS_BIND | linux.MS_REC)
        linux.mount(None, sys_dir, None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY)
    _mount_cgroups(root, spec.get("cgroup_dirs") or {})
    _mount_dev(root)
    for m in spec.get("mounts", []):
        _bind(m["source"], root, m["target"], m.get("readonly", False))
    cwd = linux.resolve_in_root(root, spec["cwd"])
    os.makedirs(cwd, exist_ok=True)
    if spec.get("readonly_rootfs"):
        linux.mount(None, root, None, linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY)
    os.chdir(root)
    try:
        linux.pivot_root(".", ".")
        linux.umount(".", linux.MNT_DETACH)
    except OSError:
        os.chroot(".")
    os.chdir("/")


def _container_process(spec: dict[str, Any], out_w: int, err_w: int, report_w: int) -> None:
    """The forked child: set up and exec; on failure write why to ``report_w``."""
    try:
        os.setsid()
        # O_RDWR: the container never sees end-of-file between two attaches
        stdin_fd = os.open(spec["stdin_fifo"], os.O_RDWR) if spec.get("stdin_fifo") else -1
        for path in spec.get("cgroup_procs", []):
            with open(path, "w") as f:
                f.write("0")
        ns = spec.get("namespaces", {})
        for key, flag in (("ipc", linux.CLONE_NEWIPC), ("uts", linux.CLONE_NEWUTS),
                          ("net", linux.CLONE_NEWNET)):
            if ns.get(key):
                linux.setns(ns[key], flag)
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in spec["env"])
        argv = spec["argv"]
        if spec.get("isolated"):
            _enter_rootfs(spec)
            os.chdir(spec["cwd"])
            executable = argv[0]
        else:  # no mount namespace: the image's files, seen from the host
            rootfs = spec.get("host_cwd", "/")
            cwd = linux.resolve_in_root(rootfs, spec["cwd"])
            os.chdir(cwd if os.path.isdir(cwd) else rootfs)
            executable = _find_in_root(rootfs, argv[0], env.get("PATH", DEFAULT_PATH))
        os.dup2(stdin_fd if stdin_fd >= 0 else os.open("/dev/null", os.O_RDONLY), 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        # the container must not inherit the supervisor's pipes (or it would hold them open)
        os.closerange(3, report_w)
        os.closerange(report_w + 1, 65536)
        if spec.get("uid", 0) != 0 or spec.get("gid", 0) != 0 or spec.get("groups"):
            os.setgroups(spec.get("groups", []))
            os.setgid(spec.get("gid", 0))
            os.setuid(spec.get("uid", 0))
        if spec.get("no_new_privs"):
            linux.no_new_privs()
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        if spec.get("isolated"):
            os.execvpe(executable, argv, env)
        os.execve(executable, argv, env)
    except BaseException as err:  # report and die; never return into the supervisor
        try:
            if isinstance(err, FileNotFoundError) and err.filename in (None, spec["argv"][0]):
                message = f"exec: {spec['argv'][0]!r}: executable file not found in $PATH"
            elif isinstance(err, OSError):
                message = f"{err.strerror or err}" + (f": {err.filename}" if err.filename
                                                       else "")
            else:
                message = f"{type(err).__name__}: {err}"
            os.write(report_w, message.encode()[:4000])
        finally:
            os._exit(127)


def _find_in_root(rootfs: str, name: str, path: str) -> str:
    """The host path of the image's executable ``name``, looked up along ``path`` as if
    ``rootfs`` were ``/`` (symlinks included), for containers run without a mount
    namespace. Raises FileNotFoundError naming ``name`` when the image has none."""
    candidates = [name] if "/" in name else [os.path.join(d or "/", name)
                                             for d in path.split(":")]
    for candidate in candidates:
        host = linux.resolve_in_root(rootfs, candidate if candidate.startswith("/")
                                     else os.path.join("/", candidate))
        if os.path.isfile(host) and os.access(host, os.X_OK):
            return host
    raise FileNotFoundError(errno.ENOENT, "not found", name)


# -- the supervisor ---------------------------------------------------------------
class LogWriter:
    def __init__(self, path: str) -> None:
        self.path = path
        self.file: Any = None
        self.reopen()

    def reopen(self) -> None:
        if not self.path:
            return
        old = self.file
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - swapped on reopen
        if old is not None:
            old.close()

    def write(self, records: list[bytes]) -> None:
        if self.file is not None and records:
            with contextlib.suppress(OSError):
                self.file.write(b"".join(records))


def _oom_count(spec: dict[str, Any]) -> int:
    path = spec.get("oom_events")
    if not path:
        return 0
    with contextlib.suppress(OSError, ValueError), open(path) as f:
        for line in f:
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    return 0


def supervise(directory: str, ready_fd: int) -> int:
    with open(os.path.join(directory, "spec.json")) as f:
        spec = json.load(f)
    for ignored in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(ignored, signal.SIG_IGN)
    log = LogWriter(spec.get("log_path", ""))
    # ReopenContainerLog: Python runs the handler between bytecodes of the main loop, so
    # the file is never swapped in the middle of a write (select() is retried after it).
    signal.signal(signal.SIGUSR1, lambda *_: log.reopen())
    oom_before = _oom_count(spec)
    ns = spec.get("namespaces", {})
    if ns.get("pid") == "new":
        linux.unshare(linux.CLONE_NEWPID)
    elif ns.get("pid"):
        linux.setns(ns["pid"], linux.CLONE_NEWPID)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(out_r)
        os.close(err_r)
        os.close(report_r)
        _container_process(spec, out_w, err_w, report_w)
    os.close(out_w)
    os.close(err_w)
    os.close(report_w)
    failure = b""
    while chunk := os.read(report_r, 4096):
        failure += chunk
    os.close(report_r)
    started_at = time.time_ns()
    if failure:
        os.waitpid(pid, 0)
        message = failure.decode(errors="replace")
        _write_json(os.path.join(directory, "exit.json"), {
            "exit_code": 128, "finished_at": time.time_ns(), "reason": "StartError",
            "message": message, "start_failed": True})
        os.write(ready_fd, f"error {message}".encode())
        os.close(ready_fd)
        return 1
    _write_json(os.path.join(directory, "state.json"), {
        "pid": pid, "pid_start_time": _proc_start_time(pid), "started_at": started_at,
        "supervisor_pid": os.getpid(), "supervisor_start_time": _proc_start_time(os.getpid()),
    })
    os.write(ready_fd, f"ok {pid}".encode())
    os.close(ready_fd)

    pidfd = os.pidfd_open(pid)
    splitters = {out_r: logs.LineSplitter("stdout"), err_r: logs.LineSplitter("stderr")}
    sel = selectors.DefaultSelector()
    for fd in splitters:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    sel.register(pidfd, selectors.EVENT_READ)
    exited = False
    while splitters and not exited:
        try:
            ready = sel.select(timeout=None)
        except InterruptedError:
            ready = []
        for key, _ in ready:
            if key.fd == pidfd:
                exited = True
                continue
            _pump(key.fd, splitters, sel, log)
    # the process is gone (or closed its output): drain what is buffered, then reap
    for fd in list(splitters):
        _pump(fd, splitters, sel, log, drain=True)
    _, status = os.waitpid(pid, 0)
    finished_at = time.time_ns()
    if os.WIFSIGNALED(status):
        code, sig = 128 + os.WTERMSIG(status), os.WTERMSIG(status)
    else:
        code, sig = os.WEXITSTATUS(status), 0
    oom = sig == signal.SIGKILL and _oom_count(spec) > oom_before
    reason = "OOMKilled" if oom else ("Completed" if code == 0 else "Error")
    _write_json(os.path.join(directory, "exit.json"), {
        "exit_code": code, "signal": sig, "finished_at": finished_at, "reason": reason,
        "oom_killed": oom})
    return 0


def _pump(fd: int, splitters: dict[int, logs.LineSplitter], sel: selectors.BaseSelector,
          log: LogWriter, drain: bool = False) -> None:
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            if drain:
                data = b""
            else:
                return
        except OSError as err:
            if err.errno == errno.EINTR:
                continue
            data = b""
        if not data:
            log.write(splitters[fd].flush())
            with contextlib.suppress(KeyError, ValueError):
                sel.unregister(fd)
            os.close(fd)
            del splitters[fd]
            return
        log.write(splitters[fd].feed(data))


def run_detached(directory: str, ready_fd: int) -> int:
    """Supervise in this (already detached) process: stdio to ``supervisor.log``; the
    exit status. The zygote's workers and :func:`main` both end here."""
    devnull = os.open("/dev/null", os.O_RDWR)
    diag = os.open(os.path.join(directory, "supervisor.log"),
                   os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(devnull, 0)
    os.dup2(diag, 1)
    os.dup2(diag, 2)
    os.close(devnull)
    os.close(diag)
    try:
        return supervise(directory, ready_fd)
    except BaseException:
        traceback.print_exc()
        with contextlib.suppress(OSError):
            os.write(ready_fd, f"error supervisor: {sys.exc_info()[1]}".encode())
        return 1


def main(argv: list[str] | None = None) -> int:
    """The supervisor as a command of its own (the shim forks it from its zygote)."""
    parser = argparse.ArgumentParser(prog="pilothouse-supervisor")
    parser.add_argument("directory")
    parser.add_argument("--ready-fd", type=int, required=True)
    args = parser.parse_args(argv)
    if os.fork() != 0:
        os._exit(0)  # the launcher returns; the supervisor is reparented to init
    os.setsid()
    return run_detached(args.directory, args.ready_fd)


if __name__ == "__main__":
    raise SystemExit(main())
