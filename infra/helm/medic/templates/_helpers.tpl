{{- define "medic.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "medic.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "medic.labels" -}}
{{ include "medic.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
medic.io/environment: {{ .Values.environment }}
{{- end -}}

{{- define "medic.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "medic.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "medic.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Secrets the ExternalSecrets write: every MEDIC_* secret setting, as env vars. */}}
{{- define "medic.envFrom" -}}
- secretRef:
    name: {{ include "medic.fullname" . }}-app-secrets
- secretRef:
    name: {{ include "medic.fullname" . }}-database
{{- end -}}

{{- define "medic.publicUrl" -}}
{{- if .Values.publicUrl -}}{{ .Values.publicUrl }}{{- else if .Values.ingress.host -}}https://{{ .Values.ingress.host }}{{- end -}}
{{- end -}}

{{/* Environment shared by the server and the migration init container. */}}
{{- define "medic.env" -}}
{{- range $name, $value := .Values.config }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- with (include "medic.publicUrl" .) }}
- name: MEDIC_PUBLIC_URL
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "medic.securityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/*
Roles: the Deployments this release runs (values roles.mode).
  combined -> one Deployment, <fullname>: serves HTTP and gRPC and runs the background services;
  split    -> <fullname>-api (serves, MEDIC_BACKGROUND=false) and <fullname>-worker
              (MEDIC_BACKGROUND=true, no Service traffic).
The role templates below take (dict "root" $ "role" <role>).
*/}}
{{- define "medic.roleNames" -}}
{{- if eq .Values.roles.mode "split" -}}api worker{{- else -}}combined{{- end -}}
{{- end -}}

{{/* The role whose pods the Service (HTTP and gRPC) routes to. */}}
{{- define "medic.servingRole" -}}
{{- if eq .Values.roles.mode "split" -}}api{{- else -}}combined{{- end -}}
{{- end -}}

{{- define "medic.role.name" -}}
{{- $fullname := include "medic.fullname" .root -}}
{{- if eq .role "combined" -}}{{ $fullname }}{{- else -}}{{ printf "%s-%s" $fullname .role | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{/* Selector labels of a role's pods. The combined Deployment keeps the chart's original
selector (a Deployment's selector cannot change in place); api and worker add the component. */}}
{{- define "medic.role.selectorLabels" -}}
{{ include "medic.selectorLabels" .root }}
{{- if ne .role "combined" }}
app.kubernetes.io/component: {{ .role }}
{{- end }}
{{- end -}}

{{- define "medic.role.labels" -}}
{{ include "medic.labels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{/* Whether the role runs the background services (MEDIC_BACKGROUND). */}}
{{- define "medic.role.background" -}}
{{- if eq .role "api" -}}false{{- else -}}true{{- end -}}
{{- end -}}

{{/* Whether the role serves HTTP and gRPC traffic (the Service's endpoints). */}}
{{- define "medic.role.serves" -}}
{{- if eq .role "worker" -}}false{{- else -}}true{{- end -}}
{{- end -}}

{{/* A role's sizing values as YAML (read back with fromYaml): replicaCount, resources,
podDisruptionBudget, autoscaling. The worker's come from roles.worker (resources default to the
top-level ones); the serving role's from the top level. */}}
{{- define "medic.role.values" -}}
{{- $v := .root.Values -}}
{{- if eq .role "worker" -}}
{{- $w := $v.roles.worker -}}
replicaCount: {{ $w.replicaCount }}
resources:
  {{- toYaml (default $v.resources $w.resources) | nindent 2 }}
podDisruptionBudget:
  {{- toYaml $w.podDisruptionBudget | nindent 2 }}
autoscaling:
  {{- toYaml $w.autoscaling | nindent 2 }}
autoscalingKey: roles.worker.autoscaling
{{- else -}}
replicaCount: {{ $v.replicaCount }}
resources:
  {{- toYaml $v.resources | nindent 2 }}
podDisruptionBudget:
  {{- toYaml $v.podDisruptionBudget | nindent 2 }}
autoscaling:
  {{- toYaml $v.autoscaling | nindent 2 }}
autoscalingKey: autoscaling
{{- end -}}
{{- end -}}

{{/* The headless Service through which Prometheus finds the workers (split mode). */}}
{{- define "medic.workerMetricsService" -}}
{{- printf "%s-metrics" (include "medic.role.name" (dict "root" . "role" "worker")) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
