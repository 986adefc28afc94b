"""One pod, driven to its spec through the CRI: Kubernetes' ``syncPod`` and kuberuntime.

``PodSyncer.sync(state)`` is level-triggered: it reads the pod's sandboxes and
containers from the runtime, decides what is missing, does it, and writes the
resulting status. It returns when it next wants to run (a back-off ending),
or None. The pod worker calls it again on every change (pod update, PLEG
event, probe result) and on its resync period.

The order within a sync, as in Kubernetes:

1. a pod being deleted (or gone) is terminated: preStop hooks, StopContainer
   with the remaining grace period, StopPodSandbox, the final status, then
   the final delete (grace 0) through the client;
2. a terminal pod (Succeeded/Failed) only has its sandbox stopped;
3. volumes are set up (``FailedMount`` otherwise), then a sandbox is created
   when there is no ready one (killing containers of a dead one);
4. init containers run one at a time, in order; a failed one is restarted
   per restartPolicy (with back-off), or fails the pod under ``Never``;
   sidecars (init containers with ``restartPolicy: Always``) start in order
   and keep running;
5. regular containers are started; a dead one is restarted per
   restartPolicy after its CrashLoopBackOff, a running one whose liveness
   or startup probe failed (or whose spec changed) is killed and restarted.

Images are pulled per ``imagePullPolicy`` (``ErrImagePull`` then
``ImagePullBackOff`` with back-off). Events: Pulling, Pulled, Created,
Started, Killing, BackOff, Failed, FailedMount, ...
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pilothouse.client import Client, copy_object
from pilothouse.client.errors import ClientError, is_conflict, is_not_found
from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.kubelet import admission, cgroups, cri_config, podstatus, probes
from pilothouse.services.kubelet import env as envlib
from pilothouse.services.kubelet import volumes as vol
from pilothouse.services.kubelet.backoff import Backoff
from pilothouse.services.kubelet.config import KubeletConfig
from pilothouse.services.kubelet.metrics import KubeletMetrics
from pilothouse.services.kubelet.podstatus import ContainerRecord, RuntimePod, SandboxRecord
from pilothouse.services.kubelet.runtime import RuntimeClient, RuntimeError_

log = logging.getLogger("pilothouse.kubelet.pods")

MIN_GRACE = 2  # Kubernetes' minimumGracePeriodInSeconds for StopContainer
FAILED_MOUNT_RETRY = 2.0
CONFIG_ERROR_RETRY = 2.0
SOURCES_TTL = 10.0  # how long fetched ConfigMaps/Secrets are reused before a refresh

EventFunc = Callable[[core_pb2.Pod, str, str, str, str], None]  # pod, container, type, reason, msg

EVICTED = "Evicted"
TERMINATION_BY_KUBELET = "TerminationByKubelet"  # the DisruptionTarget condition's reason


@dataclass(frozen=True)
class EvictionRequest:
    """The eviction manager's verdict on a pod: kill it within ``grace`` seconds and end
    it ``Failed``/``Evicted`` with ``message``."""

    message: str
    grace: int = 1


@dataclass
class PodState:
    """What the pod worker keeps about one pod between syncs."""

    pod: core_pb2.Pod
    first_seen: float  # monotonic
    view: podstatus.WorkerView = field(default_factory=podstatus.WorkerView)
    exit_seen: dict[str, float] = field(default_factory=dict)  # container id -> monotonic
    pull_failed_at: dict[str, float] = field(default_factory=dict)  # image -> monotonic
    volume_paths: dict[str, Path] | None = None
    sources: vol.VolumeSources | None = None
    sources_at: float = -1e18
    gone: bool = False  # the apiserver no longer has the pod
    finished: bool = False  # terminated and cleaned up
    last_status: core_pb2.PodStatus | None = None
    start_recorded: bool = False
    static: bool = False
    fresh: bool = False  # the runtime had nothing for this pod when its worker started
    mirror_name: str = ""  # static pods: the mirror pod's name in the apiserver
    hooks_failed: set[str] = field(default_factory=set)
    # Admission refused the pod: it never runs, its status says why (Failed).
    rejection: admission.Rejection | None = None
    rejection_written: bool = False
    eviction: EvictionRequest | None = None  # set by the eviction manager
    # The runtime as the last sync left it (what it read, plus what it created since),
    # reused while the PLEG's relists agree with it; None: read the runtime next sync.
    runtime: RuntimePod | None = None
    runtime_epoch: int = 0  # RuntimeCache.epoch() when ``runtime`` was last brought up to date
    sending_status: core_pb2.PodStatus | None = None  # a status write in flight
    hosts_written: list[str] | None = None  # the pod IPs its /etc/hosts was written with

    @property
    def uid(self) -> str:
        return str(self.pod.metadata.uid)

    @property
    def key(self) -> str:
        return f"{self.pod.metadata.namespace}/{self.pod.metadata.name}"

    @property
    def deleting(self) -> bool:
        return self.gone or self.pod.metadata.HasField("deletionTimestamp")

    @property
    def terminal(self) -> bool:
        """The pod has ended (or will end: rejected, evicted) and never runs again."""
        phase = self.last_status.phase if self.last_status is not None else ""
        return (self.rejection is not None or self.eviction is not None or
                phase in ("Succeeded", "Failed") or
                self.pod.status.phase in ("Succeeded", "Failed"))

    @property
    def active(self) -> bool:
        """Counts against the node's capacity (Kubernetes' active pods, static ones too)."""
        return not self.finished and not self.terminal


class RuntimeCache(Protocol):
    """The kubelet's shared snapshot of the runtime (the PLEG's relists)."""

    def epoch(self) -> int:
        """How many relists have begun: a view taken now is as new as relist ``epoch()``."""
        ...

    def agrees(self, uid: str, rp: RuntimePod, epoch: int) -> bool:
        """False when a relist begun after ``epoch`` shows pod ``uid``'s sandboxes or
        containers (IDs and states) differently from ``rp``: read the runtime again."""
        ...


@dataclass
class SyncDeps:
    config: KubeletConfig
    client: Client
    runtime: RuntimeClient
    clock: Any  # AsyncClock
    probes: probes.ProbeManager
    volumes: vol.VolumeManager
    backoff: Backoff
    image_backoff: Backoff
    metrics: KubeletMetrics
    event: EventFunc
    node_ip: str
    services: Callable[[], list[core_pb2.Service]] = lambda: []
    node_allocatable: Callable[[], dict[str, str]] = lambda: {}
    on_pod_started: Callable[[PodState], None] = lambda state: None
    # None: every sync reads the runtime (ListPodSandbox, ListContainers, statuses)
    runtime_cache: RuntimeCache | None = None


class PodSyncer:
    def __init__(self, deps: SyncDeps) -> None:
        self.d = deps

    # -- reading the runtime ------------------------------------------------------------

    async def inspect(self, uid: str) -> RuntimePod:
        rt = self.d.runtime
        sandboxes = await rt.pod_sandboxes(uid)
        containers = await rt.containers(uid)
        records: list[SandboxRecord] = []
        for sb in sorted(sandboxes, key=lambda s: s.created_at, reverse=True):
            rec = SandboxRecord(sb.id, sb.state == cri.SANDBOX_READY, sb.created_at,
                                sb.metadata.attempt)
            if rec.ready:
                status = await rt.sandbox_status(sb.id)
                if status is not None:
                    rec.ip = status.network.ip
                    rec.additional_ips = [a.ip for a in status.network.additional_ips]
            records.append(rec)
        statuses = await asyncio.gather(*(rt.container_status(c.id) for c in containers))
        crecs = [ContainerRecord.from_status(s) for s in statuses if s is not None]
        crecs.sort(key=lambda c: (c.created_at, c.restart_count), reverse=True)
        return RuntimePod(uid, records, crecs)

    async def _runtime_view(self, state: PodState) -> RuntimePod:
        """The pod's sandboxes and containers for this sync: the view the last sync left if
        the relists since agree with it, else read from the runtime. The sync keeps it up
        to date with what it creates (``_note_change``) or drops it (``_invalidate``)."""
        cache = self.d.runtime_cache
        epoch = cache.epoch() if cache is not None else 0
        if state.fresh:  # the runtime had nothing for this pod: no listing needed
            state.fresh = False
            rp = RuntimePod(state.uid)
        elif state.runtime is not None and cache is not None and \
                cache.agrees(state.uid, state.runtime, state.runtime_epoch):
            return state.runtime
        else:
            rp = await self.inspect(state.uid)
        state.runtime, state.runtime_epoch = rp, epoch
        return rp

    def _note_change(self, state: PodState) -> None:
        """The sync has added what it just created to its view (read back from the runtime):
        relists begun before now may not show it and are not held against the view. One
        begun later that disagrees makes the worker read the runtime again — what the view
        may lack (a container that exited meanwhile) is caught by the next relist."""
        if self.d.runtime_cache is not None:
            state.runtime_epoch = self.d.runtime_cache.epoch()

    @staticmethod
    def _invalidate(state: PodState) -> None:
        """A runtime call whose effect the view does not hold: read the runtime next sync."""
        state.runtime = None

    # -- the sync ----------------------------------------------------------------------------

    async def sync(self, state: PodState) -> float | None:
        """Drive the pod one step towards its spec; the next wake-up (monotonic) or None."""
        pod = state.pod
        if state.rejection is not None:
            await self._sync_rejected(state)
            return None
        rp = await self._runtime_view(state)
        self._note_exits(state, rp)
        if state.deleting:
            await self.terminate(state, rp)
            return None
        if state.eviction is not None and not state.view.terminal_phase:
            rp = await self._evict(state, rp, state.eviction)
        if state.terminal:
            await self._stop_terminal(state, rp)
            return None
        wake: list[float] = []
        # Volumes (and the objects they and the environment need).
        try:
            await self._refresh_sources(state)
            assert state.sources is not None
            # a pod without volumes has nothing to write: no thread hop for it
            state.volume_paths = await asyncio.to_thread(
                self.d.volumes.setup, pod, state.sources) if pod.spec.volumes else {}
        except (vol.VolumeError, OSError) as e:
            self.d.event(pod, "", "Warning", "FailedMount",
                         f"MountVolume.SetUp failed: {e}")
            await self.write_status(state, rp)
            return self.d.clock.monotonic() + FAILED_MOUNT_RETRY
        except ClientError as e:
            log.warning("pod %s: reading its ConfigMaps/Secrets failed: %s", state.key, e)
            return self.d.clock.monotonic() + FAILED_MOUNT_RETRY
        # The sandbox.
        sandbox = rp.ready_sandbox()
        if sandbox is None:
            if self._pod_is_done(pod, rp):
                await self.write_status(state, rp)
                return None
            for c in rp.running():
                await self._kill_container(state, c, self._spec(pod, c.name), MIN_GRACE,
                                           "pod sandbox is not ready")
            if rp.sandboxes:
                self._invalidate(state)  # old sandboxes stopped (the new one is added)
                self.d.event(pod, "", "Normal", "SandboxChanged",
                             "Pod sandbox changed, it will be killed and re-created.")
                for sb in rp.sandboxes:
                    with contextlib.suppress(RuntimeError_):
                        await self.d.runtime.call("StopPodSandbox", cri.StopPodSandboxRequest(
                            pod_sandbox_id=sb.id))
            attempt = len(rp.sandboxes)
            try:
                sandbox_id = await self._create_sandbox(state, attempt=attempt)
            except RuntimeError_ as e:
                self.d.event(pod, "", "Warning", "FailedCreatePodSandBox",
                             f"Failed to create pod sandbox: {e.message}")
                self.d.metrics.started_pods_errors.inc()
                await self.write_status(state, rp)
                return self.d.clock.monotonic() + FAILED_MOUNT_RETRY
            sb_status = await self.d.runtime.sandbox_status(sandbox_id)
            if sb_status is None or sb_status.state != cri.SANDBOX_READY:
                self._invalidate(state)
                return self.d.clock.monotonic() + FAILED_MOUNT_RETRY
            sandbox = SandboxRecord(sandbox_id, True, sb_status.created_at, attempt,
                                    sb_status.network.ip,
                                    [a.ip for a in sb_status.network.additional_ips])
            rp.sandboxes.insert(0, sandbox)
            self._note_change(state)
        pod_ips = [sandbox.ip, *sandbox.additional_ips] if sandbox.ip else []
        if state.hosts_written != pod_ips:
            await asyncio.to_thread(self._write_hosts, pod, pod_ips)
            state.hosts_written = pod_ips
        sandbox_config = self._sandbox_config(pod, sandbox.attempt)
        changed = False
        # Init containers, then regular ones.
        initialized, init_changed = await self._sync_init(state, rp, sandbox.id,
                                                          sandbox_config, pod_ips, wake)
        changed |= init_changed
        if initialized and not state.view.failed_init:
            changed |= await self._sync_containers(state, rp, sandbox.id, sandbox_config,
                                                   pod_ips, wake)
        if changed:  # ``rp`` already holds what was started (``_start`` adds it)
            self._note_exits(state, rp)
        self._sync_probes(state, rp, pod_ips)
        self._readiness(state, rp)
        status = await self.write_status(state, rp)
        if status is not None and status.phase in ("Succeeded", "Failed"):
            await self._stop_terminal(state, rp)
            return None
        self._record_start(state, status)
        return min(wake) if wake else None

    # -- helpers: state -----------------------------------------------------------------------

    def _note_exits(self, state: PodState, rp: RuntimePod) -> None:
        now = self.d.clock.monotonic()
        live = {c.id for c in rp.containers}
        for c in rp.containers:
            if c.exited and c.id not in state.exit_seen:
                state.exit_seen[c.id] = now
                self._read_termination_message(state, c)
        for cid in [k for k in state.exit_seen if k not in live]:
            del state.exit_seen[cid]

    def _read_termination_message(self, state: PodState, c: ContainerRecord) -> None:
        path = self._termination_log(state.uid, c.name, c.restart_count)
        try:
            text = path.read_text(errors="replace")[:4096]
        except OSError:
            text = ""
        if text:
            state.view.termination_messages[c.id] = text

    def _termination_log(self, uid: str, name: str, restart: int) -> Path:
        return self.d.volumes.pod_dir(uid) / "containers" / name / f"{restart}-termination-log"

    @staticmethod
    def _spec(pod: core_pb2.Pod, name: str) -> core_pb2.Container | None:
        for c in list(pod.spec.initContainers) + list(pod.spec.containers):
            if c.name == name:
                return c
        return None

    def _pod_is_done(self, pod: core_pb2.Pod, rp: RuntimePod) -> bool:
        """Nothing would run again: a sandbox died after every container finished for good."""
        if not rp.sandboxes or not pod.spec.containers:
            return False
        policy = pod.spec.restartPolicy or "Always"
        if policy == "Always":
            return False
        for spec in pod.spec.containers:
            latest = rp.latest(spec.name)
            if latest is None or not latest.exited or \
                    podstatus.should_restart(policy, latest.exit_code):
                return False
        return True

    async def _refresh_sources(self, state: PodState) -> None:
        now = self.d.clock.monotonic()
        if state.sources is not None and now - state.sources_at < SOURCES_TTL:
            return
        pod = state.pod
        cms, secrets = vol.referenced(pod)
        for c in list(pod.spec.initContainers) + list(pod.spec.containers):
            c_cms, c_secrets = envlib.referenced(pod, c)
            cms |= c_cms
            secrets |= c_secrets
        ns = pod.metadata.namespace
        sources = vol.VolumeSources()
        for name in sorted(cms):
            sources.configmaps[name] = await self._get(core_pb2.ConfigMap, name, ns)
        for name in sorted(secrets):
            sources.secrets[name] = await self._get(core_pb2.Secret, name, ns)
        sources.env = envlib.EnvSources(configmaps=sources.configmaps, secrets=sources.secrets,
                                        services=self.d.services(),
                                        node_allocatable=self.d.node_allocatable(),
                                        host_ip=self.d.node_ip)
        state.sources = sources
        state.sources_at = now

    async def _get(self, cls: Any, name: str, namespace: str) -> Any:
        try:
            return await self.d.client.get(cls, name, namespace=namespace)
        except ClientError as e:
            if is_not_found(e):
                return None
            raise

    def _write_hosts(self, pod: core_pb2.Pod, pod_ips: list[str]) -> None:
        if pod.spec.hostNetwork:
            return
        path = self.d.volumes.pod_dir(pod.metadata.uid) / "etc-hosts"
        text = vol.etc_hosts(pod, pod_ips, self.d.config.cluster_domain)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if path.read_text() == text:
                return
        except OSError:
            pass
        path.write_text(text)

    def _sandbox_config(self, pod: core_pb2.Pod, attempt: int) -> cri.PodSandboxConfig:
        log_dir = cri_config.log_directory(self.d.config.root_dir, pod)
        return cri_config.sandbox_config(
            pod, attempt=attempt, log_dir=log_dir, cluster_dns=self.d.config.cluster_dns,
            cluster_domain=self.d.config.cluster_domain,
            cgroup_parent=cgroups.pod_cgroup(self.d.config.cgroup_root, pod))

    def _make_dirs(self, pod: core_pb2.Pod, log_directory: str) -> None:
        containers = self.d.volumes.pod_dir(pod.metadata.uid) / "containers"
        for c in list(pod.spec.initContainers) + list(pod.spec.containers):
            os.makedirs(os.path.join(log_directory, c.name), exist_ok=True)
            os.makedirs(containers / c.name, exist_ok=True)

    async def _create_sandbox(self, state: PodState, attempt: int) -> str:
        config = self._sandbox_config(state.pod, attempt)
        # every directory the pod's containers need, in one thread hop (a directory made
        # on a busy disk blocks for a while; the loop should not)
        await asyncio.to_thread(self._make_dirs, state.pod, config.log_directory)
        resp = await self.d.runtime.call("RunPodSandbox", cri.RunPodSandboxRequest(
            config=config))
        return str(resp.pod_sandbox_id)

    # -- init containers ------------------------------------------------------------------------

    async def _sync_init(self, state: PodState, rp: RuntimePod, sandbox_id: str,
                         sandbox_config: cri.PodSandboxConfig, pod_ips: list[str],
                         wake: list[float]) -> tuple[bool, bool]:
        """(initialized, changed anything)."""
        pod = state.pod
        policy = pod.spec.restartPolicy or "Always"
        changed = False
        state.view.failed_init = False
        for spec in pod.spec.initContainers:
            latest = rp.latest(spec.name)
            if podstatus.is_sidecar(spec):
                if latest is None or not latest.running:
                    if latest is not None and latest.state == podstatus.CREATED:
                        await self._remove(latest)
                        rp.containers.remove(latest)
                    changed |= await self._start(state, rp, spec, "sidecar", sandbox_id,
                                                 sandbox_config, pod_ips, wake)
                    return False, changed
                if self._probe_failed(latest):
                    await self._kill_container(state, latest, spec, None,
                                               self._probe_kill_message(latest, spec))
                    return False, True
                if not self._started(latest, spec):
                    return False, changed
                continue
            if latest is None:
                changed |= await self._start(state, rp, spec, "init", sandbox_id,
                                             sandbox_config, pod_ips, wake)
                return False, changed
            if latest.running or latest.state == podstatus.CREATED:
                if latest.state == podstatus.CREATED:
                    await self._remove(latest)
                    rp.containers.remove(latest)
                    changed |= await self._start(state, rp, spec, "init", sandbox_id,
                                                 sandbox_config, pod_ips, wake)
                return False, changed
            if latest.exit_code == 0:
                state.view.waiting.pop(spec.name, None)
                continue
            if policy == "Never":
                state.view.failed_init = True
                state.view.waiting.pop(spec.name, None)
                return False, changed
            changed |= await self._start(state, rp, spec, "init", sandbox_id, sandbox_config,
                                         pod_ips, wake)
            return False, changed
        return True, changed

    # -- regular containers ------------------------------------------------------------------

    async def _sync_containers(self, state: PodState, rp: RuntimePod, sandbox_id: str,
                               sandbox_config: cri.PodSandboxConfig, pod_ips: list[str],
                               wake: list[float]) -> bool:
        pod = state.pod
        policy = pod.spec.restartPolicy or "Always"
        changed = False
        for spec in pod.spec.containers:
            latest = rp.latest(spec.name)
            if latest is None:
                changed |= await self._start(state, rp, spec, "regular", sandbox_id,
                                             sandbox_config, pod_ips, wake)
                continue
            if latest.running:
                reason = ""
                if self._probe_failed(latest):
                    reason = self._probe_kill_message(latest, spec)
                elif latest.hash and latest.hash != cri_config.container_hash(spec):
                    reason = f"Container {spec.name} definition changed, will be restarted"
                if reason:
                    await self._kill_container(state, latest, spec, None, reason)
                    changed = True
                    if policy != "Never":
                        latest = await self._reload(latest)
                        rp2 = await self.inspect(state.uid)
                        self._note_exits(state, rp2)
                        changed |= await self._start(state, rp2, spec, "regular", sandbox_id,
                                                     sandbox_config, pod_ips, wake)
                continue
            if latest.state == podstatus.CREATED:
                await self._remove(latest)
                rp.containers.remove(latest)
                changed |= await self._start(state, rp, spec, "regular", sandbox_id,
                                             sandbox_config, pod_ips, wake)
                continue
            if podstatus.should_restart(policy, latest.exit_code):
                changed |= await self._start(state, rp, spec, "regular", sandbox_id,
                                             sandbox_config, pod_ips, wake)
            else:
                state.view.waiting.pop(spec.name, None)
        return changed

    async def _reload(self, c: ContainerRecord) -> ContainerRecord:
        status = await self.d.runtime.container_status(c.id)
        return ContainerRecord.from_status(status) if status is not None else c

    def _probe_failed(self, c: ContainerRecord) -> bool:
        return self.d.probes.result(c.id, probes.LIVENESS) is False or (
            self.d.probes.result(c.id, probes.STARTUP) is False and
            self._startup_gave_up(c))

    def _startup_gave_up(self, c: ContainerRecord) -> bool:
        """A startup probe reports failure only once its failureThreshold ran out."""
        worker = self.d.probes._workers.get((c.id, probes.STARTUP))
        return worker is not None and worker.state.on_hold

    @staticmethod
    def _probe_kill_message(c: ContainerRecord, spec: core_pb2.Container | None) -> str:
        name = spec.name if spec is not None else c.name
        return f"Container {name} failed liveness probe, will be restarted"

    def _started(self, c: ContainerRecord, spec: core_pb2.Container) -> bool:
        if not spec.HasField("startupProbe"):
            return True
        return self.d.probes.result(c.id, probes.STARTUP) is True

    # -- starting a container -----------------------------------------------------------------

    async def _start(self, state: PodState, rp: RuntimePod, spec: core_pb2.Container,
                     kind: str, sandbox_id: str, sandbox_config: cri.PodSandboxConfig,
                     pod_ips: list[str], wake: list[float]) -> bool:
        """Start ``spec`` (honouring its back-off); True when something ran in the runtime."""
        pod = state.pod
        meta = pod.metadata
        latest = rp.latest(spec.name)
        clock = self.d.clock
        if latest is not None and latest.exited:
            key = f"{state.uid}/{spec.name}"
            event_time = state.exit_seen.setdefault(latest.id, clock.monotonic())
            if self.d.backoff.in_backoff_since(key, event_time):
                delay = self.d.backoff.delay(key)
                state.view.waiting[spec.name] = (
                    "CrashLoopBackOff",
                    f"back-off {_fmt_delay(delay)} restarting failed container={spec.name} "
                    f"pod={meta.name}_{meta.namespace}({meta.uid})")
                self.d.event(pod, spec.name, "Warning", "BackOff",
                             "Back-off restarting failed container "
                             f"{spec.name} in pod {meta.name}_{meta.namespace}({meta.uid})")
                wake.append(self.d.backoff.retry_at(key, event_time))
                return False
            self.d.backoff.next(key, event_time)
        image_ref = await self._ensure_image(state, spec, wake)
        if image_ref is None:
            return False
        restart_count = latest.restart_count + 1 if latest is not None else 0
        assert state.sources is not None and state.volume_paths is not None
        sources = state.sources.env
        sources.pod_ips = pod_ips
        try:
            envs = envlib.build_env(pod, spec, sources)
            env_map = dict(envs)
            command = [envlib.expand(a, env_map) for a in spec.command]
            args = [envlib.expand(a, env_map) for a in spec.args]
            mounts = self.d.volumes.mounts(pod, spec, state.volume_paths, env_map)
        except (envlib.ConfigError, vol.VolumeError) as e:
            state.view.waiting[spec.name] = ("CreateContainerConfigError", str(e))
            self.d.event(pod, spec.name, "Warning", "Failed", f"Error: {e}")
            wake.append(clock.monotonic() + CONFIG_ERROR_RETRY)
            return False
        mounts.extend(self._kubelet_mounts(state, spec, restart_count, mounts))
        config = cri_config.container_config(pod, spec, restart_count=restart_count,
                                             image=image_ref, envs=envs, command=command,
                                             args=args, mounts=mounts, kind=kind)
        # Kubernetes keeps one dead container per name (for lastState and --previous).
        for old in rp.all(spec.name)[1:]:
            await self._remove(old)
            rp.containers.remove(old)
        log_dir = Path(sandbox_config.log_directory) / spec.name
        os.makedirs(log_dir, exist_ok=True)  # made with the sandbox: exists (quick)
        try:
            resp = await self.d.runtime.call("CreateContainer", cri.CreateContainerRequest(
                pod_sandbox_id=sandbox_id, config=config, sandbox_config=sandbox_config))
        except RuntimeError_ as e:
            state.view.waiting[spec.name] = ("CreateContainerError", e.message)
            self.d.event(pod, spec.name, "Warning", "Failed", f"Error: {e.message}")
            wake.append(clock.monotonic() + CONFIG_ERROR_RETRY)
            return False
        cid = resp.container_id
        self.d.event(pod, spec.name, "Normal", "Created", f"Created container {spec.name}")
        try:
            await self.d.runtime.call("StartContainer", cri.StartContainerRequest(
                container_id=cid))
        except RuntimeError_ as e:
            state.view.waiting[spec.name] = ("RunContainerError", e.message)
            self.d.event(pod, spec.name, "Warning", "Failed", f"Error: {e.message}")
            wake.append(clock.monotonic() + CONFIG_ERROR_RETRY)
            await self._add_record(rp, cid)
            self._note_change(state)
            return True
        await self._add_record(rp, cid)
        self._note_change(state)
        state.view.waiting.pop(spec.name, None)
        self.d.metrics.started_containers.labels(
            "init_container" if kind != "regular" else "container").inc()
        self.d.event(pod, spec.name, "Normal", "Started", f"Started container {spec.name}")
        if spec.lifecycle.HasField("postStart"):
            await self._post_start(state, spec, cid, pod_ips)
        return True

    def _kubelet_mounts(self, state: PodState, spec: core_pb2.Container, restart_count: int,
                        mounts: list[cri.Mount]) -> list[cri.Mount]:
        out: list[cri.Mount] = []
        taken = {m.container_path for m in mounts}
        pod = state.pod
        hosts = self.d.volumes.pod_dir(state.uid) / "etc-hosts"
        if not pod.spec.hostNetwork and "/etc/hosts" not in taken and hosts.exists():
            out.append(cri.Mount(container_path="/etc/hosts", host_path=str(hosts)))
        path = spec.terminationMessagePath or "/dev/termination-log"
        if path not in taken:
            tlog = self._termination_log(state.uid, spec.name, restart_count)
            tlog.parent.mkdir(parents=True, exist_ok=True)
            tlog.touch()
            tlog.chmod(0o666)
            out.append(cri.Mount(container_path=path, host_path=str(tlog)))
        return out

    async def _post_start(self, state: PodState, spec: core_pb2.Container, cid: str,
                          pod_ips: list[str]) -> None:
        target = probes.Target(cid, pod_ips[0] if pod_ips else "", spec)
        ok, message = await probes.run_handler(spec.lifecycle.postStart, target,
                                               runtime=self.d.runtime,
                                               limit=float(cri_config.grace_period(state.pod)),
                                               clock=self.d.clock)
        if ok:
            return
        self.d.event(state.pod, spec.name, "Warning", "FailedPostStartHook",
                     f"PostStartHook failed: {message}")
        self._invalidate(state)
        with contextlib.suppress(RuntimeError_):
            await self.d.runtime.call("StopContainer", cri.StopContainerRequest(
                container_id=cid, timeout=MIN_GRACE))

    async def _ensure_image(self, state: PodState, spec: core_pb2.Container,
                            wake: list[float]) -> str | None:
        pod = state.pod
        image = spec.image
        policy = spec.imagePullPolicy or ("Always" if _latest_tag(image) else "IfNotPresent")
        present = ""
        if policy != "Always":
            resp = await self.d.runtime.call("ImageStatus", cri.ImageStatusRequest(
                image=cri.ImageSpec(image=image)))
            present = resp.image.id if resp.HasField("image") else ""
            if present:
                self.d.event(pod, spec.name, "Normal", "Pulled",
                             f'Container image "{image}" already present on machine')
                return present
            if policy == "Never":
                msg = (f'Container image "{image}" is not present with pull policy of Never')
                state.view.waiting[spec.name] = ("ErrImageNeverPull", msg)
                self.d.event(pod, spec.name, "Warning", "ErrImageNeverPull", msg)
                return None
        key = f"{state.uid}/image/{image}"
        failed_at = state.pull_failed_at.get(image)
        if failed_at is not None and self.d.image_backoff.in_backoff_since(key, failed_at):
            state.view.waiting[spec.name] = ("ImagePullBackOff",
                                             f'Back-off pulling image "{image}"')
            self.d.event(pod, spec.name, "Normal", "BackOff", f'Back-off pulling image "{image}"')
            wake.append(self.d.image_backoff.retry_at(key, failed_at))
            return None
        self.d.event(pod, spec.name, "Normal", "Pulling", f'Pulling image "{image}"')
        started = time.perf_counter()
        try:
            resp = await self.d.runtime.call("PullImage", cri.PullImageRequest(
                image=cri.ImageSpec(image=image)))
        except RuntimeError_ as e:
            now = self.d.clock.monotonic()
            state.pull_failed_at[image] = now
            self.d.image_backoff.next(key, now)
            msg = f'Failed to pull image "{image}": {e.message}'
            state.view.waiting[spec.name] = ("ErrImagePull", msg)
            self.d.event(pod, spec.name, "Warning", "Failed", msg)
            self.d.event(pod, spec.name, "Warning", "Failed", "Error: ErrImagePull")
            wake.append(self.d.image_backoff.retry_at(key, now))
            return None
        state.pull_failed_at.pop(image, None)
        self.d.image_backoff.reset(key)
        took = time.perf_counter() - started
        self.d.event(pod, spec.name, "Normal", "Pulled",
                     f'Successfully pulled image "{image}" in {took:.3f}s')
        return str(resp.image_ref)

    async def _add_record(self, rp: RuntimePod, container_id: str) -> None:
        """Put a container just created into ``rp`` (newest first) without relisting."""
        status = await self.d.runtime.container_status(container_id)
        if status is not None:
            rp.containers.insert(0, ContainerRecord.from_status(status))

    async def _remove(self, c: ContainerRecord) -> None:
        with contextlib.suppress(RuntimeError_):
            await self.d.runtime.call("RemoveContainer", cri.RemoveContainerRequest(
                container_id=c.id))
        self.d.probes.stop_container(c.id)

    # -- probes and readiness ---------------------------------------------------------------

    def _sync_probes(self, state: PodState, rp: RuntimePod, pod_ips: list[str]) -> None:
        pod = state.pod
        live: set[str] = set()
        for spec in list(pod.spec.initContainers) + list(pod.spec.containers):
            c = rp.latest(spec.name)
            if c is None or not c.running:
                continue
            if spec in pod.spec.initContainers and not podstatus.is_sidecar(spec):
                continue
            live.add(c.id)
            self.d.probes.ensure(state.uid, pod.metadata.name, spec, c.id,
                                 pod_ips[0] if pod_ips else "", c.started_at)
        self.d.probes.stop_pod(state.uid, keep=live)

    def _readiness(self, state: PodState, rp: RuntimePod) -> None:
        view = state.view
        view.ready.clear()
        view.started.clear()
        for spec in list(state.pod.spec.initContainers) + list(state.pod.spec.containers):
            c = rp.latest(spec.name)
            if c is None or not c.running:
                continue
            started = self._started(c, spec)
            view.started[c.id] = started
            if spec.HasField("readinessProbe"):
                view.ready[c.id] = started and self.d.probes.result(c.id, probes.READINESS) \
                    is True
            else:
                view.ready[c.id] = started

    # -- status ---------------------------------------------------------------------------------

    async def write_status(self, state: PodState, rp: RuntimePod) -> core_pb2.PodStatus | None:
        """Compute the status; write it when it changed. The status (None if the pod is gone)."""
        status = podstatus.generate(state.pod, rp, state.view,
                                    runtime_name=self.d.runtime.runtime_name or "cri",
                                    host_ip=self.d.node_ip, now=self.d.clock.now(),
                                    written=state.last_status)
        if state.last_status is not None and podstatus.status_equal(state.last_status, status):
            return status
        if state.gone:
            return status
        pod = copy_object(state.pod)
        pod.status.CopyFrom(status)
        pod.metadata.resourceVersion = ""
        if state.static:
            if not state.mirror_name:
                state.last_status = status
                return status
            pod.metadata.name = state.mirror_name
            pod.metadata.uid = ""
        state.sending_status = status  # its echo from the watch needs no sync
        try:
            await self.d.client.update_status(pod)
        except ClientError as e:
            if is_not_found(e):
                if not state.static:
                    state.gone = True
                return status
            if is_conflict(e):
                return status  # retried on the next sync
            log.warning("pod %s: status update failed: %s", state.key, e)
            return status
        finally:
            state.sending_status = None
        state.last_status = status
        return status

    def _record_start(self, state: PodState, status: core_pb2.PodStatus | None) -> None:
        if state.start_recorded or status is None or status.phase != "Running":
            return
        if not all(cs.state.HasField("running") for cs in status.containerStatuses):
            return
        state.start_recorded = True
        self.d.metrics.started_pods.inc()
        self.d.metrics.pod_start_duration.observe(
            max(self.d.clock.monotonic() - state.first_seen, 0.0))
        created = state.pod.metadata.creationTimestamp.seconds
        if created:
            self.d.metrics.pod_start_sli_duration.observe(
                max(self.d.clock.now().timestamp() - created, 0.0))
        self.d.on_pod_started(state)

    # -- stopping -------------------------------------------------------------------------------

    async def _kill_container(self, state: PodState, c: ContainerRecord,
                              spec: core_pb2.Container | None, grace: int | None,
                              message: str) -> None:
        """preStop, then StopContainer with what remains of ``grace`` (the pod's by default)."""
        pod = state.pod
        self._invalidate(state)
        if grace is None:
            grace = cri_config.grace_period(pod)
            if spec is not None:
                for probe_field in ("livenessProbe", "startupProbe"):
                    if spec.HasField(probe_field) and \
                            getattr(spec, probe_field).HasField("terminationGracePeriodSeconds"):
                        grace = int(getattr(spec, probe_field).terminationGracePeriodSeconds)
        name = spec.name if spec is not None else c.name
        self.d.event(pod, name, "Normal", "Killing", message or f"Stopping container {name}")
        start = self.d.clock.monotonic()
        if spec is not None and spec.lifecycle.HasField("preStop") and grace > 0:
            target = probes.Target(c.id, pod.status.podIP, spec)
            try:
                async with asyncio.timeout(grace):
                    ok, why = await probes.run_handler(spec.lifecycle.preStop, target,
                                                       runtime=self.d.runtime,
                                                       limit=float(grace), clock=self.d.clock)
            except TimeoutError:
                ok, why = False, f"the preStop hook did not finish within {grace}s"
            if not ok:
                self.d.event(pod, name, "Warning", "FailedPreStopHook",
                             f"PreStopHook failed: {why}")
        remaining = int(grace - (self.d.clock.monotonic() - start))
        self.d.probes.stop_container(c.id)
        with contextlib.suppress(RuntimeError_):
            await self.d.runtime.call("StopContainer", cri.StopContainerRequest(
                container_id=c.id, timeout=max(remaining, MIN_GRACE) if grace > 0 else 0),
                rpc_timeout=max(remaining, MIN_GRACE) + 30)

    async def kill_pod(self, state: PodState, rp: RuntimePod, grace: int) -> None:
        """Stop every container (regular ones together, then sidecars in reverse), then the
        sandboxes."""
        pod = state.pod
        self._invalidate(state)
        sidecars = [c.name for c in pod.spec.initContainers if podstatus.is_sidecar(c)]
        running = rp.running()
        first = [c for c in running if c.name not in sidecars]
        await asyncio.gather(*(self._kill_container(state, c, self._spec(pod, c.name), grace,
                                                    "")
                               for c in first))
        for name in reversed(sidecars):
            for c in running:
                if c.name == name:
                    await self._kill_container(state, c, self._spec(pod, name), grace, "")
        for sb in rp.sandboxes:
            if sb.ready:
                with contextlib.suppress(RuntimeError_):
                    await self.d.runtime.call("StopPodSandbox", cri.StopPodSandboxRequest(
                        pod_sandbox_id=sb.id))

    async def _stop_terminal(self, state: PodState, rp: RuntimePod) -> None:
        if rp.running() or rp.ready_sandbox() is not None:
            await self.kill_pod(state, rp, cri_config.grace_period(state.pod))
            rp = await self.inspect(state.uid)
        self.d.probes.stop_pod(state.uid)
        await self.write_status(state, rp)
        # A pod that ended keeps its object (and logs) but not its volumes: an evicted
        # pod's emptyDir is what gives the disk back.
        await asyncio.to_thread(self.d.volumes.teardown_volumes, state.uid)

    async def _evict(self, state: PodState, rp: RuntimePod,
                     request: EvictionRequest) -> RuntimePod:
        """Kill the pod for the eviction manager; its status becomes Failed/Evicted."""
        view = state.view
        view.terminal_phase = "Failed"
        view.terminal_reason = EVICTED
        view.terminal_message = request.message
        view.disruption_reason = TERMINATION_BY_KUBELET
        self.d.event(state.pod, "", "Warning", EVICTED, request.message)
        await self.kill_pod(state, rp, request.grace)
        rp = await self.inspect(state.uid)
        self._note_exits(state, rp)
        view.waiting.clear()
        return rp

    async def _sync_rejected(self, state: PodState) -> None:
        """A pod admission refused: Failed with the reason, never started; deleted when its
        deletion is asked for."""
        rejection = state.rejection
        assert rejection is not None
        pod = state.pod
        if state.deleting:
            if not state.gone and not state.static:
                await self._final_delete(pod)
            await self.cleanup(state, RuntimePod(state.uid))
            return
        if state.rejection_written or state.gone:
            return
        if not state.last_status:
            self.d.event(pod, "", "Warning", rejection.reason, rejection.message)
        status = core_pb2.PodStatus(phase="Failed", reason=rejection.reason,
                                    message=rejection.status_message,
                                    qosClass=podstatus.qos_class(pod))
        status.conditions.extend(pod.status.conditions)
        state.last_status = status
        updated = copy_object(pod)
        updated.status.CopyFrom(status)
        updated.metadata.resourceVersion = ""
        try:
            await self.d.client.update_status(updated)
        except ClientError as e:
            if is_not_found(e):
                state.gone = True
                return
            log.warning("pod %s: status update failed: %s", state.key, e)
            raise
        state.rejection_written = True

    async def terminate(self, state: PodState, rp: RuntimePod) -> None:
        """Graceful termination of a deleted pod, the final delete, then clean-up."""
        pod = state.pod
        grace = cri_config.grace_period(pod) if not state.gone else min(
            cri_config.grace_period(pod), MIN_GRACE)
        await self.kill_pod(state, rp, grace)
        self.d.probes.stop_pod(state.uid)
        rp = await self.inspect(state.uid)
        self._note_exits(state, rp)
        state.view.waiting.clear()
        if not state.gone and not state.static:
            await self.write_status(state, rp)
            await self._final_delete(pod)
        await self.cleanup(state, rp)

    async def _final_delete(self, pod: core_pb2.Pod) -> None:
        """The kubelet's last word on a pod: delete it now, only if it is still this pod."""
        try:
            await self.d.client.delete(core_pb2.Pod, pod.metadata.name,
                                       namespace=pod.metadata.namespace,
                                       grace_period_seconds=0,
                                       precondition_uid=pod.metadata.uid)
        except ClientError as e:
            if not is_not_found(e) and not is_conflict(e):
                raise

    async def cleanup(self, state: PodState, rp: RuntimePod | None = None) -> None:
        """Remove the pod's sandboxes (and containers), volumes and back-off entries."""
        self._invalidate(state)
        if rp is None:
            rp = await self.inspect(state.uid)
        for sb in rp.sandboxes:
            with contextlib.suppress(RuntimeError_):
                await self.d.runtime.call("RemovePodSandbox", cri.RemovePodSandboxRequest(
                    pod_sandbox_id=sb.id))
        await asyncio.to_thread(self.d.volumes.teardown, state.uid)
        root = self.d.config.cgroup_root
        if root:  # the runtime leaves the cgroup parent it was given to us
            paths = [cgroups.pod_cgroup(root, state.pod)] if state.pod.spec.containers \
                else cgroups.all_pod_cgroups(root, state.uid)
            for path in paths:
                await asyncio.to_thread(cgroups.remove_cgroup, path)
        self.d.backoff.forget_prefix(f"{state.uid}/")
        self.d.image_backoff.forget_prefix(f"{state.uid}/")
        state.finished = True


def _latest_tag(image: str) -> bool:
    if "@" in image:
        return False
    last = image.rsplit("/", 1)[-1]
    return ":" not in last or last.endswith(":latest")


def _fmt_delay(seconds: float) -> str:
    s = int(seconds)
    if s >= 60:
        return f"{s // 60}m{s % 60}s" if s % 60 else f"{s // 60}m0s"
    return f"{s}s"

