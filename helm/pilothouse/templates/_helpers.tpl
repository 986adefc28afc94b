{{/* Names, labels and shared pieces of the pilothouse chart. */}}

{{- define "pilothouse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name; components append -apiserver, -scheduler, ... */}}
{{- define "pilothouse.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "pilothouse.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "pilothouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pilothouse
{{- end }}

{{/* Selector labels of one component: (dict "ctx" $ "component" "apiserver") */}}
{{- define "pilothouse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pilothouse.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "pilothouse.componentLabels" -}}
{{ include "pilothouse.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "pilothouse.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "pilothouse.nodeImage" -}}
{{- printf "%s:%s" .Values.node.image.repository (default .Chart.AppVersion .Values.node.image.tag) }}
{{- end }}

{{- define "pilothouse.apiserverService" -}}
{{- printf "%s-apiserver" (include "pilothouse.fullname" .) }}
{{- end }}

{{/* The gRPC URL every other component reaches the apiserver by. */}}
{{- define "pilothouse.apiserverGRPC" -}}
{{- printf "grpc://%s.%s.svc:%d" (include "pilothouse.apiserverService" .) .Release.Namespace (int .Values.apiserver.grpcPort) }}
{{- end }}

{{/* --log-format and -v, shared by every component. */}}
{{- define "pilothouse.logArgs" -}}
- --log-format={{ .Values.logFormat }}
{{- if .Values.verbose }}
- --verbose
{{- end }}
{{- end }}
