{{/*
Names, labels and shared fragments of the ocpi-hub chart.
*/}}

{{/* The chart name, overridable with nameOverride. */}}
{{- define "ocpi-hub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects. Kept to 57 characters so that suffixed names ("-redis", "-test") still fit
the 63-character limit of DNS labels.
*/}}
{{- define "ocpi-hub.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 57 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 57 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 57 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "ocpi-hub.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object of the release carries. */}}
{{- define "ocpi-hub.commonLabels" -}}
helm.sh/chart: {{ include "ocpi-hub.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ocpi-hub
{{- end }}

{{/*
Selector labels of the hub pods. The component label keeps the embedded Redis and the test pod out of the hub's
selectors. Selectors are immutable: never change these on an installed release.
*/}}
{{- define "ocpi-hub.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ocpi-hub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: hub
{{- end }}

{{/* Labels of the hub's objects. */}}
{{- define "ocpi-hub.labels" -}}
{{ include "ocpi-hub.commonLabels" . }}
{{ include "ocpi-hub.selectorLabels" . }}
{{- end }}

{{/* Name of the embedded Redis' objects. */}}
{{- define "ocpi-hub.redis.fullname" -}}
{{- printf "%s-redis" (include "ocpi-hub.fullname" .) }}
{{- end }}

{{/* Selector labels of the embedded Redis pod. */}}
{{- define "ocpi-hub.redis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ocpi-hub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end }}

{{/* Labels of the embedded Redis' objects. */}}
{{- define "ocpi-hub.redis.labels" -}}
{{ include "ocpi-hub.commonLabels" . }}
{{ include "ocpi-hub.redis.selectorLabels" . }}
{{- end }}

{{/* The hub image reference; the tag defaults to the chart's appVersion. */}}
{{- define "ocpi-hub.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Where the Redis URL comes from: "existingSecret", "secret" (the chart's own, from redis.url) or "embedded".
Fails with a message when no source, or the embedded Redis together with an external one, is chosen.
*/}}
{{- define "ocpi-hub.redis.source" -}}
{{- $external := or .Values.redis.existingSecret .Values.redis.url }}
{{- if and .Values.redis.embedded.enabled $external }}
{{- fail "redis.embedded.enabled is true while redis.url or redis.existingSecret is set: choose one (set redis.embedded.enabled=false to use an external Redis)" }}
{{- else if .Values.redis.existingSecret }}
{{- print "existingSecret" }}
{{- else if .Values.redis.url }}
{{- print "secret" }}
{{- else if .Values.redis.embedded.enabled }}
{{- print "embedded" }}
{{- else }}
{{- fail "no Redis for the registry: set redis.url, redis.existingSecret or redis.embedded.enabled" }}
{{- end }}
{{- end }}

{{/* Name of the Secret the chart creates for redis.url. */}}
{{- define "ocpi-hub.secretName" -}}
{{- include "ocpi-hub.fullname" . }}
{{- end }}

{{/* The base URL parties reach the hub at: hub.publicUrl, else the in-cluster Service URL. */}}
{{- define "ocpi-hub.publicUrl" -}}
{{- if .Values.hub.publicUrl }}
{{- .Values.hub.publicUrl | trimSuffix "/" }}
{{- else }}
{{- printf "http://%s.%s.svc:%d" (include "ocpi-hub.fullname" .) .Release.Namespace (int .Values.service.port) }}
{{- end }}
{{- end }}
