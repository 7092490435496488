"""The chart values that shape the Ray pods: resources, placement, extras, the spool.

Part of the values models in `core.helm_values` (the source of the chart's
`values.schema.json`); the templates that read them are `templates/_pod.tpl`
and `templates/rayservice.yaml`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    StringConstraints,
)

_QUANTITY = r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[numkKMGTPE]i?)?$"
_DNS_LABEL = r"^[a-z]([-a-z0-9]{0,28}[a-z0-9])?$"

Quantity = Annotated[
    NonNegativeInt | NonNegativeFloat | Annotated[str, StringConstraints(pattern=_QUANTITY)],
    Field(description="A Kubernetes quantity: a number or a string such as '500m' or '16Gi'."),
]


class ValuesModel(BaseModel):
    """A strict chart-values section: unknown keys fail `helm install`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ComputeResources(ValuesModel):
    """CPU and memory of one container (GPUs come from `gpusPerPod`)."""

    cpu: Quantity = Field(..., description="CPU cores, e.g. 4 or '500m'.")
    memory: Quantity = Field(..., description="Memory, e.g. '16Gi'.")
    ephemeral_storage: Quantity | None = Field(
        None, alias="ephemeral-storage", description="Node-local scratch disk, e.g. '50Gi'."
    )


class Resources(ValuesModel):
    """Requests and limits: both are required so that every container declares them."""

    requests: ComputeResources
    limits: ComputeResources


class Toleration(ValuesModel):
    """A Kubernetes toleration (for tainted GPU nodes)."""

    key: str | None = Field(None, description="Taint key, e.g. 'nvidia.com/gpu'.")
    operator: Literal["Exists", "Equal"] = Field("Equal", description="How the value matches.")
    value: str | None = Field(None, description="Taint value (operator: Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to tolerate; empty tolerates every effect."
    )
    tolerationSeconds: int | None = Field(None, ge=0, description="NoExecute grace period.")


class Placement(ValuesModel):
    """Where a group's pods may run."""

    nodeSelector: dict[str, str] = Field(default_factory=dict, description="Node labels.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Taints tolerated.")
    affinity: dict[str, Any] = Field(
        default_factory=dict, description="A Kubernetes affinity block, passed through."
    )
    topologySpreadConstraints: list[dict[str, Any]] = Field(
        default_factory=list, description="Kubernetes topology spread constraints, passed through."
    )
    priorityClassName: str = Field(
        "", description="PriorityClass of the pods (it must exist); empty: the cluster default."
    )
    runtimeClassName: str = Field(
        "", description="RuntimeClass of the pods, e.g. 'nvidia'; empty: the node's default."
    )


class EnvVar(ValuesModel):
    """A container environment variable: a value, or a reference (`valueFrom`)."""

    name: str = Field(..., pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", description="Name.")
    value: str | None = Field(None, description="Value.")
    valueFrom: dict[str, Any] | None = Field(
        None, description="secretKeyRef, configMapKeyRef, fieldRef or resourceFieldRef."
    )


class VolumeMount(ValuesModel):
    """Where a volume of `volumes` appears in the Ray container."""

    name: str = Field(..., min_length=1, description="Name of a volume in `volumes`.")
    mountPath: str = Field(..., pattern=r"^/", description="Path in the container.")
    subPath: str | None = Field(None, description="Sub-path of the volume to mount.")
    readOnly: bool | None = Field(None, description="Mount read-only.")


class Volume(BaseModel):
    """A Kubernetes volume: its name and one volume source, passed through."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(..., min_length=1, description="Volume name (unique in the pod).")


class PodExtras(Placement):
    """What operators add to a group's pods and Ray container without forking the chart."""

    env: list[EnvVar] = Field(default_factory=list, description="Extra environment variables.")
    envFrom: list[dict[str, Any]] = Field(
        default_factory=list, description="Extra envFrom sources (configMapRef, secretRef)."
    )
    volumes: list[Volume] = Field(default_factory=list, description="Extra pod volumes.")
    volumeMounts: list[VolumeMount] = Field(
        default_factory=list, description="Mounts of the extra volumes in the Ray container."
    )


class HeadGroup(PodExtras):
    """The Ray head pod: CPU only (`num-gpus: 0`); runs the ingress and the tile router."""

    resources: Resources = Field(..., description="Head container requests and limits.")


class WorkerGroup(PodExtras):
    """One Ray worker group per GPU class (l4, a100, ...); the autoscaler adds its pods."""

    name: str = Field(
        ..., pattern=_DNS_LABEL, description="Group name (a DNS label), e.g. 'l4' or 'a100'."
    )
    gpusPerPod: int = Field(
        1, ge=0, le=16, description="nvidia.com/gpu per pod (0: a CPU-only dev group)."
    )
    minReplicas: int = Field(0, ge=0, le=1000, description="Pods kept even when idle.")
    maxReplicas: int = Field(4, ge=1, le=1000, description="Most pods the autoscaler may add.")
    idleTimeoutSeconds: int | None = Field(
        None, ge=0, description="Seconds idle before a pod is removed (default: autoscaler's)."
    )
    resources: Resources = Field(..., description="CPU and memory of each worker container.")


class Spool(ValuesModel):
    """Disk for the files of large jobs (tile canvases before encoding), in every Ray pod."""

    mountPath: str = Field(
        "/home/ray/spool", pattern=r"^/", description="Mount path; $RENDER_CLUSTER_SPOOL_DIR."
    )
    type: Literal["emptyDir", "pvc", "existingClaim"] = Field(
        "emptyDir",
        description="emptyDir: node disk per pod; pvc: a PersistentVolumeClaim per pod "
        "(deleted with it); existingClaim: one claim shared by every pod (ReadWriteMany).",
    )
    sizeLimit: Quantity = Field(
        "50Gi", description="emptyDir's size limit, or the size each pod's claim requests."
    )
    storageClassName: str = Field("", description="pvc: the StorageClass; empty: the default.")
    claimName: str = Field("", description="existingClaim: the claim's name.")
