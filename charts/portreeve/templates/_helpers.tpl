{{/*
Chart name.
*/}}
{{- define "portreeve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: used for the Service, Deployment, both webhook configurations and RBAC objects.
Kept to 63 characters because it is a Service name (DNS-1035 label).
*/}}
{{- define "portreeve.fullname" -}}
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

{{/*
chart label value.
*/}}
{{- define "portreeve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "portreeve.labels" -}}
helm.sh/chart: {{ include "portreeve.chart" . }}
{{ include "portreeve.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: portreeve
{{- end }}

{{/*
Selector labels (immutable on the Deployment: never add to them).
*/}}
{{- define "portreeve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "portreeve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
ServiceAccount name.
*/}}
{{- define "portreeve.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "portreeve.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Derived names.
*/}}
{{- define "portreeve.certSecretName" -}}
{{- printf "%s-cert" (include "portreeve.fullname" .) }}
{{- end }}

{{- define "portreeve.configMapName" -}}
{{- printf "%s-config" (include "portreeve.fullname" .) }}
{{- end }}

{{- define "portreeve.policiesConfigMapName" -}}
{{- printf "%s-policies" (include "portreeve.fullname" .) }}
{{- end }}

{{- define "portreeve.servingCertificateName" -}}
{{- printf "%s-serving" (include "portreeve.fullname" .) }}
{{- end }}

{{/*
Image reference.
*/}}
{{- define "portreeve.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The policy configuration file (config.yaml). Rendered in one place so that the ConfigMap and the
optional checksum annotation always agree.
*/}}
{{- define "portreeve.configFile" -}}
{{- if .Values.configFile }}
{{- $file := fromYaml .Values.configFile }}
{{- if hasKey $file "Error" }}{{ fail (printf "configFile is not YAML: %s" (get $file "Error")) }}{{ end }}
{{- $rules := merge (dict) ($file.rules | default dict) (.Values.customRules | default dict) }}
{{- if $rules }}{{ $_ := set $file "rules" $rules }}{{ end }}
{{ toYaml $file }}
{{- else }}
apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
{{- $rules := merge (dict) (.Values.config.rules | default dict) (.Values.customRules | default dict) }}
{{ toYaml (dict "rules" $rules "grants" (.Values.config.grants | default list) "exemptions" (.Values.config.exemptions | default list)) }}
{{- end }}
{{- end }}

{{/*
The rule modes in effect: the rules of `configFile` or `config`, with `customRules` merged in, as JSON
(include returns a string). Read by "portreeve.mutatedFamilies".
*/}}
{{- define "portreeve.ruleModes" -}}
{{- $rules := dict }}
{{- if .Values.configFile }}
{{- $rules = (fromYaml .Values.configFile).rules | default dict }}
{{- else }}
{{- $rules = .Values.config.rules | default dict }}
{{- end }}
{{- toJson (merge (dict) $rules (.Values.customRules | default dict)) }}
{{- end }}

{{/*
The resource families the mutating webhook is registered for, as a comma-separated list. With
`webhook.mutating.scope: all`, every family it can act on (pods and pod templates, services). With
`auto` (the default), only those a rule can change: pods when a rule that judges pods (or any custom
rule) is in mode `rewrite`, services when a Service rule (or any custom rule) rewrites or
`node-port-conflicts` is on (the apiserver allocates an explicit nodePort before the validating webhooks
run, so that rule refuses at the mutating stage). Every other pod then costs the apiserver one call,
not two. A mode switched to `rewrite` by editing the ConfigMap by hand, outside these values, needs
`scope: all` to take effect; until then the validating webhook denies what it would have rewritten.
*/}}
{{- define "portreeve.mutatedFamilies" -}}
{{- if eq .Values.webhook.mutating.scope "all" }}pods,services{{ else }}
{{- $podRules := list "host-network" "host-ports" "host-port-conflicts" }}
{{- $serviceRules := list "node-ports" "load-balancer" "external-ips" "node-port-conflicts" }}
{{- $ingressRules := list "ingress-hosts" "ingress-host-conflicts" }}
{{- $pods := false }}{{- $services := false }}
{{- range $id, $rule := (include "portreeve.ruleModes" . | fromJson) }}
{{- $mode := "" }}{{ if kindIs "map" $rule }}{{ $mode = toString (get $rule "mode") }}{{ end }}
{{- /* YAML 1.1 reads an unquoted `off` as false. */}}
{{- if eq $mode "false" }}{{ $mode = "off" }}{{ end }}
{{- $custom := not (or (has $id $podRules) (has $id $serviceRules) (has $id $ingressRules)) }}
{{- if eq $mode "rewrite" }}
{{- if or $custom (has $id $podRules) }}{{ $pods = true }}{{ end }}
{{- if or $custom (has $id $serviceRules) }}{{ $services = true }}{{ end }}
{{- end }}
{{- if and (eq $id "node-port-conflicts") (ne $mode "off") }}{{ $services = true }}{{ end }}
{{- end }}
{{- /* node-port-conflicts is on unless a mode says off. */}}
{{- if not (hasKey (include "portreeve.ruleModes" . | fromJson) "node-port-conflicts") }}{{ $services = true }}{{ end }}
{{- join "," (compact (list (ternary "pods" "" $pods) (ternary "services" "" $services))) }}
{{- end }}
{{- end }}

{{/*
Whether matchConditions are rendered: always unless turned off. They are GA since Kubernetes 1.30, the
chart's minimum, and are never made to depend on .Capabilities: `helm template` without --kube-version
(Argo CD, Flux) must render what `helm install` renders.
*/}}
{{- define "portreeve.matchConditionsEnabled" -}}
{{- if .Values.webhook.matchConditions.enabled }}true{{ end }}
{{- end }}

{{/*
failurePolicy of a webhook: the explicit value, else Ignore while observing and Fail when enforcing.
Call with (dict "root" $ "value" .Values.webhook.validating.failurePolicy).
*/}}
{{- define "portreeve.failurePolicy" -}}
{{- if .value }}{{ .value }}{{ else if eq .root.Values.enforcement "enforce" }}Fail{{ else }}Ignore{{ end }}
{{- end }}

{{/*
CEL: true when the pod spec at the given path asks for host exposure (hostNetwork, or a hostPort on any
container, init container or ephemeral container). Written once, used for pods and every pod template.
Usage: include "portreeve.podSpecExposureCEL" "object.spec.template.spec"
*/}}
{{- define "portreeve.podSpecExposureCEL" -}}
{{- $s := . -}}
{{ $s }}.?hostNetwork.orValue(false) || [{{ $s }}.containers, {{ $s }}.?initContainers.orValue([]), {{ $s }}.?ephemeralContainers.orValue([])].exists(l, l.exists(c, c.?ports.orValue([]).exists(p, p.?hostPort.orValue(0) != 0)))
{{- end }}

{{/*
CEL: true when a Service asks for exposure beyond the cluster network.
*/}}
{{- define "portreeve.serviceExposureCEL" -}}
object.spec.?type.orValue('ClusterIP') != 'ClusterIP' || size(object.spec.?externalIPs.orValue([])) > 0
{{- end }}

{{/*
namespaceSelector shared by every webhook entry. The release namespace and kube-system are always
excluded so that Portreeve can never block its own pods or the control plane's.
*/}}
{{- define "portreeve.namespaceSelector" -}}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values:
        {{- $excluded := concat (list .Release.Namespace "kube-system") (.Values.webhook.excludeNamespaces | default list) | uniq }}
        {{- range $excluded }}
        - {{ . | quote }}
        {{- end }}
    {{- if .Values.webhook.ignoreLabel.enabled }}
    - key: {{ .Values.webhook.ignoreLabel.key | quote }}
      operator: DoesNotExist
    {{- end }}
{{- end }}

{{/*
clientConfig for a webhook path (/validate or /mutate). Call with (dict "root" $ "path" "/validate").
*/}}
{{- define "portreeve.clientConfig" -}}
{{- $root := .root -}}
clientConfig:
  {{- if $root.Values.webhook.url }}
  url: {{ printf "%s%s" (trimSuffix "/" $root.Values.webhook.url) .path | quote }}
  {{- else }}
  service:
    namespace: {{ $root.Release.Namespace | quote }}
    name: {{ include "portreeve.fullname" $root | quote }}
    path: {{ .path | quote }}
    port: 443
  {{- end }}
  {{- /* Only in URL mode: with the Service, the rotator or cert-manager's cainjector owns caBundle. */}}
  {{- if and $root.Values.webhook.url $root.Values.webhook.caBundle (ne $root.Values.certs.mode "cert-manager") }}
  caBundle: {{ $root.Values.webhook.caBundle | quote }}
  {{- end }}
{{- end }}

{{/*
The webhook entries, one per resource family so that each gets its own matchConditions.
Call with (dict "root" $ "suffix" "portreeve.io" "path" "/validate" "ingresses" true) ("ingresses": the
families nothing rewrites, Ingresses and the Gateway API, validating only), and "only" (a
list of "pods", "services") to render only the entries of those families. Returns a YAML list.
*/}}
{{- define "portreeve.webhookEntries" -}}
{{- $root := .root -}}
{{- $mc := include "portreeve.matchConditionsEnabled" $root -}}
{{- $families := list
  (dict "name" "pods" "rules" (list (dict "apiGroups" (list "") "resources" (list "pods" "pods/ephemeralcontainers"))) "cel" (include "portreeve.podSpecExposureCEL" "object.spec"))
  (dict "name" "workloads" "rules" (list
      (dict "apiGroups" (list "apps") "resources" (list "deployments" "daemonsets" "statefulsets" "replicasets"))
      (dict "apiGroups" (list "") "resources" (list "replicationcontrollers"))
      (dict "apiGroups" (list "batch") "resources" (list "jobs")))
    "cel" (include "portreeve.podSpecExposureCEL" "object.spec.template.spec"))
  (dict "name" "cronjobs" "rules" (list (dict "apiGroups" (list "batch") "resources" (list "cronjobs"))) "cel" (include "portreeve.podSpecExposureCEL" "object.spec.jobTemplate.spec.template.spec"))
  (dict "name" "podtemplates" "rules" (list (dict "apiGroups" (list "") "resources" (list "podtemplates"))) "cel" (include "portreeve.podSpecExposureCEL" "object.template.spec"))
  (dict "name" "services" "rules" (list (dict "apiGroups" (list "") "resources" (list "services"))) "cel" (include "portreeve.serviceExposureCEL" $root))
-}}
{{- if .ingresses }}
{{- $families = append $families (dict "name" "ingresses" "rules" (list (dict "apiGroups" (list "networking.k8s.io") "resources" (list "ingresses"))) "cel" "") }}
{{- /* Gateway API: the apiserver ignores these rules until the CRDs are installed. */}}
{{- $families = append $families (dict "name" "gateways" "rules" (list (dict "apiGroups" (list "gateway.networking.k8s.io") "resources" (list "gateways" "listenersets" "httproutes" "grpcroutes" "tlsroutes"))) "cel" "") }}
{{- end }}
{{- range $families }}
{{- if or (not $.only) (has (ternary "services" "pods" (eq .name "services")) $.only) }}
- name: {{ printf "%s.%s" .name $.suffix | quote }}
  admissionReviewVersions: ["v1"]
  sideEffects: None
  failurePolicy: {{ $.failurePolicy }}
  timeoutSeconds: {{ $.timeoutSeconds }}
  matchPolicy: Equivalent
  {{- if $.reinvocationPolicy }}
  reinvocationPolicy: {{ $.reinvocationPolicy }}
  {{- end }}
  {{- include "portreeve.clientConfig" (dict "root" $root "path" $.path) | nindent 2 }}
  {{- include "portreeve.namespaceSelector" $root | nindent 2 }}
  rules:
    {{- range .rules }}
    - apiGroups: {{ toJson .apiGroups }}
      apiVersions: ["v1"]
      operations: ["CREATE", "UPDATE"]
      resources: {{ toJson .resources }}
      scope: Namespaced
    {{- end }}
  {{- if and $mc .cel }}
  matchConditions:
    - name: has-exposure
      expression: {{ .cel | quote }}
  {{- end }}
{{- end }}
{{- end }}
{{- end }}
