{{/* The image of the webhook and of the sidecar it injects. */}}
{{- define "mcpguard.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The certificate is mounted from a Secret in every mode but own-ca. */}}
{{- define "mcpguard.mounted" -}}
{{- if ne .Values.certificates.mode "own-ca" }}true{{ end }}
{{- end }}

{{/* The names the API server dials: <service>.<namespace>.svc. */}}
{{- define "mcpguard.dnsNames" -}}
mcpguard-webhook.{{ .Release.Namespace }}.svc,mcpguard-webhook.{{ .Release.Namespace }}.svc.cluster.local
{{- end }}

{{/* The namespaceSelector expression every webhook carries. */}}
{{- define "mcpguard.notExcluded" -}}
- key: kubernetes.io/metadata.name
  operator: NotIn
  values: [{{ .Release.Namespace }}{{ range .Values.excludedNamespaces }}, {{ . }}{{ end }}]
{{- end }}

{{/* Annotations that fill the webhook configurations' caBundle. */}}
{{- define "mcpguard.caBundleAnnotations" -}}
{{- if eq .Values.certificates.mode "openshift-service-ca" }}
annotations:
  service.beta.openshift.io/inject-cabundle: "true"
{{- else if eq .Values.certificates.mode "cert-manager" }}
annotations:
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/mcpguard-webhook
{{- end }}
{{- end }}

{{/* The client config of a webhook at a path. */}}
{{- define "mcpguard.clientConfig" -}}
clientConfig:
  service:
    namespace: {{ .root.Release.Namespace }}
    name: mcpguard-webhook
    path: {{ .path }}
    port: 443
{{- end }}
