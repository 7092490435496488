{{/* Names and labels. Kubernetes names and label values stop at 63 characters. */}}

{{- define "render-cluster.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "render-cluster.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The RayService name: KubeRay accepts at most 47 characters (it appends a 6-character
suffix for each RayCluster, then "-serve-svc", and stays within 63).
*/}}
{{- define "render-cluster.rayServiceName" -}}
{{- include "render-cluster.fullname" . | trunc 47 | trimSuffix "-" }}
{{- end }}

{{/* "<fullname>-<suffix>" within 63 characters. Call with (dict "ctx" $ "suffix" "x"). */}}
{{- define "render-cluster.suffixed" -}}
{{- $room := sub 62 (len .suffix) | int }}
{{- printf "%s-%s" (include "render-cluster.fullname" .ctx | trunc $room | trimSuffix "-") .suffix }}
{{- end }}

{{- define "render-cluster.serveServiceName" -}}
{{- printf "%s-serve-svc" (include "render-cluster.rayServiceName" .) }}
{{- end }}

{{- define "render-cluster.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "render-cluster.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "render-cluster.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "render-cluster.selectorLabels" -}}
app.kubernetes.io/name: {{ include "render-cluster.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "render-cluster.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "render-cluster.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The component label of a worker group's pods (also their PDB selector). */}}
{{- define "render-cluster.workerComponent" -}}
{{- printf "worker-%s" . }}
{{- end }}
