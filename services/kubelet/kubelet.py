"""The kubelet: wires the node agent, pod workers, PLEG, probes and the HTTP server.

``Kubelet(config).run()`` (or ``run_kubelet(config)``) runs until cancelled:

1. asks the runtime for its version (waiting for it to come up), starts the
   HTTP server (its port goes into the Node's daemonEndpoints);
2. registers the Node, then watches the pods bound to it
   (``spec.nodeName=<node>``) and the Services (for service-link variables);
3. hands every pod to its pod worker; the PLEG relists the runtime and wakes
   workers; housekeeping removes what runs for pods that no longer exist;
4. heartbeats the Lease and posts node status; reads static pod manifests.

A restarted kubelet finds its pods' sandboxes and containers again by their
labels, so pods that are running keep running: the first sync of each pod
sees everything in place and starts nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from pathlib import Path

from pilothouse.api.kinds import KindRegistry
from pilothouse.client import Client, EventRecorder, SharedInformerFactory, connect
from pilothouse.client.clock import AsyncClock, real_clock
from pilothouse.client.errors import ClientError, is_already_exists, is_not_found
from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.kubelet import (
    admission,
    cgroups,
    cri_config,
    eviction,
    nodestatus,
    static_pods,
)
from pilothouse.services.kubelet.backoff import Backoff
from pilothouse.services.kubelet.config import KubeletConfig
from pilothouse.services.kubelet.image_gc import CRIImages, ImageGCManager
from pilothouse.services.kubelet.metrics import KubeletMetrics
from pilothouse.services.kubelet.node import NodeAgent
from pilothouse.services.kubelet.pod_sync import EvictionRequest, PodState, PodSyncer, SyncDeps
from pilothouse.services.kubelet.pod_workers import PLEG, PodWorkers
from pilothouse.services.kubelet.podstatus import RuntimePod
from pilothouse.services.kubelet.probes import ProbeManager
from pilothouse.services.kubelet.runtime import RuntimeClient, RuntimeError_
from pilothouse.services.kubelet.server import KubeletServer
from pilothouse.services.kubelet.volumes import VolumeManager

log = logging.getLogger("pilothouse.kubelet")

RUNTIME_WAIT = 0.5


class Kubelet:
    def __init__(self, config: KubeletConfig, *, client: Client | None = None,
                 clock: AsyncClock | None = None, runtime: RuntimeClient | None = None,
                 metrics: KubeletMetrics | None = None,
                 summary_provider: eviction.SummaryProvider | None = None) -> None:
        if not config.node_name:
            raise ValueError("the kubelet needs a node name")
        self.config = config
        self.node_name = config.node_name
        self.clock = clock or real_clock()
        self.metrics = metrics or KubeletMetrics()
        self._own_client = client is None
        self.client = client or connect(config.apiserver)
        self.runtime = runtime or RuntimeClient(config.runtime_endpoint, metrics=self.metrics,
                                                timeout=config.runtime_request_timeout)
        self.server = KubeletServer(self)
        self.registered = asyncio.Event()
        self.synced = asyncio.Event()
        self.node_ip = config.node_ip
        self.node_agent: NodeAgent | None = None
        self.recorder = EventRecorder(self.client, "kubelet", host=self.node_name,
                                      clock=self.clock)
        self.probes = ProbeManager(self.runtime, self.clock, on_change=self._wake,
                                   on_event=self._probe_event)
        self.volumes = VolumeManager(config.root_dir)
        self.factory = SharedInformerFactory(self.client, clock=self.clock)
        self.pods = self.factory.informer_for(
            core_pb2.Pod, field_selector=f"spec.nodeName={self.node_name}")
        self.services = self.factory.informer_for(core_pb2.Service)
        self.pleg = PLEG(self.runtime, clock=self.clock, period=config.pleg_relist_period,
                         metrics=self.metrics, on_change=self._wake,
                         on_relist=self._after_relist)
        self.syncer = PodSyncer(SyncDeps(
            config=config, client=self.client, runtime=self.runtime, clock=self.clock,
            probes=self.probes, volumes=self.volumes,
            backoff=Backoff(clock=self.clock, initial=config.backoff_initial,
                            maximum=config.backoff_max, reset_after=config.backoff_reset),
            image_backoff=Backoff(clock=self.clock, initial=config.backoff_initial,
                                  maximum=config.backoff_max, reset_after=config.backoff_reset),
            metrics=self.metrics, event=self._event, node_ip=self.node_ip,
            services=lambda: self.services.list(),
            node_allocatable=self._allocatable, runtime_cache=self.pleg))
        self.workers = PodWorkers(self.syncer, clock=self.clock,
                                  resync_period=config.resync_period,
                                  runtime_has=lambda uid: uid in self.pleg.pods_with_sandboxes,
                                  concurrent_starts=config.concurrent_pod_starts)
        self.images = CRIImages(self.runtime)
        self.image_gc = ImageGCManager(
            runtime=self.images,
            image_fs=lambda: self.images.image_fs(self.config.root_dir), clock=self.clock,
            high_threshold_percent=config.image_gc_high_threshold_percent,
            low_threshold_percent=config.image_gc_low_threshold_percent,
            minimum_age=config.image_minimum_gc_age,
            sandbox_image=config.pod_infra_container_image, event=self._node_event)
        self._summary_provider = summary_provider
        self.eviction: eviction.EvictionManager | None = None
        self.static: dict[str, static_pods.StaticPod] = {}
        self.static_errors: dict[Path, str] = {}
        self._mirrors: dict[str, str] = {}  # static uid -> mirror pod name
        self._boot = datetime.now(UTC)
        self._kinds = KindRegistry.builtin()
        self.runtime_ready = True
        self.runtime_message = ""

    # -- what others ask of us -------------------------------------------------------------

    def find_pod(self, namespace: str, name: str) -> core_pb2.Pod | None:
        for state in self.workers.states():
            meta = state.pod.metadata
            if meta.namespace == namespace and (meta.name == name or
                                                state.mirror_name == name):
                return state.pod
        return None

    def running_pods(self) -> list[core_pb2.Pod]:
        return [s.pod for s in self.workers.states() if not s.finished]

    async def inspect(self, uid: str) -> RuntimePod:
        return await self.syncer.inspect(uid)

    def healthy(self) -> tuple[bool, str]:
        if not self.pleg.healthy():
            return False, "PLEG is not healthy: the runtime has not been relisted recently"
        return True, ""

    def boot_time(self) -> datetime:
        return self._boot

    def _allocatable(self) -> dict[str, str]:
        node = self.node_agent.node if self.node_agent is not None else None
        if node is None:
            return {}
        return {k: v.string for k, v in node.status.allocatable.items()}

    # -- events ----------------------------------------------------------------------------------

    def _event(self, pod: core_pb2.Pod, container: str, type_: str, reason: str,
               message: str) -> None:
        ref = core_pb2.ObjectReference(kind="Pod", apiVersion="v1", name=pod.metadata.name,
                                       namespace=pod.metadata.namespace, uid=pod.metadata.uid)
        state = self.workers.state(pod.metadata.uid)
        if state is not None and state.static:
            if not state.mirror_name:
                return
            ref.name = state.mirror_name
            ref.ClearField("uid")
        if container:
            where = "initContainers" if any(c.name == container
                                            for c in pod.spec.initContainers) else "containers"
            ref.fieldPath = f"spec.{where}{{{container}}}"
        self.recorder.event(ref, type_, reason, message)

    def _node_event(self, type_: str, reason: str, message: str) -> None:
        ref = core_pb2.ObjectReference(kind="Node", apiVersion="v1", name=self.node_name,
                                       uid=self.node_name)
        self.recorder.event(ref, type_, reason, message)

    def _evict(self, pod: core_pb2.Pod, message: str) -> bool:
        return self.workers.evict(pod.metadata.uid, EvictionRequest(
            message, eviction.IMMEDIATE_GRACE))

    def _probe_event(self, uid: str, type_: str, reason: str, message: str) -> None:
        state = self.workers.state(uid)
        if state is not None:
            self._event(state.pod, "", type_, reason, message)

    def _wake(self, uid: str) -> None:
        if self.workers.state(uid) is not None:
            self.workers.wake(uid)

    def _after_relist(self, changed: set[str]) -> None:
        """Wake the workers whose runtime view this relist contradicts (a worker without
        one reads the runtime anyway: woken when its pod changed). A change the worker
        made itself, now seen by the relist, wakes nobody."""
        for state in self.workers.states():
            if state.runtime is None:
                if state.uid in changed:
                    self.workers.wake(state.uid)
            elif not self.pleg.agrees(state.uid, state.runtime, state.runtime_epoch):
                self.workers.wake(state.uid)

    # -- informer handlers (only hand over; never block) ------------------------------------

    def _on_pod(self, pod: core_pb2.Pod) -> None:
        if static_pods.is_mirror(pod):
            return
        if self.workers.state(pod.metadata.uid) is None:
            self.workers.update(pod, rejection=self.admit(pod))
        else:
            self.workers.update(pod)

    def admit(self, pod: core_pb2.Pod) -> admission.Rejection | None:
        """Admission of a pod new to this kubelet (decided here, in the informer's handler, so
        pods are admitted one at a time against those admitted before them). Pods that
        already run (a restarted kubelet), have ended or are being deleted are not judged."""
        uid = pod.metadata.uid
        node = self.node_agent.node if self.node_agent is not None else None
        if node is None or pod.metadata.HasField("deletionTimestamp") or \
                pod.status.phase in ("Succeeded", "Failed") or \
                uid in self.pleg.pods_with_sandboxes:
            return None
        pressure = self.eviction.pressure() if self.eviction is not None else set()
        rejection = admission.admit_under_pressure(pod, pressure)
        if rejection is None:
            active = [s.pod for s in self.workers.states() if s.active]
            rejection = admission.admit(pod, node, active)
        if rejection is not None:
            log.info("pod %s/%s rejected: %s: %s", pod.metadata.namespace, pod.metadata.name,
                     rejection.reason, rejection.message)
        return rejection

    def _on_pod_update(self, old: core_pb2.Pod, new: core_pb2.Pod) -> None:
        self._on_pod(new)

    def _on_pod_delete(self, obj: object) -> None:
        pod = getattr(obj, "obj", obj)
        if isinstance(pod, core_pb2.Pod) and not static_pods.is_mirror(pod):
            self.workers.remove(pod.metadata.uid)

    # -- running ----------------------------------------------------------------------------------

    async def _wait_for_runtime(self) -> None:
        while True:
            try:
                version = await self.runtime.version()
                log.info("runtime %s %s (CRI %s)", version.runtime_name,
                         version.runtime_version, version.runtime_api_version)
                return
            except RuntimeError_ as e:
                log.info("waiting for the container runtime at %s: %s",
                         self.config.runtime_endpoint, e.message)
                await self.clock.sleep(RUNTIME_WAIT)

    async def node_health(self) -> nodestatus.NodeHealth:
        health = nodestatus.NodeHealth()
        try:
            resp = await self.runtime.call("Status", cri.StatusRequest(), rpc_timeout=10)
        except RuntimeError_ as e:
            health.runtime_ready = False
            health.runtime_message = f"container runtime is down: {e.message}"
            return health
        for cond in resp.status.conditions:
            if cond.type == "RuntimeReady" and not cond.status:
                health.runtime_ready = False
                health.runtime_message = f"container runtime not ready: {cond.message}"
            if cond.type == "NetworkReady" and not cond.status:
                health.network_ready = False
                health.runtime_message = health.runtime_message or \
                    f"container runtime network not ready: {cond.message}"
        if not self.pleg.healthy() and self.pleg.relists:
            health.runtime_ready = False
            health.runtime_message = "PLEG is not healthy"
        if self.eviction is not None:
            health.pressure = self.eviction.pressure()
        return health

    async def start(self) -> None:
        """Everything up to a synced pod informer (``run`` continues from there)."""
        self.config.root_dir.mkdir(parents=True, exist_ok=True)
        await self._wait_for_runtime()
        port = await self.server.start(self.config.address, self.config.port)
        if not self.node_ip:
            self.node_ip = nodestatus.host_ip()
            self.syncer.d.node_ip = self.node_ip
        machine = await asyncio.to_thread(nodestatus.machine_info, self.config.root_dir)
        provider = self._summary_provider or eviction.NodeSummaryProvider(
            runtime=self.runtime, root_dir=self.config.root_dir,
            pod_dir=self.volumes.pod_dir,
            log_dir=lambda pod: cri_config.log_directory(self.config.root_dir, pod),
            pid_max=machine.pid_max)
        self.eviction = eviction.EvictionManager(
            thresholds=eviction.parse_thresholds(self.config.eviction_hard),
            provider=provider, clock=self.clock,
            pods=lambda: [s.pod for s in self.workers.states() if s.active and not s.static],
            evict=self._evict, reclaim_disk=self.image_gc.delete_unused_images,
            monitoring_interval=self.config.eviction_monitoring_interval,
            pressure_transition_period=self.config.eviction_pressure_transition_period)
        version = await self.runtime.version()
        self.node_agent = NodeAgent(
            client=self.client, clock=self.clock, config=self.config, machine=machine,
            node_ip=self.node_ip, kubelet_port=port,
            runtime_version=f"{version.runtime_name}://{version.runtime_version}",
            health=self.node_health)
        while True:
            try:
                await self.node_agent.register()
                break
            except ClientError as e:
                log.warning("registering node %s failed: %s; retrying", self.node_name, e)
                await self.clock.sleep(1.0)
        with contextlib.suppress(ClientError):
            await self.node_agent.renew_lease()
        self.registered.set()
        self.pods.add_event_handler(on_add=self._on_pod, on_update=self._on_pod_update,
                                    on_delete=self._on_pod_delete)
        self.recorder_task = asyncio.create_task(self.recorder.run(), name="kubelet-events")
        await self.pleg.relist()  # before any worker starts: what already runs is adopted
        self.factory.start()
        await self.factory.wait_for_sync()
        await self.housekeeping()
        self.synced.set()
        log.info("kubelet %s ready: %d pod(s) bound here, serving on %s:%d", self.node_name,
                 len(self.pods.list()), self.config.address, port)

    async def run(self) -> None:
        """Run until cancelled; clean shutdown leaves pods running (a restart adopts them)."""
        try:
            await self.start()
            assert self.node_agent is not None
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.node_agent.run(), name="node-agent")
                tg.create_task(self.pleg.run(), name="pleg")
                tg.create_task(self._housekeeping_loop(), name="housekeeping")
                assert self.eviction is not None
                tg.create_task(self.eviction.run(), name="eviction-manager")
                tg.create_task(self.image_gc.run(self.config.image_gc_period), name="image-gc")
                if self.config.static_pod_path is not None:
                    tg.create_task(self._static_loop(), name="static-pods")
        finally:
            await self.close()

    async def close(self) -> None:
        await self.workers.close()
        await self.probes.close()
        task = getattr(self, "recorder_task", None)
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.recorder.flush(), 2)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.factory.shutdown()
        await self.server.stop()
        await self.runtime.close()
        if self._own_client:
            await self.client.close()

    # -- housekeeping -------------------------------------------------------------------------

    async def _housekeeping_loop(self) -> None:
        while True:
            await self.clock.sleep(self.config.housekeeping_period)
            try:
                await self.housekeeping()
            except (RuntimeError_, ClientError) as e:
                log.warning("housekeeping failed: %s", e)

    async def housekeeping(self) -> None:
        """Kill and remove what runs for pods this kubelet no longer has."""
        known = {s.uid for s in self.workers.states()} | set(self.static)
        for uid in list(self.pleg.pods_with_sandboxes):
            if uid in known or not uid:
                continue
            log.info("removing the sandboxes and containers of pod %s (no longer bound here)",
                     uid)
            orphan = core_pb2.Pod()
            orphan.metadata.uid = uid
            state = PodState(pod=orphan, first_seen=self.clock.monotonic(), gone=True)
            rp = await self.syncer.inspect(uid)
            await self.syncer.kill_pod(state, rp, 2)
            await self.syncer.cleanup(state)
            self.pleg.pods_with_sandboxes.discard(uid)
        if self.config.cgroup_root:  # pod cgroups whose removal failed (processes were left)
            found = await asyncio.to_thread(cgroups.pod_uids_with_cgroups,
                                            self.config.cgroup_root)
            for uid, paths in found.items():
                if uid not in known and uid not in self.pleg.pods_with_sandboxes:
                    for path in paths:
                        await asyncio.to_thread(cgroups.remove_cgroup, path)
        pods_dir = self.config.root_dir / "pods"
        if pods_dir.is_dir():
            for d in pods_dir.iterdir():
                if d.name not in known:
                    await asyncio.to_thread(self.volumes.teardown, d.name)

    # -- static pods ----------------------------------------------------------------------------

    async def _static_loop(self) -> None:
        while True:
            try:
                await self.sync_static_pods()
            except ClientError as e:
                log.warning("static pods: %s", e)
            await self.clock.sleep(self.config.file_check_frequency)

    async def sync_static_pods(self) -> None:
        assert self.config.static_pod_path is not None
        found = await asyncio.to_thread(static_pods.scan, self.config.static_pod_path,
                                        self.node_name, self._kinds, self.static_errors)
        for uid in [u for u in self.static if u not in found]:
            gone = self.static.pop(uid)
            self.workers.remove(uid)
            await self._delete_mirror(gone.pod)
        for uid, sp in found.items():
            if uid not in self.static:
                self.static[uid] = sp
            self.workers.update(sp.pod, static=True,
                                mirror_name=self._mirrors.get(uid, ""))
            await self._ensure_mirror(sp)

    async def _ensure_mirror(self, sp: static_pods.StaticPod) -> None:
        pod = sp.pod
        name, ns = pod.metadata.name, pod.metadata.namespace
        mirror = self.pods.get(name, ns)
        want = pod.metadata.annotations[static_pods.CONFIG_HASH]
        if mirror is not None and (
                mirror.metadata.annotations.get(static_pods.CONFIG_MIRROR) != want
                or mirror.metadata.HasField("deletionTimestamp")):
            with contextlib.suppress(ClientError):
                await self.client.delete(core_pb2.Pod, name, namespace=ns,
                                         grace_period_seconds=0,
                                         precondition_uid=mirror.metadata.uid)
            mirror = None
        if mirror is None:
            node_uid = self.node_agent.node_uid if self.node_agent is not None else ""
            try:
                await self.client.create(static_pods.mirror_of(pod, node_uid))
            except ClientError as e:
                if not is_already_exists(e):
                    raise
            self._mirrors[sp.uid] = name
            self.workers.set_mirror(sp.uid, name)
        elif self._mirrors.get(sp.uid) != name:
            self._mirrors[sp.uid] = name
            self.workers.set_mirror(sp.uid, name)

    async def _delete_mirror(self, pod: core_pb2.Pod) -> None:
        self._mirrors.pop(pod.metadata.uid, None)
        try:
            await self.client.delete(core_pb2.Pod, pod.metadata.name,
                                     namespace=pod.metadata.namespace, grace_period_seconds=0)
        except ClientError as e:
            if not is_not_found(e):
                raise


async def run_kubelet(config: KubeletConfig) -> None:
    """Run a kubelet until cancelled (what ``pilothouse up`` calls)."""
    await Kubelet(config).run()


