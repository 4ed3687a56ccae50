{{/*
Names, labels and checks shared by the templates. Every name is namespaced with "modelapp." so that the
chart can be used as a subchart without clashes.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "modelapp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name: fullnameOverride, or <release>-<chart> (just <release> when it already contains the chart name). */}}
{{- define "modelapp.fullname" -}}
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

{{/* Name of the bump CronJob and its RBAC objects. */}}
{{- define "modelapp.bumpName" -}}
{{- printf "%s-bump" (include "modelapp.fullname" . | trunc 58 | trimSuffix "-") }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "modelapp.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "modelapp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelapp
{{- end }}

{{/* Selector labels of the operator pods (immutable once installed: keep them few). */}}
{{- define "modelapp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelapp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "modelapp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modelapp.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The bump CronJob's ServiceAccount name. */}}
{{- define "modelapp.bumpServiceAccountName" -}}
{{- if .Values.bump.serviceAccount.create }}
{{- default (include "modelapp.bumpName" .) .Values.bump.serviceAccount.name }}
{{- else }}
{{- required "bump.serviceAccount.name is required when bump.serviceAccount.create is false" .Values.bump.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* An image reference from {repository, tag, digest}: the digest wins, the tag defaults to appVersion. */}}
{{- define "modelapp.imageRef" -}}
{{- $image := index . 0 }}
{{- $root := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/* The operator image reference. */}}
{{- define "modelapp.operatorImage" -}}
{{- include "modelapp.imageRef" (list .Values.image .) }}
{{- end }}

{{/* The serving image reference (MODELAPP_SERVING_IMAGE). */}}
{{- define "modelapp.servingImage" -}}
{{- include "modelapp.imageRef" (list .Values.servingImage .) }}
{{- end }}

{{/* The watched namespaces as arguments: --all-namespaces, or --namespace NS for each. */}}
{{- define "modelapp.watchArgs" -}}
{{- if eq .Values.rbac.scope "cluster" }}
- --all-namespaces
{{- else }}
{{- range .Values.watchNamespaces }}
- --namespace={{ . }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Checks of combinations the schema cannot express; every template includes this, so a bad combination
fails `helm install`/`helm template` with a clear message instead of installing something half-right.
*/}}
{{- define "modelapp.validate" -}}
{{- if eq .Values.rbac.scope "namespaced" }}
{{- if not .Values.watchNamespaces }}
{{- fail "rbac.scope=namespaced needs watchNamespaces: the namespaces the operator watches" }}
{{- end }}
{{- if ne (len .Values.watchNamespaces) (len (uniq .Values.watchNamespaces)) }}
{{- fail "watchNamespaces lists a namespace twice" }}
{{- end }}
{{- else if .Values.watchNamespaces }}
{{- fail "watchNamespaces is only for rbac.scope=namespaced; rbac.scope=cluster watches every namespace" }}
{{- end }}
{{- $shardNames := list }}
{{- $defaults := 0 }}
{{- $byNamespace := 0 }}
{{- $shardNamespaces := list }}
{{- range .Values.operator.shards }}
{{- $shardNames = append $shardNames .name }}
{{- if .default }}{{ $defaults = add1 $defaults }}{{ end }}
{{- if .namespaces }}
{{- $byNamespace = add1 $byNamespace }}
{{- $shardNamespaces = concat $shardNamespaces .namespaces }}
{{- if .default }}
{{- fail (printf "operator.shards: shard %s lists namespaces and is the default: default is for label shards (ModelApps without a modelapp.io/shard label); a namespace shard handles every ModelApp of its namespaces" .name) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and $byNamespace (ne $byNamespace (len .Values.operator.shards)) }}
{{- fail "operator.shards: give every shard its namespaces (namespace shards) or none (label shards): a label shard watches every namespace and would also handle the ModelApps of a namespace shard" }}
{{- end }}
{{- if $byNamespace }}
{{- if ne .Values.rbac.scope "namespaced" }}
{{- fail "operator.shards with namespaces need rbac.scope=namespaced: watchNamespaces lists the namespaces, the shards split them" }}
{{- end }}
{{- if ne (len $shardNamespaces) (len (uniq $shardNamespaces)) }}
{{- fail "operator.shards: a namespace is listed by two shards; each namespace belongs to one shard (both would act on its ModelApps)" }}
{{- end }}
{{- range $shardNamespaces }}
{{- if not (has . $.Values.watchNamespaces) }}
{{- fail (printf "operator.shards: namespace %s is not in watchNamespaces (the operator's RBAC is granted only there)" .) }}
{{- end }}
{{- end }}
{{- range .Values.watchNamespaces }}
{{- if not (has . $shardNamespaces) }}
{{- fail (printf "watchNamespaces: %s is in no shard's namespaces: nobody would handle its ModelApps" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- if ne (len $shardNames) (len (uniq $shardNames)) }}
{{- fail "operator.shards names a shard twice: each shard needs a name of its own" }}
{{- end }}
{{- if gt $defaults 1 }}
{{- fail "operator.shards: more than one shard has default: true; only one shard may take the ModelApps without a modelapp.io/shard label" }}
{{- end }}
{{- if and .Values.operator.metrics.enabled (eq (int .Values.operator.metrics.port) (int .Values.operator.livenessPort)) }}
{{- fail "operator.metrics.port is also operator.livenessPort: give the operator's /metrics a port of its own" }}
{{- end }}
{{- end }}

{{/*
RBAC rules, written once and used by the ClusterRole (rbac.scope=cluster) or by each namespace's Role
(rbac.scope=namespaced). "Framework" rules are kopf's own needs, "Application" rules are ModelApps and
their children. docs/rbac.md says why each verb is there.
*/}}
{{- define "modelapp.rules.events" -}}
# Framework: kopf reports handler outcomes as Events on the ModelApp.
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{- define "modelapp.rules.application" -}}
# Application: reconcile ModelApps; kopf keeps its progress and diff base in annotations (patch).
- apiGroups: [modelapp.io]
  resources: [modelapps]
  verbs: [get, list, watch, patch]
# Application: conditions, observedGeneration, resolved versions, url.
- apiGroups: [modelapp.io]
  resources: [modelapps/status]
  verbs: [get, patch, update]
# Application: the serving Deployment and Service, by server-side apply (a patch that may create);
# deletion is left to the garbage collector through owner references.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch]
# Application: the Ingress of spec.ingress, also deleted when the field goes or its host is refused
# (docs/security.md, "Host names"). The Ingress controller reads the TLS Secret, never the operator.
- apiGroups: [networking.k8s.io]
  resources: [ingresses]
  verbs: [get, list, watch, create, patch, delete]
{{- if .Values.operator.checkTlsSecrets }}
# Application: whether the TLS Secret a spec.ingress names exists, asked by a dry-run create of an empty
# Secret of that name (409: it exists). Nothing is stored and no value is read: no get, list or watch.
- apiGroups: [""]
  resources: [secrets]
  verbs: [create]
{{- end }}
# Application: the PodDisruptionBudget exists only while replicas > 1, so it is also deleted.
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
# Application: the HorizontalPodAutoscaler exists only while spec.autoscaling is set, so it is also deleted.
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, delete]
{{- end }}

{{- define "modelapp.rules.bump" -}}
# Application: the bump reads ModelApps and patches their spec to the newest allowed versions.
- apiGroups: [modelapp.io]
  resources: [modelapps]
  verbs: [get, list, patch]
# Application: each patch is recorded as a core v1 Event `Bumped` on the ModelApp. `create` only: the
# bump never reads, updates or deletes Events, and makes no events.k8s.io ones.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if .Values.bump.readModelCredentials }}
# Application: to list a private model store the bump opens it with the Secret a ModelApp names in
# spec.model.credentialsSecret, as the pod's init container does. `get` only: without list or watch it
# can read a Secret only by a name it already knows, and cannot enumerate them. resourceNames narrows
# it further when bump.modelCredentialsSecretNames lists the names.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
  {{- with .Values.bump.modelCredentialsSecretNames }}
  resourceNames:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}

{{/* Name of the operator's metrics Service. */}}
{{- define "modelapp.metricsName" -}}
{{- printf "%s-metrics" (include "modelapp.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{/* interval and scrapeTimeout of a monitor's endpoint, each only when set. */}}
{{- define "modelapp.scrapeTimes" -}}
{{- with .Values.serviceMonitor.interval }}
interval: {{ . | quote }}
{{- end }}
{{- with .Values.serviceMonitor.scrapeTimeout }}
scrapeTimeout: {{ . | quote }}
{{- end }}
{{- end }}
