{{/*
Rules values.schema.json cannot express, checked before anything renders. Every
problem is listed, worded like the pydantic validators in core/config.py.
*/}}
{{- define "render-cluster.validate" -}}
{{- $errors := list }}
{{- $v := .Values }}

{{- $rsName := include "render-cluster.rayServiceName" . }}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $rsName) }}
{{- $errors = append $errors (printf "the RayService name %q is not a DNS-1035 label (a letter first, then letters, digits, '-'): set fullnameOverride" $rsName) }}
{{- end }}

{{- $maxGpus := 0 }}
{{- $groupNames := list }}
{{- range $i, $g := $v.workerGroups }}
{{- if gt (int $g.minReplicas) (int $g.maxReplicas) }}
{{- $errors = append $errors (printf "workerGroups[%d] (%s): maxReplicas (%d) must be >= minReplicas (%d)" $i $g.name (int $g.maxReplicas) (int $g.minReplicas)) }}
{{- end }}
{{- if has $g.name $groupNames }}
{{- $errors = append $errors (printf "workerGroups[%d]: the name %q is used by another group" $i $g.name) }}
{{- end }}
{{- if and (not (kindIs "invalid" $g.idleTimeoutSeconds)) (ne $v.autoscaler.version "v2") }}
{{- $errors = append $errors (printf "workerGroups[%d] (%s): idleTimeoutSeconds needs autoscaler.version v2" $i $g.name) }}
{{- end }}
{{- $groupNames = append $groupNames $g.name }}
{{- $maxGpus = max $maxGpus (int $g.gpusPerPod) }}
{{- end }}

{{- $c := $v.cluster }}
{{- range $name, $model := $c.models }}
{{- $m := include "render-cluster.model" (dict "ctx" $ "model" $model) | fromJson }}
{{- $a := $m.autoscaling }}
{{- $min := int $a.min_replicas }}
{{- $max := int $a.max_replicas }}
{{- if lt $max $min }}
{{- $errors = append $errors (printf "cluster.models.%s.autoscaling: max_replicas (%d) must be >= min_replicas (%d)" $name $max $min) }}
{{- else if not (kindIs "invalid" $a.initial_replicas) }}
{{- $initial := int $a.initial_replicas }}
{{- if or (lt $initial $min) (gt $initial $max) }}
{{- $errors = append $errors (printf "cluster.models.%s.autoscaling: initial_replicas (%d) must lie between min_replicas (%d) and max_replicas (%d)" $name $initial $min $max) }}
{{- end }}
{{- end }}
{{- if gt (float64 $m.gpus_per_replica) (float64 $maxGpus) }}
{{- $errors = append $errors (printf "cluster.models.%s: gpus_per_replica (%v) is more than any worker group has per pod (largest gpusPerPod: %d); add a worker group with enough GPUs" $name $m.gpus_per_replica $maxGpus) }}
{{- end }}
{{- end }}

{{- $unknown := list }}
{{- range $style, $model := $c.styles }}
{{- if not (hasKey $c.models $model) }}
{{- $unknown = append $unknown (printf "'%s' -> '%s'" $style $model) }}
{{- end }}
{{- end }}
{{- if $unknown }}
{{- $errors = append $errors (printf "cluster.styles: styles name models that are not defined: %s (models: %s)" (join ", " $unknown) (keys $c.models | sortAlpha | join ", ")) }}
{{- end }}
{{- if and $c.default_style (not (hasKey (default dict $c.styles) $c.default_style)) }}
{{- $errors = append $errors (printf "cluster.default_style: default_style '%s' is not one of the styles (%s)" $c.default_style (keys (default dict $c.styles) | sortAlpha | join ", " | default "none defined")) }}
{{- end }}
{{- if and $c.storage (eq (default "local" $c.storage.kind) "s3") (not $c.storage.bucket) }}
{{- $errors = append $errors "cluster.storage: bucket is required when kind is 's3'" }}
{{- end }}

{{- $s3 := $v.secrets.s3 }}
{{- if and $s3.existingSecret (or $s3.accessKeyId $s3.secretAccessKey) }}
{{- $errors = append $errors "secrets.s3: set existingSecret or accessKeyId/secretAccessKey, not both" }}
{{- else if ne (empty $s3.accessKeyId) (empty $s3.secretAccessKey) }}
{{- $errors = append $errors "secrets.s3: accessKeyId and secretAccessKey go together" }}
{{- end }}
{{- if and $v.secrets.huggingFace.existingSecret $v.secrets.huggingFace.token }}
{{- $errors = append $errors "secrets.huggingFace: set existingSecret or token, not both" }}
{{- end }}
{{- $keys := $v.secrets.apiKeys }}
{{- $keysEnv := ($c.auth | default dict).api_keys_env }}
{{- if and $keys.existingSecret $keys.keys }}
{{- $errors = append $errors "secrets.apiKeys: set existingSecret or keys, not both" }}
{{- else if and (or $keys.existingSecret $keys.keys) (not $keysEnv) }}
{{- $errors = append $errors "secrets.apiKeys is set but cluster.auth.api_keys_env is not: name the variable the keys are exported as (e.g. RENDER_CLUSTER_API_KEYS), or the API stays open" }}
{{- else if and $keysEnv (not (or $keys.existingSecret $keys.keys)) }}
{{- $errors = append $errors (printf "cluster.auth.api_keys_env is %s but secrets.apiKeys has neither existingSecret nor keys: every request would be refused" $keysEnv) }}
{{- end }}

{{- $providers := $v.secrets.providers }}
{{- $keyEnvs := include "render-cluster.providerKeyEnvs" . | fromJsonArray }}
{{- if and $providers.existingSecret $providers.keys }}
{{- $errors = append $errors "secrets.providers: set existingSecret or keys, not both" }}
{{- else if and $keyEnvs (not (or $providers.existingSecret $providers.keys)) }}
{{- $errors = append $errors (printf "cluster.models has hosted models reading %s but secrets.providers has neither existingSecret nor keys: their calls would fail" (join ", " $keyEnvs)) }}
{{- else if $providers.keys }}
{{- range $keyEnvs }}
{{- if not (hasKey $providers.keys .) }}
{{- $errors = append $errors (printf "secrets.providers.keys has no %s, which a hosted model reads its API key from" .) }}
{{- end }}
{{- end }}
{{- end }}

{{- $cacheSources := keys $v.modelCache.volume | sortAlpha }}
{{- if ne (len $cacheSources) 1 }}
{{- $errors = append $errors (printf "modelCache.volume: one volume source, got %d (%s); Helm merges yours with the default emptyDir: write emptyDir: null beside it" (len $cacheSources) (join ", " $cacheSources)) }}
{{- end }}
{{- if and (eq $v.spool.type "existingClaim") (not $v.spool.claimName) }}
{{- $errors = append $errors "spool: claimName is required when type is 'existingClaim'" }}
{{- end }}

{{- /* Extra volumes and mounts of the head and each worker group. */}}
{{- $chartVolumes := list "shm" "model-cache" "spool" }}
{{- $chartPaths := list "/dev/shm" $v.modelCache.mountPath $v.spool.mountPath }}
{{- $groups := list (list "head" $v.head) }}
{{- range $i, $g := $v.workerGroups }}
{{- $groups = append $groups (list (printf "workerGroups[%d] (%s)" $i $g.name) $g) }}
{{- end }}
{{- range $groups }}
{{- $where := index . 0 }}
{{- $g := index . 1 }}
{{- $names := $chartVolumes }}
{{- range $g.volumes }}
{{- if has .name $names }}
{{- $errors = append $errors (printf "%s.volumes: the name %q is taken (the chart's volumes: %s)" $where .name (join ", " $chartVolumes)) }}
{{- end }}
{{- $names = append $names .name }}
{{- end }}
{{- range $g.volumeMounts }}
{{- if not (has .name $names) }}
{{- $errors = append $errors (printf "%s.volumeMounts: %q names no volume (volumes: %s)" $where .name (join ", " $names)) }}
{{- end }}
{{- if has .mountPath $chartPaths }}
{{- $errors = append $errors (printf "%s.volumeMounts: %s is where the chart mounts its own volume" $where .mountPath) }}
{{- end }}
{{- end }}
{{- end }}

{{- $upgrade := $v.upgradeStrategy }}
{{- if and (eq $upgrade.type "NewClusterWithIncrementalUpgrade") (kindIs "invalid" $upgrade.clusterUpgradeOptions) }}
{{- $errors = append $errors "upgradeStrategy: NewClusterWithIncrementalUpgrade needs clusterUpgradeOptions (gatewayClassName, stepSizePercent, intervalSeconds)" }}
{{- end }}

{{- if $errors }}
{{- fail (printf "invalid values:\n  - %s" (join "\n  - " $errors)) }}
{{- end }}
{{- end }}
