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
