"""The one converter that turns domain values into the contract's JSON shapes.

Domain classes know nothing of JSON names; every rename and every derived field of a response
lives here (cattrs ``docs/customizing.md``).
"""

from __future__ import annotations

from typing import Any

from cattrs.gen import make_dict_unstructure_fn, override
from cattrs.preconf.json import JsonConverter, make_converter

from colima_ref.domain.health import CheckResult, HealthReport
from colima_ref.domain.models import ClusterNode
from colima_ref.domain.slots import Shard, SlotReport

_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def _is_plain_json(value: Any) -> bool:
    """Whether ``value`` is made of dicts with str keys, lists and JSON scalars only: what a
    probe's info nearly always is, and what can go into the body without unstructuring."""
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not _is_plain_json(item):
                return False
        return True
    if kind is list:
        return all(_is_plain_json(item) for item in value)
    return kind in _JSON_SCALARS


def _node_address(node: ClusterNode) -> dict[str, Any]:
    return {"host": node.host, "port": node.port, "node_id": node.node_id}


def _shard(shard: Shard) -> dict[str, Any]:
    return {
        "start_slot": shard.slots.start,
        "end_slot": shard.slots.end,
        "slots_count": shard.slots.count,
        "master": _node_address(shard.master),
        "replicas": [_node_address(replica) for replica in shard.replicas],
    }


def _make_converter() -> JsonConverter:
    conv = make_converter()

    def unstructure_check(result: CheckResult) -> dict[str, Any]:
        health = result.health
        info = health.info
        # A probe's info sits beside status, as the contract's health examples show it.
        body: dict[str, Any] = {
            "status": health.status,
            "latency_ms": round(result.latency_ms, 2),
            **(info if _is_plain_json(info) else conv.unstructure(info)),
        }
        if health.error is not None:
            body["error"] = health.error
        return body

    def unstructure_report(report: HealthReport) -> dict[str, Any]:
        services = {name: unstructure_check(result) for name, result in report.services.items()}
        return {"status": report.status, "services": services}

    cluster_node = make_dict_unstructure_fn(ClusterNode, conv, slots=override(rename="slot_ranges"))

    def unstructure_node(node: ClusterNode) -> dict[str, Any]:
        body = cluster_node(node)
        body["slots_count"] = sum(slots.count for slots in node.slots)
        body["slot_ranges"] = body.pop("slot_ranges")  # after slots_count, as the contract lists
        return body

    conv.register_unstructure_hook(ClusterNode, unstructure_node)
    conv.register_unstructure_hook(CheckResult, unstructure_check)
    conv.register_unstructure_hook(HealthReport, unstructure_report)
    conv.register_unstructure_hook(Shard, _shard)
    conv.register_unstructure_hook(
        SlotReport,
        make_dict_unstructure_fn(
            SlotReport,
            conv,
            assigned=override(rename="total_slots"),
            shards=override(rename="slot_distribution"),
            slots_per_master=override(omit=True),
        ),
    )
    return conv


converter = _make_converter()
