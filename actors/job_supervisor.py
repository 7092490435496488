"""`JobSupervisor`: the detached actor that runs every durable job of a cluster.

One per Serve application, named ``job-supervisor-<application>`` in the jobs
namespace, restarted by Ray whenever it dies (`max_restarts=-1`); it runs only
the jobs of its application, so applications sharing a store and a Ray cluster
never run each other's jobs with the wrong config. Its loop (`core.jobs.supervision`)
starts in the constructor, so a restarted supervisor picks the queue up again
and adopts the jobs its previous incarnation held. The API only writes jobs to
the store and nudges it; status calls never reach it.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import ray

from actors import ray_metrics
from actors.job_work import JOBS_NAMESPACE, JobWork, router_pool
from actors.router_pool import RouterPool
from core.config import APP_NAME, ClusterConfig
from core.config_file import config_from_dict
from core.jobs.store import JobStore
from core.jobs.supervision import Holder, Supervision
from core.store import open_store

__all__ = [
    "JOBS_NAMESPACE",
    "JobSupervisor",
    "ensure_supervisor",
    "supervisor",
    "supervisor_name",
]


def supervisor_name(app_name: str) -> str:
    """The supervisor actor's name for a Serve application."""
    return f"job-supervisor-{app_name}"


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=1000)
class JobSupervisor:
    """Runs, resumes and adopts the jobs kept in the cluster's store."""

    def __init__(self, config: dict[str, Any], app_name: str, cluster_id: str):
        ray_metrics.install()
        self.app_name = app_name
        self._configured = config
        self.routers = router_pool(config_from_dict(config, source="job supervisor"), app_name)
        jobs, settings, work = _parts(config, app_name, self.routers)
        holder = Holder(cluster_id, uuid.uuid4().hex[:8])
        self.supervision = Supervision(jobs, settings, holder, work, app=app_name)
        self._loop = asyncio.get_running_loop().create_task(self.supervision.run_forever())

    async def configure(self, config: dict[str, Any]) -> None:
        """Run jobs with this config from now on (the application was deployed again)."""
        if config == self._configured:
            return
        cluster = config_from_dict(config, source="job supervisor")
        self.routers = router_pool(cluster, self.app_name, self.routers)
        parts = await asyncio.to_thread(_parts, config, self.app_name, self.routers)
        await self.supervision.reconfigure(*parts)
        self._configured = config

    async def nudge(self) -> None:
        """Look at the queue now."""
        self.supervision.nudge()

    async def cancel(
        self, job_id: str, code: str = "cancelled", message: str = "cancelled"
    ) -> dict[str, Any]:
        """Cancel a job; its final state."""
        return (await self.supervision.cancel(job_id, code, message)).model_dump(mode="json")

    async def resume(self, job_id: str) -> dict[str, Any]:
        """Continue a job that waited for approval."""
        return (await self.supervision.resume(job_id)).model_dump(mode="json")

    async def holder(self) -> str:
        """Who holds the leases of the jobs this supervisor runs."""
        return str(self.supervision.holder)


def _parts(
    config: dict[str, Any], app_name: str, routers: RouterPool
) -> tuple[JobStore, Any, dict]:
    """The store, settings and work of a supervisor for `config`."""
    cluster = config_from_dict(config, source="job supervisor")
    store = open_store(cluster.storage)
    return JobStore(store), cluster.jobs, JobWork(cluster, store, app_name, routers).kinds()


def ensure_supervisor(config: ClusterConfig, app_name: str = APP_NAME) -> Any:
    """The application's supervisor, started (detached) if there is none, running `config`."""
    data = config.model_dump(mode="json")
    handle = JobSupervisor.options(
        name=supervisor_name(app_name),
        namespace=JOBS_NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
    ).remote(data, app_name, uuid.uuid4().hex[:12])
    handle.configure.remote(data)
    return handle


def supervisor(app_name: str = APP_NAME) -> Any:
    """The application's running supervisor; `ValueError` if none was started."""
    return ray.get_actor(supervisor_name(app_name), namespace=JOBS_NAMESPACE)
