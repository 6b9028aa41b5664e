{{- define "rarl-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "rarl-operator.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "rarl-operator.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rarl-operator.serviceAccountName" -}}
{{- default (include "rarl-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The operator's rules: only the verbs it uses. */}}
{{- define "rarl-operator.rules" -}}
- apiGroups: [rarl.dev]
  resources: [rarljobs]
  verbs: [get, list, watch, delete, patch]   # patch: the operator's record annotation (status the trainer cannot write)
- apiGroups: [rarl.dev]
  resources: [rarljobs/status]
  verbs: [get, patch]
- apiGroups: [rarl.dev]
  resources: [rarljobs/finalizers]
  verbs: [update]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete]   # get: who owns an existing object of a child's name
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [configmaps, services, serviceaccounts]
  verbs: [create, get]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [create, get]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [create, get]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create]
{{- end -}}
