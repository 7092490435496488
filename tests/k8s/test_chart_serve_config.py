"""serveConfigV2 and the Ray cluster agree with the config the values carry."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
import yaml
from k8s_support import VALUES_FILES, objects, one, render, values_for

from core.config import APP_IMPORT_PATH, APP_NAME
from core.config_file import config_from_dict
from core.deployment_options import serve_deployments

CASES = list(VALUES_FILES)


def serve_config(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return yaml.safe_load(one(objs, "RayService")["spec"]["serveConfigV2"])


def cluster_spec(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objs, "RayService")["spec"]["rayClusterConfig"]


def merged_values(case: str) -> dict[str, Any]:
    import helm_python
    from k8s_support import CHART

    with helm_python.Chart.load(CHART) as chart:
        return chart.merge_values(values_for(case))


@pytest.mark.parametrize("case", CASES)
def test_serve_config_loads_back_into_the_values_config(case, rendered_objects):
    config = serve_config(rendered_objects[case])
    assert config["http_options"] == {"host": "0.0.0.0", "port": 8000}
    (app,) = config["applications"]
    assert (app["name"], app["import_path"], app["route_prefix"]) == (
        APP_NAME,
        APP_IMPORT_PATH,
        "/",
    )
    loaded = config_from_dict(app["args"]["config"])
    expected = config_from_dict(
        {**merged_values(case)["cluster"], "model_cache_dir": "/home/ray/model-cache"}
    )
    assert loaded == expected


@pytest.mark.parametrize("case", CASES)
def test_deployments_equal_the_code_s_deployment_options(case, rendered_objects):
    (app,) = serve_config(rendered_objects[case])["applications"]
    config = config_from_dict(app["args"]["config"])
    by_name = sorted(serve_deployments(config), key=lambda d: d["name"])
    assert sorted(app["deployments"], key=lambda d: d["name"]) == by_name


def test_zero_valued_overrides_survive_the_defaults_merge():
    values = {
        "cluster": {
            "models": {
                "tiny": None,
                "cpu": {
                    "source": "tiny:3",
                    "gpus_per_replica": 0,
                    "autoscaling": {"min_replicas": 0, "initial_replicas": 0},
                },
            }
        }
    }
    (app,) = serve_config(objects(render(values)))["applications"]
    deployment, ingress = app["deployments"]
    assert ingress["name"] == "ingress"
    assert deployment["ray_actor_options"]["num_gpus"] == 0
    assert deployment["autoscaling_config"]["min_replicas"] == 0
    assert deployment["autoscaling_config"]["initial_replicas"] == 0
    assert [deployment, ingress] == serve_deployments(config_from_dict(app["args"]["config"]))


def test_each_model_gets_its_gpus_and_autoscaling(rendered_objects):
    (app,) = serve_config(rendered_objects["prod"])["applications"]
    deployments = {d["name"]: d for d in app["deployments"]}
    assert set(deployments) == {"model-sdxl", "model-flux", "ingress"}
    flux, sdxl = deployments["model-flux"], deployments["model-sdxl"]
    assert flux["ray_actor_options"] == {"num_gpus": 2, "num_cpus": 4}
    assert (
        flux["autoscaling_config"]["min_replicas"],
        flux["autoscaling_config"]["max_replicas"],
    ) == (1, 3)
    assert sdxl["ray_actor_options"] == {"num_gpus": 1, "num_cpus": 2}
    scaling = sdxl["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["initial_replicas"], scaling["max_replicas"]) == (
        0,
        1,
        8,
    )
    assert scaling["metrics_interval_s"] == 0.5
    assert scaling["look_back_period_s"] == 2.0


def test_serve_accepts_the_config_and_the_import_path_builds_the_app(rendered_objects):
    from ray.serve.schema import ServeDeploySchema

    config = serve_config(rendered_objects["ci"])
    ServeDeploySchema.model_validate(config)
    module, attribute = APP_IMPORT_PATH.split(":")
    build_app = getattr(importlib.import_module(module), attribute)
    (app,) = config["applications"]
    assert build_app(app["args"]) is not None


def test_autoscaling_is_on_and_the_head_has_no_gpus(rendered_objects):
    for objs in rendered_objects.values():
        spec = cluster_spec(objs)
        assert spec["enableInTreeAutoscaling"] is True
        assert spec["autoscalerOptions"]["resources"]["limits"]
        head = spec["headGroupSpec"]
        assert head["rayStartParams"]["num-gpus"] == "0"
        (container,) = head["template"]["spec"]["containers"]
        assert "nvidia.com/gpu" not in container["resources"]["limits"]
        assert {"serve": 8000, "dashboard": 8265}.items() <= {
            p["name"]: p["containerPort"] for p in container["ports"]
        }.items()


@pytest.mark.parametrize("case", CASES)
def test_every_gpu_class_is_a_worker_group_with_its_limits(case, rendered_objects):
    wanted = merged_values(case)["workerGroups"]
    groups = cluster_spec(rendered_objects[case])["workerGroupSpecs"]
    assert [g["groupName"] for g in groups] == [w["name"] for w in wanted]
    for group, want in zip(groups, wanted, strict=True):
        assert (group["minReplicas"], group["maxReplicas"]) == (
            want["minReplicas"],
            want["maxReplicas"],
        )
        pod = group["template"]["spec"]
        (container,) = pod["containers"]
        for bound in ("requests", "limits"):
            resources = container["resources"][bound]
            assert resources.get("nvidia.com/gpu", 0) == want["gpusPerPod"]
            assert resources["memory"] == want["resources"][bound]["memory"]
        assert pod.get("nodeSelector", {}) == want.get("nodeSelector", {})
        assert pod.get("tolerations", []) == want.get("tolerations", [])
        if want.get("idleTimeoutSeconds") is not None:
            assert group["idleTimeoutSeconds"] == want["idleTimeoutSeconds"]


def test_upgrade_strategy_is_configurable(rendered_objects):
    default = one(rendered_objects["default"], "RayService")["spec"]["upgradeStrategy"]
    assert default == {"type": "NewCluster"}
    prod = one(rendered_objects["prod"], "RayService")["spec"]["upgradeStrategy"]
    assert prod["type"] == "NewClusterWithIncrementalUpgrade"
    assert prod["clusterUpgradeOptions"]["maxSurgePercent"] == 50
    none = one(objects(render({"upgradeStrategy": {"type": "None"}})), "RayService")
    assert none["spec"]["upgradeStrategy"] == {"type": "None"}


def test_the_ingress_is_autoscaled_with_at_least_two_replicas(rendered_objects):
    for objs in rendered_objects.values():
        (app,) = serve_config(objs)["applications"]
        (ingress,) = [d for d in app["deployments"] if d["name"] == "ingress"]
        assert ingress["autoscaling_config"]["min_replicas"] >= 2
        assert ingress["autoscaling_config"]["max_replicas"] >= 2
    values = (values_for("ci") or {}) | {"api": {"minReplicas": 3, "maxReplicas": 5}}
    objs = objects(render(values))
    (app,) = serve_config(objs)["applications"]
    (ingress,) = [d for d in app["deployments"] if d["name"] == "ingress"]
    assert ingress["autoscaling_config"]["min_replicas"] == 3


def test_one_ingress_replica_is_refused_by_the_values_schema():
    with pytest.raises(Exception, match="minReplicas"):
        render((values_for("ci") or {}) | {"api": {"minReplicas": 1}})
