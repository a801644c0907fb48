{{/*
Helpers of the operator options: topology spread, ports, the ServiceMonitor, the NetworkPolicy, the
helm test and the dashboard.
*/}}

{{/*
topologySpreadConstraints of the Deployment: each constraint of the values, with a labelSelector for
the release's webhook pods added where it names none (values cannot know the release's labels).
Returns a YAML list, or nothing when there are no constraints.
*/}}
{{- define "portreeve.topologySpreadConstraints" -}}
{{- $out := list }}
{{- range .Values.topologySpreadConstraints }}
{{- $c := deepCopy . }}
{{- if not (hasKey $c "labelSelector") }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" (include "portreeve.selectorLabels" $ | fromYaml)) }}
{{- end }}
{{- $out = append $out $c }}
{{- end }}
{{- if $out }}
{{- toYaml $out }}
{{- end }}
{{- end }}

{{/*
Labels of the helm test Pod. Deliberately without app.kubernetes.io/name: the Service, the
PodDisruptionBudget and the NetworkPolicy select the webhook pods by name and instance, and must not
select the test Pod.
*/}}
{{- define "portreeve.testLabels" -}}
helm.sh/chart: {{ include "portreeve.chart" . }}
{{ include "portreeve.testSelectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: portreeve
{{- end }}

{{- define "portreeve.testSelectorLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
{{- end }}

{{/*
Whether the helm test Pod is rendered: it probes the Service, so not in URL mode.
*/}}
{{- define "portreeve.testEnabled" -}}
{{- if and .Values.tests.enabled (not .Values.webhook.url) }}true{{ end }}
{{- end }}

{{/*
Whether the Service exposes the metrics port: asked for, or needed by the ServiceMonitor.
*/}}
{{- define "portreeve.metricsServiceEnabled" -}}
{{- if or .Values.metrics.service.enabled .Values.metrics.serviceMonitor.enabled }}true{{ end }}
{{- end }}

{{/*
The peers the NetworkPolicy admits to the metrics port, as a YAML list (nothing when none):
one peer of networkPolicy.metrics.namespaceSelector and podSelector together (both must match), and
one ipBlock per networkPolicy.metrics.cidrs.
*/}}
{{- define "portreeve.metricsPeers" -}}
{{- $m := .Values.networkPolicy.metrics }}
{{- $peers := list }}
{{- if or $m.namespaceSelector $m.podSelector }}
{{- $peer := dict }}
{{- with $m.namespaceSelector }}{{ $_ := set $peer "namespaceSelector" . }}{{ end }}
{{- with $m.podSelector }}{{ $_ := set $peer "podSelector" . }}{{ end }}
{{- $peers = append $peers $peer }}
{{- end }}
{{- range $m.cidrs }}
{{- $peers = append $peers (dict "ipBlock" (dict "cidr" .)) }}
{{- end }}
{{- if $peers }}
{{- toYaml $peers }}
{{- end }}
{{- end }}

{{/*
Checks of values that the schema cannot express. Included by templates/checks.yaml, renders nothing.
*/}}
{{- define "portreeve.checks" -}}
{{- $p := .Values.ports }}
{{- if or (eq (int $p.webhook) (int $p.metrics)) (eq (int $p.webhook) (int $p.health)) (eq (int $p.metrics) (int $p.health)) }}
{{- fail (printf "ports.webhook (%v), ports.metrics (%v) and ports.health (%v) must differ" $p.webhook $p.metrics $p.health) }}
{{- end }}
{{- if and .Values.networkPolicy.enabled .Values.metrics.serviceMonitor.enabled (not (include "portreeve.metricsPeers" .)) }}
{{- fail "networkPolicy.enabled with metrics.serviceMonitor.enabled: name the scrapers in networkPolicy.metrics (namespaceSelector, podSelector or cidrs), or the NetworkPolicy shuts Prometheus out of the metrics port" }}
{{- end }}
{{- end }}
