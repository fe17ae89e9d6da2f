{{/* Chart name, overridable; the app.kubernetes.io/name label. */}}
{{- define "llm-cost-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Resource name prefix: <release>-<chart>, or the release name when it already contains the chart
name; truncated to 63 characters (the DNS label limit). */}}
{{- define "llm-cost-exporter.fullname" -}}
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

{{- define "llm-cost-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "llm-cost-exporter.labels" -}}
helm.sh/chart: {{ include "llm-cost-exporter.chart" . }}
{{ include "llm-cost-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: exporter
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that select the exporter's pods (daemonset mode). */}}
{{- define "llm-cost-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-cost-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of the pods that carry the exporter: the chart's own in daemonset mode, the vLLM pods'
(sidecar.podSelector) in sidecar mode. */}}
{{- define "llm-cost-exporter.podSelector" -}}
{{- if eq .Values.mode "sidecar" }}
{{- toYaml .Values.sidecar.podSelector }}
{{- else }}
{{- include "llm-cost-exporter.selectorLabels" . }}
{{- end }}
{{- end }}

{{- define "llm-cost-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llm-cost-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "llm-cost-exporter.image" -}}
{{- $repository := .Values.image.repository }}
{{- if .Values.image.registry }}{{ $repository = printf "%s/%s" .Values.image.registry $repository }}{{ end }}
{{- $image := printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
{{- if .Values.image.digest }}{{ $image = printf "%s@%s" $image .Values.image.digest }}{{ end }}
{{- $image }}
{{- end }}

{{/* "true" when a Kubernetes feature of the exporter is on: it then needs the API (token, RBAC). */}}
{{- define "llm-cost-exporter.needsKubeApi" -}}
{{- if or .Values.kubernetes.nodeLabelsPricing .Values.kubernetes.discovery.enabled }}true{{ end }}
{{- end }}

{{- define "llm-cost-exporter.webConfigSecretName" -}}
{{- default (printf "%s-web-config" (include "llm-cost-exporter.fullname" .) | trunc 63 | trimSuffix "-") .Values.webConfig.existingSecret }}
{{- end }}

{{/* http, or https when the web configuration turns TLS on. */}}
{{- define "llm-cost-exporter.scheme" -}}
{{- if and .Values.webConfig.enabled .Values.webConfig.tls }}https{{ else }}http{{ end }}
{{- end }}

{{/* The exporter's config.yml: the `config` values plus the `kubernetes:` section that the chart owns. */}}
{{- define "llm-cost-exporter.configFile" -}}
{{- $config := deepCopy .Values.config }}
{{- if hasKey $config "kubernetes" }}
{{- fail "config.kubernetes: set the chart's `kubernetes` values instead (kubernetes.nodeLabelsPricing, kubernetes.discovery), so that the RBAC follows them" }}
{{- end }}
{{- if include "llm-cost-exporter.needsKubeApi" . }}
{{- $discovery := dict "enabled" .Values.kubernetes.discovery.enabled "label_selector" .Values.kubernetes.discovery.labelSelector }}
{{- with .Values.kubernetes.discovery.namespace }}{{ $_ := set $discovery "namespace" . }}{{ end }}
{{- $owned := dict "enabled" true "node_labels_pricing" .Values.kubernetes.nodeLabelsPricing "discovery" $discovery }}
{{- if hasKey (.Values.kubernetes.extraConfig.pod_resources | default dict) "enabled" }}
{{- fail "kubernetes.extraConfig.pod_resources.enabled: set podResources.enabled instead (it mounts the kubelet's socket)" }}
{{- end }}
{{- if .Values.podResources.enabled }}
{{- $_ := set $owned "pod_resources" (dict "enabled" true "socket" (printf "%s/kubelet.sock" (include "llm-cost-exporter.podResourcesMountPath" .))) }}
{{- end }}
{{- $_ := set $config "kubernetes" (mergeOverwrite (deepCopy .Values.kubernetes.extraConfig) $owned) }}
{{- end }}
{{- if .Values.spotPrices.enabled }}
{{- $pricing := $config.pricing | default dict }}
{{- $cloud := $pricing.cloud | default dict }}
{{- $_ := set $cloud "spot_file" (printf "%s/spot-prices.yaml" (include "llm-cost-exporter.spotPricesMountPath" .)) }}
{{- $_ := set $pricing "cloud" $cloud }}
{{- $_ := set $config "pricing" $pricing }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* Scrape endpoint settings shared by the ServiceMonitor and the PodMonitor. */}}
{{- define "llm-cost-exporter.endpoint" -}}
port: {{ .root.Values.portName }}
path: /metrics
scheme: {{ include "llm-cost-exporter.scheme" .root }}
{{- with .monitor.interval }}
interval: {{ . }}
{{- end }}
{{- with .monitor.scrapeTimeout }}
scrapeTimeout: {{ . }}
{{- end }}
{{- if .monitor.honorLabels }}
honorLabels: true
{{- end }}
{{- with .monitor.tlsConfig }}
tlsConfig:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .monitor.basicAuth }}
basicAuth:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .monitor.relabelings }}
relabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .monitor.metricRelabelings }}
metricRelabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* A checksum of the configuration keys that the exporter cannot reload (exporter/reload.py
RESTART_KEYS): on the pods, so that they roll when one of them changes and only then. */}}
{{- define "llm-cost-exporter.restartChecksum" -}}
{{- $config := include "llm-cost-exporter.configFile" . | fromYaml }}
{{- $pricing := $config.pricing | default dict }}
{{- $gpu := $config.gpu | default dict }}
{{- $keys := dict "pricing.mode" $pricing.mode "pricing.currency" $pricing.currency "gpu.backend" $gpu.backend "gpu.simulated" $gpu.simulated "window" $config.window "kubernetes" $config.kubernetes }}
{{- toJson $keys | sha256sum }}
{{- end }}

{{/* Where the kubelet's pod-resources directory is mounted in the exporter's container (podResources). */}}
{{- define "llm-cost-exporter.podResourcesMountPath" -}}
/var/lib/kubelet/pod-resources
{{- end }}

{{/* podResources needs discovery (the exporter maps the devices to the discovered pods) and a DaemonSet. */}}
{{- define "llm-cost-exporter.checkPodResources" -}}
{{- if .Values.podResources.enabled }}
{{- if ne .Values.mode "daemonset" }}
{{- fail "podResources.enabled: only in daemonset mode (in sidecar mode the pods are yours: mount the socket there)" }}
{{- end }}
{{- if not .Values.kubernetes.discovery.enabled }}
{{- fail "podResources.enabled: needs kubernetes.discovery.enabled=true (the GPU devices are mapped to the discovered engine pods)" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Where the AlertmanagerConfig goes, and so the namespace label every alert carries for it. */}}
{{- define "llm-cost-exporter.alertmanagerConfigNamespace" -}}
{{- default .Release.Namespace .Values.alertmanagerConfig.namespace }}
{{- end }}

{{/* The spot price file's ConfigMap (spotPrices), its mount in the exporter, and the CronJob's ServiceAccount. */}}
{{- define "llm-cost-exporter.spotPricesName" -}}
{{- printf "%s-spot-prices" (include "llm-cost-exporter.fullname" . | trunc 51 | trimSuffix "-") }}
{{- end }}

{{- define "llm-cost-exporter.spotPricesMountPath" -}}
/etc/llm-cost-exporter-spot
{{- end }}
