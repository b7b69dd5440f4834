{{/*
Names, labels and shared fragments of the ocpi-hub chart.
*/}}

{{/* The chart name, overridable with nameOverride. */}}
{{- define "ocpi-hub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects. Kept to 57 characters so that suffixed names ("-redis", "-admin", "-test")
still fit the 63-character limit of DNS labels.
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

{{/* Name of the Service of the admin listener (/metrics, the operator page). */}}
{{- define "ocpi-hub.adminServiceName" -}}
{{- printf "%s-admin" (include "ocpi-hub.fullname" .) }}
{{- end }}

{{/* Name of the ConfigMap holding hub.configFile. */}}
{{- define "ocpi-hub.configFileName" -}}
{{- printf "%s-config" (include "ocpi-hub.fullname" .) }}
{{- end }}

{{/* The ServiceAccount of the hub pods: the chart's own, or an existing one (else the namespace's "default"). */}}
{{- define "ocpi-hub.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ocpi-hub.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Where hub.configFile is mounted, and the file the hub reads (OCPI_HUB_CONFIG). */}}
{{- define "ocpi-hub.configFileDir" -}}
/etc/ocpi-hub/config
{{- end }}
{{- define "ocpi-hub.configFilePath" -}}
{{- printf "%s/ocpi-hub.toml" (include "ocpi-hub.configFileDir" .) }}
{{- end }}

{{/* Where the Secret hub.tls.existingSecret is mounted. */}}
{{- define "ocpi-hub.tlsDir" -}}
/etc/ocpi-hub/tls
{{- end }}

{{/* HTTP or HTTPS: the scheme of the public port (HTTPS when the hub terminates TLS itself). */}}
{{- define "ocpi-hub.scheme" -}}
{{- if .Values.hub.tls.existingSecret }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{/*
Every OCPI_HUB_* setting the chart passes through its ConfigMap, as a YAML map. One definition serves the
ConfigMap and the check that hub.configFile does not set a key these variables would silently override
(the hub lets environment variables beat the config file).
*/}}
{{- define "ocpi-hub.env" -}}
{{- $env := dict
  "OCPI_HUB_HOST" "0.0.0.0"
  "OCPI_HUB_PORT" (toString .Values.hub.port)
  "OCPI_HUB_ADMIN_PORT" (toString .Values.hub.adminPort)
  "OCPI_HUB_PUBLIC_URL" (include "ocpi-hub.publicUrl" .)
  "OCPI_HUB_LOG_LEVEL" (toString .Values.hub.logLevel)
  "OCPI_HUB_WORKERS" (toString .Values.hub.workers)
  "OCPI_HUB_SERVER" (toString .Values.hub.server)
  "OCPI_HUB_FORWARD_TIMEOUT" (toString .Values.hub.forwardTimeout)
  "OCPI_HUB_MAX_BODY_SIZE" (toString (int64 .Values.hub.maxBodySize))
  "OCPI_HUB_LIVENESS_INTERVAL" (toString .Values.hub.livenessInterval)
  "OCPI_HUB_DRAIN_TIME" (toString .Values.hub.drainTime)
}}
{{- with .Values.hub.countryCode }}
{{- $_ := set $env "OCPI_HUB_COUNTRY_CODE" (upper .) }}
{{- end }}
{{- with .Values.hub.partyId }}
{{- $_ := set $env "OCPI_HUB_PARTY_ID" (upper .) }}
{{- end }}
{{- if .Values.hub.configFile }}
{{- $_ := set $env "OCPI_HUB_CONFIG" (include "ocpi-hub.configFilePath" .) }}
{{- end }}
{{- if .Values.hub.tls.existingSecret }}
{{- $_ := set $env "OCPI_HUB_CERTFILE" (printf "%s/%s" (include "ocpi-hub.tlsDir" .) .Values.hub.tls.certKey) }}
{{- $_ := set $env "OCPI_HUB_KEYFILE" (printf "%s/%s" (include "ocpi-hub.tlsDir" .) .Values.hub.tls.keyKey) }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/*
Seconds from the start of a pod's termination to SIGKILL. Kubernetes runs the preStop sleep first (while the pod's
endpoints are removed from Services, Ingress controllers and Gateways), then sends SIGTERM; the hub then drains for
hub.drainTime. The grace period is their sum plus a margin, computed here so that the three never disagree.
*/}}
{{- define "ocpi-hub.terminationGracePeriodSeconds" -}}
{{- add (int .Values.deployment.preStopSleepSeconds) (int (ceil .Values.hub.drainTime)) (int .Values.deployment.terminationGraceMarginSeconds) }}
{{- end }}

{{/*
The host parties reach the hub at: the host of hub.publicUrl without a port, or "" when publicUrl is empty.
Ingress and HTTPRoute default to it, so that the URLs the hub hands out and the routed host agree.
*/}}
{{- define "ocpi-hub.publicHost" -}}
{{- with .Values.hub.publicUrl }}
{{- (urlParse .).hostname }}
{{- end }}
{{- end }}

{{/*
PromQL label matchers that pick this release's series in the alerts: prometheusRule.selector, else the release's
namespace and, with the ServiceMonitor, its job (the Prometheus Operator names the job after the admin Service).
*/}}
{{- define "ocpi-hub.alertSelector" -}}
{{- if .Values.prometheusRule.selector }}
{{- .Values.prometheusRule.selector }}
{{- else if .Values.serviceMonitor.enabled }}
{{- printf "namespace=%q, job=%q" .Release.Namespace (include "ocpi-hub.adminServiceName" .) }}
{{- else }}
{{- printf "namespace=%q" .Release.Namespace }}
{{- end }}
{{- end }}
