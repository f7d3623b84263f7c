from __future__ import annotations

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from colima_ref.domain import validation
from colima_ref.domain.models import ClusterNode
from colima_ref.domain.slots import distribute
from colima_ref.http.convert import converter
from colima_ref.http.json_response import JSONResponse
from colima_ref.http.state import services


async def cluster_nodes(request: Request) -> JSONResponse:
    nodes = await services(request).cluster.nodes()
    return JSONResponse(
        {
            "status": "success",
            "total_nodes": len(nodes),
            "nodes": converter.unstructure(nodes, list[ClusterNode]),
        }
    )


async def cluster_slots(request: Request) -> JSONResponse:
    report = distribute(await services(request).cluster.nodes())
    return JSONResponse({"status": "success", **converter.unstructure(report)})


async def cluster_info(request: Request) -> JSONResponse:
    info = await services(request).cluster.cluster_info()
    # Flat ints and strings already: the converter would only copy it, key by key.
    return JSONResponse({"status": "success", "cluster_info": dict(info)})


async def node_info(request: Request) -> JSONResponse:
    node = validation.node_name(request.path_params["node_name"])
    info = await services(request).cluster.node_info(node)
    return JSONResponse({"status": "success", "node": node, "info": converter.unstructure(info)})


routes: list[BaseRoute] = [
    Route("/redis/cluster/nodes", cluster_nodes, methods=["GET"]),
    Route("/redis/cluster/slots", cluster_slots, methods=["GET"]),
    Route("/redis/cluster/info", cluster_info, methods=["GET"]),
    Route("/redis/nodes/{node_name}/info", node_info, methods=["GET"]),
]
