"""What `GET /v1/status` and `rendercluster status` show: deployments and replicas."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray.serve.context import _get_global_client
from ray.serve.schema import ServeInstanceDetails

from core.config import APP_NAME


def deployment_status(in_flight: Mapping[str, int], model_deployments: Mapping[str, str]) -> dict:
    """Per deployment: status, running and target replicas, and (for models) queue depth.

    `model_deployments` maps deployment name -> model name; `in_flight` counts the
    requests this ingress has sent to each model that have not come back yet.
    """
    details = ServeInstanceDetails(**_get_global_client().get_serve_details())
    app = details.applications.get(APP_NAME)
    if app is None:
        return {"application": APP_NAME, "status": "NOT_STARTED", "deployments": []}
    deployments: list[dict[str, Any]] = []
    for name, deployment in app.deployments.items():
        running = sum(1 for replica in deployment.replicas if replica.state == "RUNNING")
        model = model_deployments.get(name)
        deployments.append(
            {
                "name": name,
                "model": model,
                "status": deployment.status.value,
                "replicas_running": running,
                "replicas_target": deployment.target_num_replicas,
                "in_flight": in_flight.get(model, 0) if model else None,
            }
        )
    return {"application": APP_NAME, "status": app.status.value, "deployments": deployments}
