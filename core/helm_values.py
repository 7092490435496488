"""The Helm chart's values as pydantic models: the source of `values.schema.json`.

The chart's `cluster:` key is the same `ClusterConfig` the local cluster loads,
so the chart and the code cannot drift: `scripts/gen_values_schema.py` writes
the schema and the per-model defaults the templates fill in, and a test checks
that the committed files equal what these models generate.

Rules that JSON schema cannot express (max < min replicas, a style naming no
model, a model needing more GPUs than any worker group has) are checked in the
chart's `templates/_validate.tpl`, with the same messages as the pydantic
validators.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, model_validator

from core.config import MODEL_NAME_PATTERN, SOURCE_PATTERN, ClusterConfig, ModelConfig
from core.helm_pod_values import (
    ComputeResources,
    HeadGroup,
    Resources,
    Spool,
    ValuesModel,
    WorkerGroup,
)

# Keys of `ClusterConfig` the chart owns: Serve's HTTP options are fixed by the
# RayService (0.0.0.0:8000 in every pod) and the model cache is the chart's volume.
CHART_OWNED_CLUSTER_KEYS = ("http", "model_cache_dir")


class Image(ValuesModel):
    """The render-cluster image (built from k8s/Dockerfile)."""

    repository: str = Field(..., min_length=1, description="Image repository.")
    tag: str = Field("", description="Image tag; empty: the chart's appVersion.")
    pullPolicy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="Kubernetes image pull policy."
    )


class LocalObjectReference(ValuesModel):
    """A reference to a Secret in the release namespace."""

    name: str = Field(..., min_length=1, description="Secret name.")


class Autoscaler(ValuesModel):
    """KubeRay's in-tree autoscaler: turns Serve's pending replicas into GPU pods."""

    version: Literal["v1", "v2"] = Field("v2", description="Ray autoscaler version.")
    upscalingMode: Literal["Default", "Aggressive", "Conservative"] = Field(
        "Default", description="How fast pods are added for pending demand."
    )
    idleTimeoutSeconds: int = Field(
        60, ge=0, description="Seconds a worker pod stays idle before removal."
    )
    resources: Resources = Field(..., description="Autoscaler sidecar requests and limits.")


class RayAuth(ValuesModel):
    """Ray's own token authentication (dashboard and job submission)."""

    mode: Literal["token", "disabled"] = Field(
        "token", description="'token': only holders of the cluster's token may submit jobs."
    )


class ModelCache(ValuesModel):
    """Node-local disk for weights copied from S3 or Hugging Face."""

    mountPath: str = Field(
        "/home/ray/model-cache", pattern=r"^/", description="Mount path; the app's model cache."
    )
    volume: dict[str, Any] = Field(
        default_factory=lambda: {"emptyDir": {"sizeLimit": "100Gi"}},
        description="A Kubernetes volume source (emptyDir, hostPath, ephemeral, ...).",
    )


class S3Secret(ValuesModel):
    """S3 credentials as AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (none: IAM roles)."""

    existingSecret: str = Field("", description="Secret with keys AWS_ACCESS_KEY_ID and ...KEY.")
    accessKeyId: str = Field("", description="Access key id for the Secret the chart creates.")
    secretAccessKey: str = Field("", description="Secret key for the Secret the chart creates.")


class HuggingFaceSecret(ValuesModel):
    """Hugging Face token as HF_TOKEN (for gated models)."""

    existingSecret: str = Field("", description="Secret with key HF_TOKEN.")
    token: str = Field("", description="Token for the Secret the chart creates.")


class ApiKeysSecret(ValuesModel):
    """API keys, exposed as the variable named by `cluster.auth.api_keys_env`."""

    existingSecret: str = Field("", description="Secret with key API_KEYS (comma-separated).")
    keys: list[str] = Field(default_factory=list, description="Keys for the created Secret.")


class ProvidersSecret(ValuesModel):
    """API keys of hosted models (family 'remote'), one per environment variable name."""

    existingSecret: str = Field(
        "",
        description="Secret with one key per variable a hosted model reads (its "
        "remote.api_key_env, e.g. IDEOGRAM_API_KEY), exported under that name.",
    )
    keys: dict[Annotated[str, StringConstraints(pattern=r"^[A-Z_][A-Z0-9_]*$")], str] = Field(
        default_factory=dict,
        description="Variable name -> key, for the Secret the chart creates.",
    )


class Secrets(ValuesModel):
    """Credentials: an existing Secret's name, or values the chart turns into a Secret."""

    s3: S3Secret = Field(default_factory=S3Secret)
    huggingFace: HuggingFaceSecret = Field(default_factory=HuggingFaceSecret)
    apiKeys: ApiKeysSecret = Field(default_factory=ApiKeysSecret)
    providers: ProvidersSecret = Field(default_factory=ProvidersSecret)


class ServiceAccount(ValuesModel):
    """The pods' ServiceAccount (the autoscaler sidecar uses it; KubeRay binds its Role)."""

    create: bool = Field(True, description="Create it; otherwise use `name`.")
    name: str = Field("", description="Name; empty: the release's full name.")
    annotations: dict[str, str] = Field(
        default_factory=dict, description="e.g. an IAM role for S3 (IRSA, Workload Identity)."
    )


class Service(ValuesModel):
    """The Serve HTTP Service (port 8000), kept pointed at the active cluster by KubeRay."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field("ClusterIP")
    annotations: dict[str, str] = Field(default_factory=dict, description="Service annotations.")


class IngressTls(ValuesModel):
    """A TLS Secret and the hosts it covers."""

    secretName: str = Field(..., min_length=1)
    hosts: list[str] = Field(default_factory=list)


class Ingress(ValuesModel):
    """An optional Ingress in front of the Serve Service."""

    enabled: bool = Field(False, description="Create the Ingress.")
    className: str = Field("", description="IngressClass name; empty: the cluster default.")
    annotations: dict[str, str] = Field(default_factory=dict)
    host: str = Field("", description="Host name; empty: every host.")
    path: str = Field("/", pattern=r"^/", description="Path prefix routed to the API.")
    tls: list[IngressTls] = Field(default_factory=list)


class ApiReplicas(ValuesModel):
    """The HTTP ingress (CPU, on the head): autoscaled, never fewer than two replicas, so
    one busy or restarting replica never stops the API."""

    minReplicas: int = Field(2, ge=2, le=100, description="Fewest ingress replicas.")
    maxReplicas: int = Field(8, ge=2, le=100, description="Most ingress replicas.")
    targetOngoingRequests: float = Field(
        64, gt=0, le=10000, description="Requests in flight per replica the autoscaler aims at."
    )

    @model_validator(mode="after")
    def _bounds(self) -> ApiReplicas:
        if self.maxReplicas < self.minReplicas:
            raise ValueError(
                f"maxReplicas ({self.maxReplicas}) is below minReplicas ({self.minReplicas})"
            )
        return self


class ServiceMonitor(ValuesModel):
    """An optional Prometheus Operator ServiceMonitor scraping every Ray pod."""

    enabled: bool = Field(False, description="Create the metrics Service and ServiceMonitor.")
    interval: str = Field("30s", pattern=r"^[0-9]+(ms|s|m|h)$", description="Scrape interval.")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels your Prometheus selects, e.g. release: prom."
    )


class GrafanaDashboard(ValuesModel):
    """A ConfigMap holding the rendercluster_* dashboard, for Grafana's dashboard sidecar."""

    enabled: bool = Field(False, description="Create the dashboard ConfigMap.")
    labels: dict[str, str] = Field(
        default_factory=lambda: {"grafana_dashboard": "1"},
        description="Labels the sidecar finds dashboards by (its default: grafana_dashboard).",
    )


class PodDisruptionBudget(ValuesModel):
    """Limits on voluntary evictions (node drains); the Ray autoscaler is not affected."""

    enabled: bool = Field(True, description="Create PodDisruptionBudgets.")
    headMaxUnavailable: int = Field(
        1,
        ge=0,
        le=1,
        description="1: a drain may evict the head (every replica restarts); 0 blocks drains.",
    )
    workerMaxUnavailable: int = Field(
        1, ge=0, description="Worker pods of one group a drain may evict at once."
    )


class ClusterUpgradeOptions(ValuesModel):
    """Incremental upgrade pacing (NewClusterWithIncrementalUpgrade, Gateway API)."""

    gatewayClassName: str = Field(..., min_length=1, description="Gateway API class to use.")
    stepSizePercent: int = Field(..., ge=1, le=100, description="Traffic moved per step.")
    intervalSeconds: int = Field(..., ge=1, description="Seconds between steps.")
    maxSurgePercent: int = Field(100, ge=1, le=100, description="Extra capacity at once.")


class UpgradeStrategy(ValuesModel):
    """How KubeRay rolls out a changed Ray cluster spec (image, groups, resources)."""

    type: Literal["NewCluster", "NewClusterWithIncrementalUpgrade", "None"] = Field(
        "NewCluster",
        description=(
            "NewCluster: blue/green (a second cluster at its minimum size until ready); "
            "NewClusterWithIncrementalUpgrade: shift traffic and capacity step by step; "
            "None: never create a second cluster (serve config still updates in place)."
        ),
    )
    clusterUpgradeOptions: ClusterUpgradeOptions | None = Field(
        None, description="Required by NewClusterWithIncrementalUpgrade."
    )


class SecretKey(ValuesModel):
    """One key of a Secret."""

    name: str = Field("", description="Secret name; empty: none.")
    key: str = Field("API_KEY", min_length=1, description="Key holding the value.")


class HelmTest(ValuesModel):
    """`helm test`: a pod that renders one small PNG through the deployed API."""

    enabled: bool = Field(True, description="Create the test pod (it runs on `helm test`).")
    model: str = Field(
        "", pattern=f"^$|{MODEL_NAME_PATTERN}", description="Model; empty: the default style's."
    )
    width: int = Field(64, ge=16, le=1024, description="Width of the test image.")
    height: int = Field(64, ge=16, le=1024, description="Height of the test image.")
    steps: int = Field(2, ge=1, le=50, description="Denoising steps.")
    timeoutSeconds: int = Field(
        900, ge=10, description="How long to wait for the API (models may still be loading)."
    )
    apiKeySecret: SecretKey = Field(
        default_factory=SecretKey,
        description="The API key to use; empty: the first of secrets.apiKeys, if any.",
    )
    resources: Resources = Field(
        default_factory=lambda: Resources(
            requests=ComputeResources(cpu="100m", memory="128Mi"),
            limits=ComputeResources(cpu="500m", memory="256Mi"),
        ),
        description="Test pod requests and limits.",
    )


class ChartValues(ValuesModel):
    """Everything `helm install` reads from values.yaml."""

    nameOverride: str = Field("", description="Replaces the chart name in resource names.")
    fullnameOverride: str = Field("", description="Replaces the release-chart full name.")
    image: Image
    imagePullSecrets: list[LocalObjectReference] = Field(default_factory=list)
    rayVersion: str = Field(
        ..., pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$", description="Ray version inside the image."
    )
    cluster: ClusterConfig = Field(..., description="The render-cluster config (one YAML).")
    head: HeadGroup
    workerGroups: list[WorkerGroup] = Field(..., min_length=1)
    autoscaler: Autoscaler
    rayAuth: RayAuth = Field(default_factory=RayAuth)
    modelCache: ModelCache = Field(default_factory=ModelCache)
    spool: Spool = Field(default_factory=Spool)
    secrets: Secrets = Field(default_factory=Secrets)
    serviceAccount: ServiceAccount = Field(default_factory=ServiceAccount)
    service: Service = Field(default_factory=Service)
    ingress: Ingress = Field(default_factory=Ingress)
    api: ApiReplicas = Field(default_factory=ApiReplicas)
    serviceMonitor: ServiceMonitor = Field(default_factory=ServiceMonitor)
    grafanaDashboard: GrafanaDashboard = Field(default_factory=GrafanaDashboard)
    podDisruptionBudget: PodDisruptionBudget = Field(default_factory=PodDisruptionBudget)
    upgradeStrategy: UpgradeStrategy = Field(default_factory=UpgradeStrategy)
    helmTest: HelmTest = Field(default_factory=HelmTest)
    podLabels: dict[str, str] = Field(default_factory=dict, description="Extra pod labels.")
    podAnnotations: dict[str, str] = Field(
        default_factory=dict, description="Extra pod annotations."
    )
    podSecurityContext: dict[str, Any] = Field(
        default_factory=dict, description="Pod securityContext of every Ray pod."
    )
    containerSecurityContext: dict[str, Any] = Field(
        default_factory=dict, description="securityContext of every Ray container."
    )


def values_schema() -> dict[str, Any]:
    """The chart's `values.schema.json`: `ChartValues` with the chart-owned keys removed."""
    schema = ChartValues.model_json_schema()
    defs = schema["$defs"]
    cluster = defs["ClusterConfig"]["properties"]
    for key in CHART_OWNED_CLUSTER_KEYS:
        cluster.pop(key)
    defs.pop("HttpConfig")
    # The source form is checked by a validator; JSON schema needs it as a pattern.
    defs["ModelConfig"]["properties"]["source"]["pattern"] = SOURCE_PATTERN.pattern
    # A hosted model (family 'remote') needs no source (its provider and model name it).
    model = defs["ModelConfig"]
    model["required"].remove("source")
    if not model["required"]:
        del model["required"]
    model["if"] = {"properties": {"family": {"const": "remote"}}, "required": ["family"]}
    model["else"] = {"required": ["source"]}
    # Draft 7: the newest draft every Helm 3.x validator reads; $defs refs are plain pointers.
    return {"$schema": "http://json-schema.org/draft-07/schema#", **schema}


def model_defaults() -> dict[str, Any]:
    """Every `ModelConfig` field's default, for the chart to fill in (`source` has none)."""
    return ModelConfig(source="tiny").model_dump(mode="json", exclude={"source"})
