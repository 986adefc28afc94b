"""exec through the whole path: client -> apiserver -> kubelet -> runtime shim, WebSockets.

    python bench/streaming.py            # 100 execs, 100 MB each way
    python bench/streaming.py --quick    # 20 execs, 20 MB each way

Starts ``pilothouse up`` (process backend, a data dir, bridge and pod CIDR of its
own), runs one busybox pod, then speaks to ``pods/exec`` as kubectl 1.32 does
(``v5.channel.k8s.io``) from this process:

* round trip: open, run ``true``, read the Status, closed — p50/p99 and each
  component's CPU per exec (apiserver = the ``up`` process, kubelet, shim);
* download: ``head -c N /dev/zero`` on stdout — MB/s and CPU ms per MB;
* upload: N bytes on stdin in kubectl's 32 KiB messages to ``wc -c``, then v5's
  stdin close — MB/s and CPU ms per MB.

Needs root (network namespaces). The cluster is stopped and its directory,
pods and bridge removed at the end. Ends with one line ``BENCH {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import yaml
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

KUBECTL = "/usr/bin/kubectl"
CHUNK = 32 * 1024  # what kubectl writes per stdin message


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> dict[str, int]:
    """The ``pilothouse <component>`` processes ``up`` started, by component."""
    found: dict[str, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) != pid:
                continue
            argv = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if b"pilothouse.cli" in argv:
            found[argv[argv.index(b"pilothouse.cli") + 1].decode()] = int(stat.parent.name)
    return found


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def free_cidr() -> str:
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True,
                          check=False).stdout
    while True:
        cidr = f"10.{secrets.randbelow(60) + 190}.{secrets.randbelow(256)}.0/24"
        if cidr.rsplit(".", 1)[0] + "." not in used:
            return cidr


def wait(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {what} did not happen within {within}s")
        time.sleep(0.1)


class Exec:
    def __init__(self, api: str) -> None:
        self.api = api.replace("http://", "ws://")

    def url(self, *command: str, stdin: bool = False) -> str:
        query = [("command", c) for c in command] + [("stdout", "true"), ("stderr", "true")]
        if stdin:
            query.append(("stdin", "true"))
        return f"{self.api}/api/v1/namespaces/default/pods/bench/exec?{urlencode(query)}"

    async def run(self, url: str, feed: Callable[[Any], Awaitable[None]] | None = None
                  ) -> tuple[int, dict[str, Any]]:
        """(stdout bytes, Status) of one exec."""
        out = 0
        status: dict[str, Any] = {}
        async with connect(url, subprotocols=[Subprotocol("v5.channel.k8s.io")],
                           compression=None, proxy=None, max_size=None) as ws:
            if feed is not None:
                await feed(ws)
            try:
                async for message in ws:
                    assert isinstance(message, bytes)
                    if message[0] == 1:
                        out += len(message) - 1
                    elif message[0] == 3:
                        status = json.loads(message[1:])
            except ConnectionClosed:
                pass
        if status.get("status") != "Success":
            raise SystemExit(f"bench: exec failed: {status}")
        return out, status


async def measure(api: str, pids: dict[str, int], execs: int, size: int) -> dict[str, Any]:
    client = Exec(api)

    def cpu() -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in pids.items()}

    def spent(before: dict[str, float], per: float) -> dict[str, float]:
        return {name: round((seconds - before[name]) * 1000 / per, 2)
                for name, seconds in cpu().items()}

    await client.run(client.url("true"))  # warm up
    latencies = []
    before = cpu()
    for _ in range(execs):
        started = time.perf_counter()
        await client.run(client.url("true"))
        latencies.append(time.perf_counter() - started)
    round_trip = {"execs": execs, "p50_ms": round(percentile(latencies, 50) * 1000, 1),
                  "p99_ms": round(percentile(latencies, 99) * 1000, 1),
                  "cpu_ms_per_exec": spent(before, execs)}

    mb = size / 1e6
    before = cpu()
    started = time.perf_counter()
    got, _ = await client.run(client.url("head", "-c", str(size), "/dev/zero"))
    elapsed = time.perf_counter() - started
    if got != size:
        raise SystemExit(f"bench: downloaded {got} of {size} bytes")
    download = {"mb": mb, "mb_per_s": round(mb / elapsed, 1),
                "cpu_ms_per_mb": spent(before, mb)}

    payload = b"\0" + bytes(CHUNK)

    async def feed(ws: Any) -> None:
        for _ in range(size // CHUNK):
            await ws.send(payload)
        await ws.send(b"\0" + bytes(size % CHUNK))
        await ws.send(b"\xff\x00")

    before = cpu()
    started = time.perf_counter()
    await client.run(client.url("wc", "-c", stdin=True), feed)
    elapsed = time.perf_counter() - started
    upload = {"mb": mb, "mb_per_s": round(mb / elapsed, 1), "cpu_ms_per_mb": spent(before, mb)}
    return {"round_trip": round_trip, "download": download, "upload": upload}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 execs, 20 MB (under a minute)")
    args = parser.parse_args()
    execs, size = (20, 20_000_000) if args.quick else (100, 100_000_000)
    if os.geteuid() != 0:
        print("bench: needs root (network namespaces for pod sandboxes)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="ph-bench-stream-", dir="/tmp"))
    bridge = f"phs{secrets.token_hex(3)}"
    log = (work / "up.log").open("wb")
    up = subprocess.Popen([sys.executable, "-m", "pilothouse.cli", "up", "--data-dir",
                           str(work / "data"), "--port", "0", "--grpc-port", "0",
                           "--pod-cidr", free_cidr(), "--pod-bridge", bridge],
                          stdout=log, stderr=subprocess.STDOUT)
    kubeconfig = work / "data" / "kubeconfig"
    env = dict(os.environ, KUBECONFIG=str(kubeconfig))
    try:
        wait(lambda: kubeconfig.exists() or up.poll() is not None, 90, "pilothouse up ready")
        if up.poll() is not None:
            raise SystemExit(f"bench: pilothouse up exited: {(work / 'up.log').read_text()}")
        api = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
        subprocess.run([KUBECTL, "run", "bench", "--image=busybox",
                        "--image-pull-policy=IfNotPresent", "--command", "--", "sleep",
                        "3600"], env=env, check=True, capture_output=True)

        def running() -> bool:
            pod = httpx.get(f"{api}/api/v1/namespaces/default/pods/bench", timeout=10).json()
            return bool(pod.get("status", {}).get("phase") == "Running")

        wait(running, 60, "the pod Running")
        found = children(up.pid)
        pids = {"apiserver": up.pid, "kubelet": found["kubelet"],
                "shim": found["runtime-shim"]}
        figures = asyncio.run(measure(api, pids, execs, size))
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
        log.close()
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)
    print(f"exec round trip p50 {figures['round_trip']['p50_ms']} ms, p99 "
          f"{figures['round_trip']['p99_ms']} ms; download "
          f"{figures['download']['mb_per_s']} MB/s; upload {figures['upload']['mb_per_s']} MB/s")
    print("BENCH " + json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
