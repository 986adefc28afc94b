"""The last scheduling attempt of each pod, kept in memory for ``scheduler explain``.

For an attempt we keep: the result and message; for every node that failed
Filter, the plugin that rejected it and why (Kubernetes stops at the first
failing filter, so later filters did not run on it); and for the best-scored
nodes, each score plugin's raw and normalized score and the weighted total.
Bounded: the most recent ``capacity`` pods; per pod the top ``top_nodes``
scored nodes.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from itertools import compress
from typing import Any

from pilothouse.services.scheduler.framework import NodeToStatus, ScoreRecord

__all__ = ["Attempt", "ExplainStore"]


@dataclass
class Attempt:
    pod: str
    profile: str
    attempt: int
    result: str  # Scheduled, Unschedulable, Error
    node: str = ""
    message: str = ""
    num_all_nodes: int = 0
    evaluated_nodes: int = 0
    feasible_nodes: int = 0
    filter_plugins: list[str] = field(default_factory=list)
    score_plugins: list[str] = field(default_factory=list)
    node_to_status: NodeToStatus = field(default_factory=dict)
    scored_nodes: list[str] = field(default_factory=list)
    totals: list[int] = field(default_factory=list)
    score_records: list[ScoreRecord] = field(default_factory=list)
    nominated_node: str = ""
    time: float = field(default_factory=time.time)

    def to_dict(self, top_nodes: int = 50) -> dict[str, Any]:
        filters = {
            node: {"plugin": s.plugin, "code": s.code_name, "reasons": list(s.reasons)}
            for node, s in sorted(self.node_to_status.items())}
        order = sorted(range(len(self.scored_nodes)), key=lambda i: -self.totals[i]
                       if self.totals else 0)[:top_nodes]
        scores = []
        for i in order:
            entry: dict[str, Any] = {"node": self.scored_nodes[i],
                                     "total": self.totals[i] if self.totals else None,
                                     "plugins": {}}
            for rec in self.score_records:
                entry["plugins"][rec.plugin] = {"raw": rec.raw[i], "normalized":
                                                rec.normalized[i], "weight": rec.weight}
            scores.append(entry)
        return {
            "pod": self.pod, "profile": self.profile, "attempt": self.attempt,
            "result": self.result, "node": self.node, "message": self.message,
            "nominatedNode": self.nominated_node,
            "numAllNodes": self.num_all_nodes, "evaluatedNodes": self.evaluated_nodes,
            "feasibleNodes": self.feasible_nodes, "filterPlugins": self.filter_plugins,
            "scorePlugins": self.score_plugins, "filters": filters, "scores": scores,
            "time": self.time,
        }


class ExplainStore:
    def __init__(self, capacity: int = 5000, top_nodes: int = 50) -> None:
        self.capacity = capacity
        self.top_nodes = top_nodes
        self._attempts: OrderedDict[str, Attempt] = OrderedDict()

    def record(self, attempt: Attempt) -> None:
        """Keep ``attempt`` (its best ``top_nodes`` scored nodes only: what ``to_dict``
        shows; 5000 attempts with every scored node of a 5000-node cluster held ~200 MB)."""
        n = len(attempt.scored_nodes)
        if n > self.top_nodes and len(attempt.totals) == n:
            keep = _top(attempt.totals, self.top_nodes)
            attempt.scored_nodes = list(map(attempt.scored_nodes.__getitem__, keep))
            attempt.totals = list(map(attempt.totals.__getitem__, keep))
            attempt.score_records = [
                ScoreRecord(r.plugin, r.weight, list(map(r.raw.__getitem__, keep)),
                            list(map(r.normalized.__getitem__, keep)))
                for r in attempt.score_records]
        self._attempts[attempt.pod] = attempt
        self._attempts.move_to_end(attempt.pod)
        while len(self._attempts) > self.capacity:
            self._attempts.popitem(last=False)

    def get(self, key: str) -> Attempt | None:
        return self._attempts.get(key)

    def forget(self, key: str) -> None:
        self._attempts.pop(key, None)

    def __len__(self) -> int:
        return len(self._attempts)


def _top(totals: list[int], k: int) -> list[int]:
    """Indexes of the ``k`` best totals in the order ``to_dict`` gives (highest first,
    ties in scoring order), with C-level sorting and selection (totals repeat a lot)."""
    threshold = sorted(totals, reverse=True)[k - 1]
    above = list(compress(range(len(totals)), map(threshold.__lt__, totals)))
    above.sort(key=totals.__getitem__, reverse=True)  # stable: ties keep their order
    tied = list(compress(range(len(totals)), map(threshold.__eq__, totals)))
    return above + tied[:k - len(above)]


def format_attempt(doc: dict[str, Any]) -> str:
    """The human-readable explanation ``pilothouse scheduler explain`` prints."""
    lines = [f"Pod {doc['pod']} (profile {doc['profile']}), attempt {doc['attempt']}: "
             f"{doc['result']}" + (f" on {doc['node']}" if doc.get("node") else "")]
    if doc.get("message"):
        lines.append(f"  {doc['message']}")
    if doc.get("nominatedNode"):
        lines.append(f"  nominated node (after preemption): {doc['nominatedNode']}")
    lines.append(f"  nodes: {doc['numAllNodes']} in cluster, {doc['evaluatedNodes']} evaluated, "
                 f"{doc['feasibleNodes']} feasible")
    if doc["filters"]:
        lines.append("")
        lines.append("Filter (first failing plugin per node; later filters did not run):")
        width = max(len(n) for n in doc["filters"])
        for node, f in doc["filters"].items():
            lines.append(f"  {node:<{width}}  {f['plugin'] or '-':<28} {f['code']:<29} "
                         f"{', '.join(f['reasons'])}")
    if doc["scores"]:
        lines.append("")
        plugins = doc["scorePlugins"]
        lines.append("Score (raw/normalized x weight; best first):")
        header = f"  {'node':<20} {'total':>6}  " + "  ".join(f"{p}" for p in plugins)
        lines.append(header)
        for s in doc["scores"]:
            cells = []
            for p in plugins:
                v = s["plugins"].get(p)
                cells.append(f"{p}={v['raw']}/{v['normalized']}x{v['weight']}" if v else
                             f"{p}=skipped")
            total = "" if s["total"] is None else str(s["total"])
            lines.append(f"  {s['node']:<20} {total:>6}  " + "  ".join(cells))
    elif doc["result"] == "Scheduled":
        lines.append("")
        lines.append("Score: not run (only one node was feasible)")
    return "\n".join(lines)
