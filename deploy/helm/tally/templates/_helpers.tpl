{{/* The release's base name: <release>-tally, or the release name when it already says tally. */}}
{{- define "tally.fullname" -}}
{{- if contains "tally" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-tally" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tally.labels" -}}
app.kubernetes.io/name: tally
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component (api, worker, migrate): include with (list $ "api"). */}}
{{- define "tally.selectorLabels" -}}
app.kubernetes.io/name: tally
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "tally.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The settings every process reads, none of them secret. */}}
{{- define "tally.commonEnv" -}}
- name: TALLY_ENV
  value: {{ .Values.config.env | quote }}
- name: LOG_LEVEL
  value: {{ .Values.config.logLevel | quote }}
- name: LOG_FORMAT
  value: {{ .Values.config.logFormat | quote }}
- name: S3_ENDPOINT
  value: {{ .Values.config.s3.endpoint | quote }}
- name: S3_BUCKET
  value: {{ .Values.config.s3.bucket | quote }}
- name: S3_REGION
  value: {{ .Values.config.s3.region | quote }}
- name: S3_USE_TLS
  value: {{ .Values.config.s3.useTLS | quote }}
{{- with .Values.config.s3.sse }}
- name: S3_SSE
  value: {{ . | quote }}
{{- end }}
{{- with .Values.config.s3.sseKMSKeyID }}
- name: S3_SSE_KMS_KEY_ID
  value: {{ . | quote }}
{{- end }}
{{- range $k, $v := .Values.config.extraEnv }}
- name: {{ $k }}
  value: {{ $v | quote }}
{{- end }}
{{- end -}}

{{/* <VAR>_FILE variables for the secret keys a component reads: include with (list $ "VAR=key" ...). */}}
{{- define "tally.secretFileEnv" -}}
{{- $root := index . 0 -}}
{{- range $pair := rest . }}
{{- $kv := splitList "=" $pair }}
- name: {{ index $kv 0 }}_FILE
  value: {{ printf "%s/%s" $root.Values.secrets.mountPath (index $root.Values.secrets.keys (index $kv 1)) | quote }}
{{- end }}
{{- end -}}

{{/* The Secret volume holding only the keys a component reads: include with (list $ "key" ...). */}}
{{- define "tally.secretVolume" -}}
{{- $root := index . 0 -}}
- name: secrets
  secret:
    secretName: {{ $root.Values.secrets.existingSecret }}
    defaultMode: 0440
    items:
{{- range $key := rest . }}
      - key: {{ index $root.Values.secrets.keys $key }}
        path: {{ index $root.Values.secrets.keys $key }}
{{- end }}
{{- end -}}

{{- define "tally.secretMount" -}}
- name: secrets
  mountPath: {{ .Values.secrets.mountPath }}
  readOnly: true
{{- end -}}

{{/* The S3 key pairs of the Secret when config.s3.credentials is static, none for the AWS chain. */}}
{{- define "tally.s3SecretEnv" -}}
{{- if eq .Values.config.s3.credentials "static" -}}
S3_ACCESS_KEY_ID=s3AccessKeyID S3_SECRET_ACCESS_KEY=s3SecretAccessKey
{{- else if ne .Values.config.s3.credentials "chain" -}}
{{- fail "config.s3.credentials must be static or chain" -}}
{{- end -}}
{{- end -}}

{{/* The pod's service account: serviceAccountName when set (e.g. for IRSA), and no API token. */}}
{{- define "tally.serviceAccount" -}}
{{- with .Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
automountServiceAccountToken: false
{{- end -}}
