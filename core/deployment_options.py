"""Serve deployment options derived from a `ModelConfig`.

The one place in Python that maps the config onto Ray Serve's deployment
settings, used by the application builder (`serve/app.py`). The Helm chart does
not call it: its template (`helm/render-cluster/templates/_serve.tpl`) writes
the same options for `serveConfigV2` in Go templates, and
`tests/k8s/test_chart_serve_config.py` proves the two agree through
`serve_deployments`.
"""

from __future__ import annotations

from typing import Any

from core.config import INGRESS_DEPLOYMENT, ClusterConfig, ModelConfig, deployment_name

SERVE_ONLY_FIELDS = frozenset({"autoscaling", "max_ongoing_requests", "max_queued_requests"})
"""`ModelConfig` fields that only Serve reads (as the deployment's options below): a
replica is built without them, so that changing them changes nothing it runs."""


def autoscaling_options(model: ModelConfig) -> dict[str, Any]:
    """Serve `autoscaling_config` for one model."""
    scaling = model.autoscaling
    options: dict[str, Any] = {
        "min_replicas": scaling.min_replicas,
        "max_replicas": scaling.max_replicas,
        "target_ongoing_requests": scaling.target_ongoing_requests,
        "upscale_delay_s": scaling.upscale_delay_s,
        "downscale_delay_s": scaling.downscale_delay_s,
        "metrics_interval_s": scaling.metrics_interval_s,
        "look_back_period_s": max(2 * scaling.metrics_interval_s, 2.0),
    }
    if scaling.initial_replicas is not None:
        options["initial_replicas"] = scaling.initial_replicas
    return options


REQUEST_ROUTER = "serve.least_loaded_router:LeastLoadedRouter"


def request_routing() -> dict[str, Any]:
    """Serve `request_router_config` of every model: the least-loaded replica with room
    (`serve.least_loaded_router`), and short backoffs when every replica is full."""
    return {
        "request_router_class": REQUEST_ROUTER,
        "initial_backoff_s": 0.005,
        "backoff_multiplier": 2.0,
        "max_backoff_s": 0.1,
    }


def model_deployment_options(model_name: str, model: ModelConfig) -> dict[str, Any]:
    """Keyword arguments for `Deployment.options(...)` of a model server."""
    return {
        "name": deployment_name(model_name),
        "ray_actor_options": {
            "num_gpus": model.gpus_per_replica,
            "num_cpus": model.cpus_per_replica,
        },
        "autoscaling_config": autoscaling_options(model),
        "max_ongoing_requests": model.max_ongoing_requests,
        "max_queued_requests": model.max_queued_requests,
        "request_router_config": request_routing(),
        "health_check_period_s": 10.0,
        "health_check_timeout_s": 60.0,
        "graceful_shutdown_timeout_s": 30.0,
    }


def serve_deployments(config: ClusterConfig) -> list[dict[str, Any]]:
    """The `deployments:` list of a Serve config file (serveConfigV2): every model, and
    the ingress with the chart's default scaling (`api:` in values.yaml)."""
    models = [model_deployment_options(name, model) for name, model in config.models.items()]
    return [*models, ingress_deployment_options()]


def ingress_deployment_options(
    min_replicas: int = 2, max_replicas: int = 8, target_ongoing_requests: float = 64
) -> dict[str, Any]:
    """The ingress's deployment in serveConfigV2: autoscaled, at least two replicas."""
    return {
        "name": INGRESS_DEPLOYMENT,
        "autoscaling_config": {
            "min_replicas": min_replicas,
            "max_replicas": max_replicas,
            "target_ongoing_requests": target_ongoing_requests,
        },
    }


def gpu_shortfall(config: ClusterConfig, gpus: float) -> str | None:
    """Why `gpus` GPUs cannot hold every model's minimum replicas, or None if they can."""
    needs = {
        name: model.autoscaling.min_replicas * model.gpus_per_replica
        for name, model in config.models.items()
        if model.gpus_per_replica > 0
    }
    total = sum(needs.values())
    if total <= gpus:
        return None
    listed = ", ".join(f"{name} {need:g}" for name, need in needs.items() if need)
    return (
        f"the models' minimum replicas need {total:g} GPUs ({listed}) but {gpus:g} were "
        f"given: {total - gpus:g} short; give --gpus {total:g} or lower min_replicas"
    )
