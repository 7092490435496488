"""`rendercluster k8s`: render the Helm chart, read a deployment's status, submit campaigns.

The cluster commands use the official `kubernetes` client with the current
kubeconfig context (or the pod's service account inside a cluster). Every
failure to reach or use the cluster ends in one line on stderr (with `--json`,
the error as JSON on stdout too) and the exit code that names it (README, "In
scripts"), never a traceback. `kubernetes` and `helm_python` are imported inside
the commands: they take most of a second to load and every other `rendercluster`
command would pay for it.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import os
import re
import secrets
import shlex
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from cli.assets import CHART_DIR
from cli.client import API_KEY_ENV
from cli.errors import fail
from cli.exit_codes import ExitCode, for_http_status
from cli.options import JsonOption, emit
from core.redact import public_message

app = typer.Typer(
    help="Deploy and drive render-cluster on Kubernetes (KubeRay RayService).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False)

RAY_GROUP = "ray.io"
RAY_VERSION = "v1"
APP_LABEL = "app.kubernetes.io/name=render-cluster"
CLUSTER_LABEL = "ray.io/cluster"
GROUP_LABEL = "ray.io/group"
# {api}: the RayService's Serve Service, so the campaign runs on the deployed API (without
# --url, `campaign run` would start an embedded cluster inside the job).
DEFAULT_ENTRYPOINT = "rendercluster campaign run {manifest} --url {api}"
SERVE_PORT = 8000
MANIFEST_ENV = "RENDER_CLUSTER_MANIFEST_GZ"
# The manifest travels gzipped in an environment variable of the Ray job; Linux caps
# one variable at 128 KiB, which leaves room for several thousand campaign items.
MAX_ENCODED_MANIFEST = 120 * 1024
MAX_RAYJOB_NAME = 47  # KubeRay appends a suffix and keeps names within 63 characters
REQUEST_TIMEOUT_S = 15
_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
_DECODE_MANIFEST = (
    "import base64,gzip,os,sys; sys.stdout.buffer.write("
    f"gzip.decompress(base64.b64decode(os.environ['{MANIFEST_ENV}'])))"
)

NamespaceOption = Annotated[
    str | None,
    typer.Option("--namespace", "-n", help="Namespace (default: the kubeconfig context's)."),
]
NameOption = Annotated[
    str | None,
    typer.Option("--name", help="RayService name (default: the namespace's only one)."),
]


class K8sError(Exception):
    """A failure the user can act on, shown as one line, with its exit code."""

    def __init__(self, message: str, code: ExitCode = ExitCode.USAGE):
        super().__init__(message)
        self.code = code


class ChartError(K8sError):
    """Helm refused the values or a template failed; the message lists every problem."""

    def __init__(self, message: str):
        super().__init__(message, ExitCode.REJECTED)


@contextmanager
def _one_line_errors(as_json: bool = False) -> Iterator[None]:
    """Turn cluster and file errors into `error: ...` on stderr and their exit code
    (README, "Exit codes"); with `--json`, the error as JSON on stdout too."""
    try:
        yield
    except ChartError as exc:
        raise fail(str(exc), exc.code, as_json) from None
    except K8sError as exc:
        raise fail(" ".join(str(exc).split()), exc.code, as_json) from None
    except Exception as exc:
        found = _cluster_error(exc)
        if found is None:  # still one line, and JSON with --json (the CLI's fallback is not)
            message = public_message(f"{type(exc).__name__}: {exc}") or type(exc).__name__
            found = f"unexpected {message}", ExitCode.ERROR
        raise fail(" ".join(found[0].split()), found[1], as_json) from None


def _cluster_error(exc: Exception) -> tuple[str, ExitCode] | None:
    """One line and an exit code for an error of the Kubernetes client or its transport."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException
    from urllib3.exceptions import HTTPError

    if isinstance(exc, ConfigException):
        where = "set KUBECONFIG or run inside a cluster"
        return f"no Kubernetes cluster configured ({exc}); {where}", ExitCode.USAGE
    if isinstance(exc, yaml.YAMLError):
        return f"the kubeconfig is not valid YAML ({exc})", ExitCode.USAGE
    if isinstance(exc, ApiException):
        return _api_message(exc), for_http_status(exc.status or 500)
    if isinstance(exc, HTTPError | OSError):
        where = f"cannot reach the Kubernetes API server at {_api_host()}: {_root_cause(exc)}"
        return where, ExitCode.UNREACHABLE
    return None


def _api_message(exc: Any) -> str:
    detail = exc.reason
    try:
        detail = yaml.safe_load(exc.body).get("message", detail)
    except (AttributeError, TypeError, yaml.YAMLError):
        pass
    if exc.status in (401, 403):
        return f"the cluster refused the request ({exc.status}): {detail} (RBAC: k8s/rbac-cli.yaml)"
    return f"Kubernetes API error {exc.status}: {detail}"


def _api_host() -> str:
    from kubernetes import client

    return client.Configuration.get_default_copy().host


def _root_cause(exc: BaseException) -> str:
    """The innermost OS error's text (e.g. 'Connection refused'), else the error itself."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = getattr(seen, "reason", None) or seen.__cause__ or seen.__context__
        if not isinstance(seen, BaseException):
            break
    return str(exc).splitlines()[0]


# ---------------------------------------------------------------- render


@app.command()
def render(
    values: Annotated[Path, typer.Option("--values", "-f", help="Values file for the chart.")],
    out: Annotated[
        Path | None, typer.Option(help="Write one file per template here instead of printing.")
    ] = None,
    release: Annotated[str, typer.Option(help="Helm release name.")] = "render-cluster",
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    chart: Annotated[Path, typer.Option(help="Chart directory.")] = CHART_DIR,
    as_json: JsonOption = False,
) -> None:
    """Render the Helm chart's manifests offline (Helm's own Go SDK)."""
    with _one_line_errors(as_json):
        manifests = render_chart(chart, _read_values(values), release, namespace)
        if as_json and out is None:
            emit({"manifests": [doc for doc in yaml.safe_load_all(_as_stream(manifests)) if doc]})
            return
        if out is None:
            typer.echo(_as_stream(manifests), nl=False)
            return
        for source, text in manifests.items():
            path = out / source
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            except OSError as exc:
                raise K8sError(f"cannot write {path}: {exc.strerror}", ExitCode.ERROR) from None
    if as_json:
        emit({"written": sorted(str(out / source) for source in manifests)})
    else:
        typer.echo(f"wrote {len(manifests)} manifests under {out}", err=True)


def render_chart(
    chart: Path, values: dict[str, Any], release: str, namespace: str
) -> dict[str, str]:
    """Template path -> manifest text, for every template that renders an object."""
    try:
        import helm_python
    except ImportError:
        raise K8sError(
            "rendering the chart needs helm-python-sdk: pip install it", ExitCode.ERROR
        ) from None
    try:
        with helm_python.Chart.load(chart) as loaded:
            rendered = loaded.render(values, name=release, namespace=namespace)
    except helm_python.HelmError as exc:
        raise ChartError(str(exc).strip()) from None
    return {
        source: text.lstrip("\n")
        for source, text in sorted(rendered.items())
        if text.strip() and not source.endswith("NOTES.txt")
    }


def _read_values(path: Path) -> dict[str, Any]:
    try:
        values = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise K8sError(f"cannot read {path}: {exc.strerror}", ExitCode.NOT_FOUND) from None
    except yaml.YAMLError as exc:
        raise K8sError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(values, dict | None):
        raise K8sError(f"{path} must hold a mapping of chart values")
    return values or {}


def _as_stream(manifests: dict[str, str]) -> str:
    return "".join(f"---\n# Source: {source}\n{text}" for source, text in manifests.items())


# ---------------------------------------------------------------- cluster access


def _connect(namespace: str | None) -> tuple[Any, str]:
    """An API client for the current context (or in-cluster account) and the namespace."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    kubeconfig = os.environ.get("KUBECONFIG")
    where = kubeconfig or "~/.kube/config"
    try:
        config.load_kube_config(config_file=kubeconfig)
        _, context = config.list_kube_config_contexts(config_file=kubeconfig)
        default_namespace = context.get("context", {}).get("namespace", "default")
    except ConfigException:
        if "KUBERNETES_SERVICE_HOST" not in os.environ:
            raise
        config.load_incluster_config()
        default_namespace = _SA_NAMESPACE.read_text().strip()
    except OSError as exc:  # a directory, no permission: not an unreachable server
        raise K8sError(f"cannot read the kubeconfig {where}: {exc.strerror or exc}") from None
    except (AttributeError, KeyError, TypeError, ValueError) as exc:  # valid YAML, wrong shape
        raise K8sError(
            f"{where} is not a usable kubeconfig ({type(exc).__name__}: {exc})"
        ) from None
    return client.ApiClient(), namespace or default_namespace


def _find_rayservice(api: Any, namespace: str, name: str | None) -> dict[str, Any]:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    custom = client.CustomObjectsApi(api)
    try:
        if name:
            return custom.get_namespaced_custom_object(
                RAY_GROUP,
                RAY_VERSION,
                namespace,
                "rayservices",
                name,
                _request_timeout=REQUEST_TIMEOUT_S,
            )
        found = custom.list_namespaced_custom_object(
            RAY_GROUP,
            RAY_VERSION,
            namespace,
            "rayservices",
            label_selector=APP_LABEL,
            _request_timeout=REQUEST_TIMEOUT_S,
        )["items"]
    except ApiException as exc:
        if exc.status != 404:
            raise
        if name:
            raise K8sError(
                f"no RayService {name!r} in namespace {namespace!r}", ExitCode.NOT_FOUND
            ) from None
        raise K8sError(
            "the cluster has no RayService resource (ray.io/v1): install the KubeRay operator"
            " 1.7.0 first (k8s/README.md)",
            ExitCode.NOT_FOUND,
        ) from None
    if len(found) == 1:
        return found[0]
    if not found:
        raise K8sError(
            f"no render-cluster RayService in namespace {namespace!r}: install the chart "
            "(helm install ... helm/render-cluster) or pass --namespace",
            ExitCode.NOT_FOUND,
        )
    names = ", ".join(item["metadata"]["name"] for item in found)
    raise K8sError(f"several render-cluster RayServices in {namespace!r} ({names}): use --name")


def _active_cluster(rayservice: dict[str, Any]) -> str | None:
    return rayservice.get("status", {}).get("activeServiceStatus", {}).get("rayClusterName")


def serve_url(rayservice: dict[str, Any]) -> str:
    """The in-cluster URL of the RayService's Serve Service (KubeRay keeps it pointed at
    the active cluster across upgrades)."""
    meta = rayservice["metadata"]
    service = rayservice["spec"].get("serveService", {}).get("metadata", {}).get("name")
    service = service or f"{meta['name']}-serve-svc"
    return f"http://{service}.{meta.get('namespace', 'default')}.svc:{SERVE_PORT}"


def api_keys_env(rayservice: dict[str, Any]) -> str | None:
    """The variable the deployed API reads its keys from (the serve config's
    `auth.api_keys_env`), set in every Ray pod; None when the API has no such keys."""
    try:
        serve_config = yaml.safe_load(rayservice["spec"].get("serveConfigV2") or "{}")
        for application in serve_config.get("applications", []):
            config = (application.get("args") or {}).get("config") or {}
            found = (config.get("auth") or {}).get("api_keys_env")
            if found:
                return found
    except (AttributeError, yaml.YAMLError):
        return None
    return None


# ---------------------------------------------------------------- status


@dataclass(frozen=True)
class GroupPods:
    """A worker group's bounds and its pods by phase."""

    group: str
    min_replicas: int | None
    max_replicas: int | None
    phases: dict[str, int]


@dataclass(frozen=True)
class StatusSummary:
    """What `k8s status` shows, drawn from the RayService and its cluster's pods."""

    name: str
    namespace: str
    active_cluster: str | None
    pending_cluster: str | None
    conditions: list[tuple[str, str, str, str]]
    applications: list[tuple[str, str, str]]
    groups: list[GroupPods]


def summarize(rayservice: dict[str, Any], pods: list[dict[str, Any]]) -> StatusSummary:
    """Condense a RayService object and its active cluster's pods (plain dicts)."""
    status = rayservice.get("status", {})
    active = status.get("activeServiceStatus", {})
    conditions = [
        (c.get("type", ""), c.get("status", ""), c.get("reason", ""), c.get("message", ""))
        for c in status.get("conditions", [])
    ]
    applications = []
    for app_name, app_status in sorted(active.get("applicationStatuses", {}).items()):
        applications.append((app_name, app_status.get("status", ""), app_status.get("message", "")))
        for deployment, dep in sorted(app_status.get("serveDeploymentStatuses", {}).items()):
            name = f"{app_name}/{deployment}"
            applications.append((name, dep.get("status", ""), dep.get("message", "")))
    cluster_spec = rayservice.get("spec", {}).get("rayClusterConfig", {})
    phases: dict[str, Counter[str]] = {}
    for pod in pods:
        group = pod["metadata"].get("labels", {}).get(GROUP_LABEL, "?")
        phases.setdefault(group, Counter())[pod.get("status", {}).get("phase", "Unknown")] += 1
    groups = [GroupPods("headgroup", 1, 1, dict(phases.pop("headgroup", {})))]
    for spec in cluster_spec.get("workerGroupSpecs", []):
        counts = phases.pop(spec["groupName"], Counter())
        groups.append(
            GroupPods(
                spec["groupName"], spec.get("minReplicas"), spec.get("maxReplicas"), dict(counts)
            )
        )
    groups += [GroupPods(group, None, None, dict(counts)) for group, counts in phases.items()]
    return StatusSummary(
        name=rayservice["metadata"]["name"],
        namespace=rayservice["metadata"].get("namespace", ""),
        active_cluster=active.get("rayClusterName"),
        pending_cluster=status.get("pendingServiceStatus", {}).get("rayClusterName"),
        conditions=conditions,
        applications=applications,
        groups=groups,
    )


@app.command()
def status(
    namespace: NamespaceOption = None, name: NameOption = None, as_json: JsonOption = False
) -> None:
    """The RayService's conditions, Serve applications and worker pods per group."""
    from kubernetes import client

    with _one_line_errors(as_json):
        api, namespace = _connect(namespace)
        rayservice = _find_rayservice(api, namespace, name)
        cluster = _active_cluster(rayservice)
        pods: list[dict[str, Any]] = []
        if cluster:
            listed = client.CoreV1Api(api).list_namespaced_pod(
                namespace,
                label_selector=f"{CLUSTER_LABEL}={cluster}",
                _request_timeout=REQUEST_TIMEOUT_S,
            )
            pods = api.sanitize_for_serialization(listed)["items"]
    summary = summarize(rayservice, pods)
    if as_json:
        emit(dataclasses.asdict(summary))
    else:
        _print_status(summary)


def _print_status(summary: StatusSummary) -> None:
    console.print(
        f"RayService [bold]{summary.name}[/] in {summary.namespace}: "
        f"active cluster {summary.active_cluster or '(none yet)'}"
        + (f", upgrading to {summary.pending_cluster}" if summary.pending_cluster else "")
    )
    conditions = Table("condition", "status", "reason", "message", title="Conditions")
    for row in summary.conditions:
        conditions.add_row(*row)
    applications = Table("application / deployment", "status", "message", title="Serve")
    for row in summary.applications:
        applications.add_row(*row)
    groups = Table("group", "min", "max", "pods by phase", title="Pods")
    for group in summary.groups:
        phases = ", ".join(f"{phase} {n}" for phase, n in sorted(group.phases.items())) or "none"
        bounds = [
            str(v) if v is not None else "-" for v in (group.min_replicas, group.max_replicas)
        ]
        groups.add_row(group.group, *bounds, phases)
    for table in (conditions, applications, groups):
        console.print(table)


# ---------------------------------------------------------------- submit-campaign


def rayjob_name(manifest: Path, suffix: str) -> str:
    """`campaign-<manifest stem>-<suffix>`: a DNS-1035 label KubeRay accepts (<= 47)."""
    stem = re.sub(r"[^a-z0-9]+", "-", manifest.stem.lower()).strip("-") or "manifest"
    room = MAX_RAYJOB_NAME - len("campaign--") - len(suffix)
    return f"campaign-{stem[:room].rstrip('-')}-{suffix}"


def rayjob_body(
    *,
    job_name: str,
    cluster_name: str,
    image: str,
    manifest_name: str,
    manifest: bytes,
    api_url: str,
    keys_env: str | None = None,
    entrypoint: str = DEFAULT_ENTRYPOINT,
) -> dict[str, Any]:
    """The RayJob that runs `entrypoint` on the serving cluster with the manifest at hand.

    The manifest travels gzipped in the job's runtime environment and is written to
    a file on the head before the entrypoint runs; `{manifest}` in the entrypoint is
    replaced by that file's path and `{api}` by `api_url`. With `keys_env` (the variable
    holding the API's comma-separated keys on the head) the first key is exported as
    RENDERCLUSTER_API_KEY, so the key never appears in the RayJob.
    """
    encoded = base64.b64encode(gzip.compress(manifest, mtime=0)).decode()
    if len(encoded) > MAX_ENCODED_MANIFEST:
        raise K8sError(
            f"{manifest_name} is too large to carry in a RayJob ({len(encoded) // 1024} KiB "
            f"compressed, limit {MAX_ENCODED_MANIFEST // 1024} KiB): split the campaign"
        )
    path = shlex.quote(f"/tmp/{job_name}{Path(manifest_name).suffix or '.yaml'}")
    command = entrypoint.replace("{manifest}", path).replace("{api}", shlex.quote(api_url))
    if keys_env:
        command = f'export {API_KEY_ENV}="${{{keys_env}%%,*}}" && {command}'
    runtime_env = {"env_vars": {MANIFEST_ENV: encoded}}
    return {
        "apiVersion": f"{RAY_GROUP}/{RAY_VERSION}",
        "kind": "RayJob",
        "metadata": {
            "name": job_name,
            "labels": {
                "app.kubernetes.io/name": "render-cluster",
                "app.kubernetes.io/component": "campaign",
                "app.kubernetes.io/managed-by": "rendercluster",
            },
            "annotations": {"render-cluster/manifest": manifest_name},
        },
        "spec": {
            "clusterSelector": {CLUSTER_LABEL: cluster_name},
            "entrypoint": f"python -c {shlex.quote(_DECODE_MANIFEST)} > {path} && {command}",
            "runtimeEnvYAML": yaml.safe_dump(runtime_env),
            # The serving cluster outlives the job: never delete it.
            "shutdownAfterJobFinishes": False,
            "submitterPodTemplate": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "ray-job-submitter",
                            "image": image,
                            "resources": {
                                "requests": {"cpu": "200m", "memory": "512Mi"},
                                "limits": {"cpu": "1", "memory": "1Gi"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                }
            },
        },
    }


@app.command("submit-campaign")
def submit_campaign(
    manifest: Annotated[Path, typer.Argument(help="Campaign manifest (YAML, JSONL or CSV).")],
    entrypoint: Annotated[
        str,
        typer.Option(help="Command run on the cluster; {manifest} becomes the manifest's path."),
    ] = DEFAULT_ENTRYPOINT,
    namespace: NamespaceOption = None,
    name: NameOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a RayJob that runs the campaign through the running RayService's API, on its
    active Ray cluster (no cluster of its own)."""
    from kubernetes import client

    with _one_line_errors(as_json):
        try:
            data = manifest.read_bytes()
        except OSError as exc:
            raise K8sError(f"cannot read {manifest}: {exc.strerror}", ExitCode.NOT_FOUND) from None
        api, namespace = _connect(namespace)
        rayservice = _find_rayservice(api, namespace, name)
        cluster = _active_cluster(rayservice)
        if not cluster:
            raise K8sError(
                f"RayService {rayservice['metadata']['name']!r} has no active Ray cluster yet: "
                "wait until `rendercluster k8s status` shows it ready"
            )
        head = rayservice["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
        api_url = serve_url(rayservice)
        body = rayjob_body(
            job_name=rayjob_name(manifest, secrets.token_hex(3)),
            cluster_name=cluster,
            image=head["containers"][0]["image"],
            manifest_name=manifest.name,
            manifest=data,
            api_url=api_url,
            keys_env=api_keys_env(rayservice),
            entrypoint=entrypoint,
        )
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            RAY_GROUP,
            RAY_VERSION,
            namespace,
            "rayjobs",
            body,
            _request_timeout=REQUEST_TIMEOUT_S,
        )
    job = body["metadata"]["name"]
    if as_json:
        emit({"rayjob": job, "namespace": namespace, "ray_cluster": cluster, "api": api_url})
        return
    console.print(f"created RayJob [bold]{job}[/] in {namespace} on Ray cluster {cluster}")
    console.print(f"the campaign runs through {api_url}")
    console.print(f"follow it: kubectl -n {namespace} get rayjob {job} -w")
    console.print(f"logs:      kubectl -n {namespace} logs -f job/{job}")
