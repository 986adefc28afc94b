"""Every controller the controller-manager can run: one descriptor per line.

A new controller adds one import and one list entry; ``--controllers``
selects among them by name (see ``manager.select_controllers``).
"""

from __future__ import annotations

from pilothouse.services.controllers.base import ControllerDescriptor
from pilothouse.services.controllers.cronjob import DESCRIPTOR as CRONJOB
from pilothouse.services.controllers.daemonset import DESCRIPTOR as DAEMONSET
from pilothouse.services.controllers.deployment import DESCRIPTOR as DEPLOYMENT
from pilothouse.services.controllers.disruption import DESCRIPTOR as DISRUPTION
from pilothouse.services.controllers.endpoints import DESCRIPTOR as ENDPOINTS
from pilothouse.services.controllers.endpointslice import DESCRIPTOR as ENDPOINTSLICE
from pilothouse.services.controllers.garbagecollector import DESCRIPTOR as GARBAGECOLLECTOR
from pilothouse.services.controllers.job import DESCRIPTOR as JOB
from pilothouse.services.controllers.job import TTL_DESCRIPTOR as TTL_AFTER_FINISHED
from pilothouse.services.controllers.namespace import DESCRIPTOR as NAMESPACE
from pilothouse.services.controllers.nodelifecycle import DESCRIPTOR as NODELIFECYCLE
from pilothouse.services.controllers.replicaset import DESCRIPTOR as REPLICASET
from pilothouse.services.controllers.serviceaccount import DESCRIPTOR as SERVICEACCOUNT
from pilothouse.services.controllers.statefulset import DESCRIPTOR as STATEFULSET

CONTROLLERS: list[ControllerDescriptor] = [
    CRONJOB,
    DAEMONSET,
    DEPLOYMENT,
    DISRUPTION,
    ENDPOINTS,
    ENDPOINTSLICE,
    GARBAGECOLLECTOR,
    JOB,
    NAMESPACE,
    NODELIFECYCLE,
    REPLICASET,
    SERVICEACCOUNT,
    STATEFULSET,
    TTL_AFTER_FINISHED,
]
