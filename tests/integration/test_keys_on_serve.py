"""Keys on under real Serve: tenants apart, signed links, one rate limit for two ingress replicas.

A second application (route prefix `/keys`) runs with a keys file, two ingress
replicas and one CPU model, beside the shared cluster's keys-off application.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import ray
from ray import serve

from actors.job_supervisor import supervisor
from actors.rate_limiter import rates_name
from actors.remote_limiter import LIMITER_NAMESPACE
from core.tenants import TenantLimits, hash_key
from serve.app import application
from serve.ingress import Ingress
from tests.integration.keyed_app import keyed_cpu_config

APP, PREFIX = "keys-on", "/keys"
RPM = 12


@pytest.fixture
def keys_on(cluster, tmp_path, monkeypatch):
    limited = TenantLimits(requests_per_minute=RPM)  # acme's; globex has none
    config, acme, globex = keyed_cpu_config(cluster.config, tmp_path, limited)
    monkeypatch.setattr("serve.app.Ingress", Ingress.options(num_replicas=2))
    serve.run(application(config), name=APP, route_prefix=PREFIX)
    try:
        yield {"Authorization": f"Bearer {acme}"}, {"X-API-Key": globex}, hash_key(acme)
    finally:
        serve.delete(APP)
        for actor in (supervisor(APP), _rates_actor()):
            with contextlib.suppress(ValueError):
                ray.kill(actor, no_restart=True)


def _rates_actor():
    return ray.get_actor(rates_name(APP), namespace=LIMITER_NAMESPACE)


def test_tenants_links_and_one_rate_limit_across_two_ingress_replicas(cluster, keys_on):
    acme, globex, acme_hash = keys_on
    with cluster.client() as http:
        body = {"prompt": "a cat", "width": 64, "height": 64, "seed": 3, "steps": 1}
        rendered = http.post(f"{PREFIX}/v1/renders", json=body, headers=acme)
        assert rendered.status_code == 200, rendered.text
        run_id, url = rendered.json()["id"], rendered.json()["url"]
        artifact = f"{PREFIX}/v1/artifacts/renders/{run_id}/image.png"
        for path in [f"/v1/runs/{run_id}", f"/v1/renders/{run_id}", f"/v1/runs/{run_id}/diff/x"]:
            assert http.get(PREFIX + path, headers=globex).status_code == 404, path
        assert http.get(artifact, headers=globex).status_code == 404
        assert http.get(f"{PREFIX}/v1/runs", headers=globex).json()["runs"] == []
        assert http.get(artifact).status_code == 401
        assert http.get(artifact, headers=acme).status_code == 200
        signed = urlsplit(url)
        assert signed.path == artifact and "sig=" in signed.query
        assert http.get(f"{signed.path}?{signed.query}").status_code == 200  # no key
        used = 2  # the render and the keyed artifact request above
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(lambda _: http.get(f"{PREFIX}/v1/usage", headers=acme), range(2 * RPM))
            )
    codes = sorted(answer.status_code for answer in answers)
    assert codes.count(200) == RPM - used and set(codes) == {200, 429}, codes
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["field"] == "requests_per_minute"
    assert ray.get(_rates_actor().count.remote(acme_hash), timeout=30) == RPM
    replicas = serve.status().applications[APP].deployments["ingress"].replica_states
    assert replicas.get("RUNNING") == 2
