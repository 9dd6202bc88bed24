{{/* The chart's name, and the name of every object: the release's. */}}
{{- define "calpresence.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "calpresence.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "calpresence.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "calpresence.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "calpresence.selectorLabels" -}}
app.kubernetes.io/name: {{ include "calpresence.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "calpresence.labels" -}}
{{ include "calpresence.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/*
calpresence.postgres is "true" with state.driver postgres. It fails the
render on values that cannot run: several replicas on the bbolt file (the
file is locked by one process), an unknown driver, no Secret.
*/}}
{{- define "calpresence.postgres" -}}
{{- if not (has .Values.state.driver (list "bbolt" "postgres")) -}}
{{- fail (printf "state.driver %q: want bbolt or postgres" .Values.state.driver) -}}
{{- end -}}
{{- if and (ne .Values.state.driver "postgres") (gt (int .Values.replicas) 1) -}}
{{- fail (printf "replicas %d with state.driver bbolt: the state file takes one process; set state.driver postgres (values-postgres-replicas.yaml)" (int .Values.replicas)) -}}
{{- end -}}
{{- if not .Values.secrets.existingSecret -}}
{{- fail "secrets.existingSecret: name the Secret the pods read (the chart creates none)" -}}
{{- end -}}
{{- if eq .Values.state.driver "postgres" }}true{{ end -}}
{{- end -}}

{{/* calpresence.port is the port of config.server.listen. */}}
{{- define "calpresence.port" -}}
{{- .Values.config.server.listen | default ":8080" | toString | splitList ":" | last | int -}}
{{- end -}}

{{/*
calpresence.selfservice is "true" when the self-service listener is exposed:
selfservice.enabled, or config.selfservice.url set (the daemon then listens
on config.selfservice.listen, whose port must be selfservice.port).
*/}}
{{- define "calpresence.selfservice" -}}
{{- $listen := dig "selfservice" "listen" "" .Values.config | toString -}}
{{- if and $listen (ne ($listen | splitList ":" | last | int) (.Values.selfservice.port | int)) -}}
{{- fail (printf "selfservice.port: %v is not the port of config.selfservice.listen %q" .Values.selfservice.port $listen) -}}
{{- end -}}
{{- if or .Values.selfservice.enabled (dig "selfservice" "url" "" .Values.config) }}true{{ end -}}
{{- end -}}

{{/*
calpresence.config is config.yaml: values.config with the state section the
driver needs, on the claim (bbolt) or at the DSN the Secret mounts (postgres).
*/}}
{{- define "calpresence.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $state := deepCopy (default (dict) $cfg.state) -}}
{{- $_ := unset $state "dsn" -}}
{{- if include "calpresence.postgres" . -}}
{{- $_ = unset $state "path" -}}
{{- $_ = set $state "driver" "postgres" -}}
{{- $_ = set $state "dsn_file" (printf "/run/secrets/calpresence/%s" .Values.secrets.postgresDSNKey) -}}
{{- else -}}
{{- $_ = unset $state "driver" -}}
{{- $_ = unset $state "dsn_file" -}}
{{- $_ = set $state "path" "/var/lib/calpresence/state.db" -}}
{{- end -}}
{{- $_ = set $cfg "state" $state -}}
{{- toYaml $cfg -}}
{{- end -}}
