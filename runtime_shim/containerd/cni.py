"""Pod networking through CNI: the shim execs the plugins of a conflist itself.

The conflist (bridge + host-local + portmap, Debian's containernetworking-
plugins under /usr/lib/cni) is written by the shim. ADD runs the plugins in
order, each given the previous one's result as ``prevResult``; DEL runs them
in reverse with the cached ADD result, as the CNI spec says. The network
namespace is made by the shim (a bind-mounted file under /run/netns), and
results are cached under ``<root>/cni/results`` so a restarted shim can
still tear a pod's network down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import Any

CNI_VERSION = "1.0.0"


class CNIError(Exception):
    pass


def conflist(*, name: str, bridge: str, subnet: str, data_dir: str) -> dict[str, Any]:
    return {
        "cniVersion": CNI_VERSION,
        "name": name,
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": False,
             "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                      "dataDir": data_dir}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


class CNI:
    def __init__(self, *, root: Path, bin_dir: str, bridge: str, subnet: str,
                 ifname: str = "eth0") -> None:
        self.root = root
        self.bin_dir = bin_dir
        self.ifname = ifname
        self.results = root / "results"
        self.results.mkdir(parents=True, exist_ok=True)
        self.config = conflist(name=f"pilothouse-{bridge}", bridge=bridge, subnet=subnet,
                               data_dir=str(root / "ipam"))
        (root / "10-pilothouse.conflist").write_text(json.dumps(self.config, indent=1))

    def ready(self) -> str:
        """"" when every plugin of the conflist is installed, else what is missing."""
        missing = [p["type"] for p in self.config["plugins"]
                   if not os.access(os.path.join(self.bin_dir, p["type"]), os.X_OK)]
        return f"CNI plugins missing from {self.bin_dir}: {', '.join(missing)}" if missing else ""

    async def _exec(self, plugin: dict[str, Any], command: str, container_id: str,
                    netns: str, args: str, prev: dict[str, Any] | None,
                    runtime_config: dict[str, Any]) -> dict[str, Any]:
        conf = {**plugin, "cniVersion": self.config["cniVersion"], "name": self.config["name"]}
        if prev is not None:
            conf["prevResult"] = prev
        wanted = {k: v for k, v in runtime_config.items()
                  if (plugin.get("capabilities") or {}).get(k)}
        if wanted:
            conf["runtimeConfig"] = wanted
        env = {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns,
               "CNI_IFNAME": self.ifname, "CNI_PATH": self.bin_dir, "CNI_ARGS": args,
               "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        binary = os.path.join(self.bin_dir, plugin["type"])
        try:
            proc = await asyncio.create_subprocess_exec(
                binary, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=env)
        except OSError as err:
            raise CNIError(f"CNI plugin {binary}: {err}") from None
        out, errout = await proc.communicate(json.dumps(conf).encode())
        if proc.returncode != 0:
            try:
                doc = json.loads(out)
                detail = f"{doc.get('msg', '')} {doc.get('details', '')}".strip()
            except ValueError:
                detail = (out or errout).decode(errors="replace").strip()
            raise CNIError(f"CNI {command} {plugin['type']}: {detail}")
        if not out.strip():
            return prev or {}
        try:
            result: dict[str, Any] = json.loads(out)
        except ValueError:
            raise CNIError(f"CNI plugin {plugin['type']} printed no JSON result") from None
        return result

    async def add(self, sandbox_id: str, netns: str, *, pod_name: str = "",
                  pod_namespace: str = "", pod_uid: str = "",
                  port_mappings: list[dict[str, Any]] | None = None) -> str:
        """Wire ``netns`` to the bridge; returns the pod IP."""
        args = (f"IgnoreUnknown=1;K8S_POD_NAMESPACE={pod_namespace};K8S_POD_NAME={pod_name};"
                f"K8S_POD_INFRA_CONTAINER_ID={sandbox_id};K8S_POD_UID={pod_uid}")
        runtime_config = {"portMappings": port_mappings or []}
        result: dict[str, Any] | None = None
        done: list[dict[str, Any]] = []
        try:
            for plugin in self.config["plugins"]:
                result = await self._exec(plugin, "ADD", sandbox_id, netns, args, result,
                                          runtime_config)
                done.append(plugin)
        except CNIError:
            for plugin in reversed(done):
                with contextlib.suppress(CNIError):
                    await self._exec(plugin, "DEL", sandbox_id, netns, args, result,
                                     runtime_config)
            raise
        assert result is not None
        (self.results / sandbox_id).write_text(json.dumps(
            {"result": result, "args": args, "runtimeConfig": runtime_config}))
        ips = result.get("ips") or []
        if not ips:
            raise CNIError("CNI ADD returned no IP address")
        return str(ips[0]["address"]).split("/")[0]

    async def delete(self, sandbox_id: str, netns: str) -> None:
        """Undo ``add``; idempotent (a missing netns or cache entry is fine)."""
        cache = self.results / sandbox_id
        try:
            doc = json.loads(cache.read_text())
        except (OSError, ValueError):
            doc = {"result": None, "args": "IgnoreUnknown=1", "runtimeConfig": {}}
        errors = []
        for plugin in reversed(self.config["plugins"]):
            try:
                await self._exec(plugin, "DEL", sandbox_id, netns, doc["args"], doc["result"],
                                 doc["runtimeConfig"])
            except CNIError as err:
                errors.append(str(err))
        with contextlib.suppress(FileNotFoundError):
            cache.unlink()
        if errors:
            raise CNIError("; ".join(errors))
