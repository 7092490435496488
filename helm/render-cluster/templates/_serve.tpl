{{/*
serveConfigV2, generated from .Values.cluster (a ClusterConfig). Each model's Serve
deployment carries the same options as core/deployment_options.py's
model_deployment_options(); tests/k8s proves that they agree.
*/}}

{{/*
One model with every ModelConfig default filled in (files/model-defaults.json is
generated from the pydantic model), as JSON. Keys are set one by one rather than
with mergeOverwrite, which would drop user values that are zero (min_replicas: 0).
Call with (dict "ctx" $ "model" $model).
*/}}
{{- define "render-cluster.model" -}}
{{- $out := .ctx.Files.Get "files/model-defaults.json" | fromJson }}
{{- range $key, $value := .model }}
{{- $base := get $out $key }}
{{- if and (kindIs "map" $value) (kindIs "map" $base) }}
{{- range $k, $v := $value }}
{{- $_ := set $base $k $v }}
{{- end }}
{{- else }}
{{- $_ := set $out $key $value }}
{{- end }}
{{- end }}
{{- /* a hosted model books no GPU unless told (core/remote/config.py remote_defaults) */}}
{{- if and (eq (toString $out.family) "remote") (not (and (kindIs "map" .model) (hasKey .model "gpus_per_replica"))) }}
{{- $_ := set $out "gpus_per_replica" 0 }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/*
The environment variables the hosted models (family remote) read their API keys from,
as a JSON list: each model's remote.api_key_env, else its provider's default (the same
table as core/remote/config.py DEFAULT_KEY_ENV).
*/}}
{{- define "render-cluster.providerKeyEnvs" -}}
{{- $defaults := dict "openai" "OPENAI_API_KEY" "ideogram" "IDEOGRAM_API_KEY" "imagen" "GEMINI_API_KEY" "gemini" "GEMINI_API_KEY" }}
{{- $envs := list }}
{{- range $name, $model := .Values.cluster.models }}
{{- if and (kindIs "map" $model) (eq (toString $model.family) "remote") (kindIs "map" $model.remote) }}
{{- $envs = append $envs ($model.remote.api_key_env | default (get $defaults (toString $model.remote.provider))) }}
{{- end }}
{{- end }}
{{- $envs | uniq | sortAlpha | toJson }}
{{- end }}

{{/* The Serve deployment of one model, as JSON. Call with (dict "ctx" $ "name" $n "model" $m). */}}
{{- define "render-cluster.deployment" -}}
{{- $m := include "render-cluster.model" . | fromJson }}
{{- $a := $m.autoscaling }}
{{- $scaling := dict
  "min_replicas" $a.min_replicas
  "max_replicas" $a.max_replicas
  "target_ongoing_requests" $a.target_ongoing_requests
  "upscale_delay_s" $a.upscale_delay_s
  "downscale_delay_s" $a.downscale_delay_s
  "metrics_interval_s" $a.metrics_interval_s
  "look_back_period_s" (maxf (mulf 2 $a.metrics_interval_s) 2.0)
}}
{{- if not (kindIs "invalid" $a.initial_replicas) }}
{{- $_ := set $scaling "initial_replicas" $a.initial_replicas }}
{{- end }}
{{- dict
  "name" (printf "model-%s" .name)
  "ray_actor_options" (dict "num_gpus" $m.gpus_per_replica "num_cpus" $m.cpus_per_replica)
  "autoscaling_config" $scaling
  "max_ongoing_requests" $m.max_ongoing_requests
  "max_queued_requests" $m.max_queued_requests
  "request_router_config" (dict "request_router_class" "serve.least_loaded_router:LeastLoadedRouter" "initial_backoff_s" 0.005 "backoff_multiplier" 2.0 "max_backoff_s" 0.1)
  "health_check_period_s" 10.0
  "health_check_timeout_s" 60.0
  "graceful_shutdown_timeout_s" 30.0
  | toJson }}
{{- end }}

{{/* The whole Serve config: HTTP on 0.0.0.0:8000 and the render-cluster application. */}}
{{- define "render-cluster.serveConfig" -}}
{{- $deployments := list }}
{{- range $name, $model := .Values.cluster.models }}
{{- $deployment := include "render-cluster.deployment" (dict "ctx" $ "name" $name "model" $model) }}
{{- $deployments = append $deployments ($deployment | fromJson) }}
{{- end }}
{{- /* the ingress: autoscaled, at least two replicas (core/deployment_options.py) */}}
{{- $api := .Values.api | default dict }}
{{- $ingressScaling := dict
  "min_replicas" ($api.minReplicas | default 2)
  "max_replicas" ($api.maxReplicas | default 8)
  "target_ongoing_requests" ($api.targetOngoingRequests | default 64)
}}
{{- $deployments = append $deployments (dict "name" "ingress" "autoscaling_config" $ingressScaling) }}
{{- $config := deepCopy .Values.cluster }}
{{- $_ := set $config "model_cache_dir" .Values.modelCache.mountPath }}
{{- $app := dict
  "name" "render-cluster"
  "import_path" "serve.app:build_app"
  "route_prefix" "/"
  "args" (dict "config" $config)
  "deployments" $deployments
}}
{{- dict "http_options" (dict "host" "0.0.0.0" "port" 8000) "applications" (list $app) | toYaml }}
{{- end }}
