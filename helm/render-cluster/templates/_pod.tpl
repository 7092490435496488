{{/* Pieces shared by the head and worker pod templates. */}}

{{/* Name of the Secret holding one kind of credential. Call with (list $ .Values.secrets.x). */}}
{{- define "render-cluster.secretName" -}}
{{- $ctx := index . 0 }}
{{- default (include "render-cluster.fullname" $ctx) (index . 1).existingSecret }}
{{- end }}

{{/* Whether the chart creates its own Secret (some credential given as a value). */}}
{{- define "render-cluster.createsSecret" -}}
{{- $s := .Values.secrets }}
{{- if or (and $s.s3.accessKeyId (not $s.s3.existingSecret)) (and $s.huggingFace.token (not $s.huggingFace.existingSecret)) (and $s.apiKeys.keys (not $s.apiKeys.existingSecret)) (and $s.providers.keys (not $s.providers.existingSecret)) }}true{{ end }}
{{- end }}

{{- define "render-cluster.env" -}}
- name: HF_HOME
  value: {{ printf "%s/huggingface" .Values.modelCache.mountPath | quote }}
- name: RENDER_CLUSTER_SPOOL_DIR
  value: {{ .Values.spool.mountPath | quote }}
- name: RAY_SERVE_USE_GRPC_BY_DEFAULT
  value: "1"
{{- $s := .Values.secrets }}
{{- if or $s.s3.existingSecret $s.s3.accessKeyId }}
{{- $name := include "render-cluster.secretName" (list . $s.s3) }}
{{- range list "AWS_ACCESS_KEY_ID" "AWS_SECRET_ACCESS_KEY" }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $name }}
      key: {{ . }}
{{- end }}
{{- end }}
{{- if or $s.huggingFace.existingSecret $s.huggingFace.token }}
- name: HF_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "render-cluster.secretName" (list . $s.huggingFace) }}
      key: HF_TOKEN
{{- end }}
{{- if or $s.apiKeys.existingSecret $s.apiKeys.keys }}
- name: {{ .Values.cluster.auth.api_keys_env }}
  valueFrom:
    secretKeyRef:
      name: {{ include "render-cluster.secretName" (list . $s.apiKeys) }}
      key: API_KEYS
{{- end }}
{{- if or $s.providers.existingSecret $s.providers.keys }}
{{- $name := include "render-cluster.secretName" (list . $s.providers) }}
{{- range include "render-cluster.providerKeyEnvs" . | fromJsonArray }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $name }}
      key: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{- define "render-cluster.volumeMounts" -}}
- name: shm
  mountPath: /dev/shm
- name: model-cache
  mountPath: {{ .Values.modelCache.mountPath }}
- name: spool
  mountPath: {{ .Values.spool.mountPath }}
{{- end }}

{{/* The spool volume: large jobs' canvases before encoding (RENDER_CLUSTER_SPOOL_DIR). */}}
{{- define "render-cluster.spoolVolume" -}}
{{- $s := .Values.spool }}
name: spool
{{- if eq $s.type "pvc" }}
ephemeral:
  volumeClaimTemplate:
    spec:
      accessModes: [ReadWriteOnce]
      {{- with $s.storageClassName }}
      storageClassName: {{ . }}
      {{- end }}
      resources:
        requests:
          storage: {{ $s.sizeLimit }}
{{- else if eq $s.type "existingClaim" }}
persistentVolumeClaim:
  claimName: {{ $s.claimName }}
{{- else }}
emptyDir:
  sizeLimit: {{ $s.sizeLimit }}
{{- end }}
{{- end }}

{{/* /dev/shm backs Ray's object store: tiles travel through it. */}}
{{- define "render-cluster.volumes" -}}
- name: shm
  emptyDir:
    medium: Memory
- name: model-cache
  {{- toYaml .Values.modelCache.volume | nindent 2 }}
- {{- include "render-cluster.spoolVolume" . | nindent 2 }}
{{- end }}

{{/* Pod metadata and spec fields shared by every Ray pod. Call with (dict "ctx" $ "component" "head" "placement" .Values.head). */}}
{{- define "render-cluster.podMetadata" -}}
labels:
  {{- include "render-cluster.selectorLabels" .ctx | nindent 2 }}
  app.kubernetes.io/component: {{ .component }}
  {{- with .ctx.Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with .ctx.Values.podAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "render-cluster.podSpec" -}}
serviceAccountName: {{ include "render-cluster.serviceAccountName" .ctx }}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .ctx.Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .placement.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .placement.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .placement.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .placement.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .placement.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .placement.runtimeClassName }}
runtimeClassName: {{ . }}
{{- end }}
volumes:
  {{- include "render-cluster.volumes" .ctx | nindent 2 }}
  {{- with .placement.volumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* Image, env, mounts and security of a Ray container. Call with (dict "ctx" $ "group" .Values.head). */}}
{{- define "render-cluster.containerCommon" -}}
image: {{ include "render-cluster.image" .ctx }}
imagePullPolicy: {{ .ctx.Values.image.pullPolicy }}
env:
  {{- include "render-cluster.env" .ctx | nindent 2 }}
  {{- with .group.env }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with .group.envFrom }}
envFrom:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumeMounts:
  {{- include "render-cluster.volumeMounts" .ctx | nindent 2 }}
  {{- with .group.volumeMounts }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with .ctx.Values.containerSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
