package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/portreeve/portreeve/test/controlplane"
	"github.com/portreeve/portreeve/test/harness"
)

// serviceMonitorCRD is the ServiceMonitor CRD of prometheus-operator
// (monitoring.coreos.com/v1, as published in its
// example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml),
// cut down to the fields the chart renders, with their published types,
// patterns and enums. Anything else is an unknown field, which the strict
// server-side validation below refuses.
const serviceMonitorCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names:
    kind: ServiceMonitor
    listKind: ServiceMonitorList
    plural: servicemonitors
    singular: servicemonitor
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        required: [spec]
        properties:
          apiVersion: {type: string}
          kind: {type: string}
          metadata: {type: object}
          spec:
            type: object
            required: [endpoints, selector]
            properties:
              endpoints:
                type: array
                items:
                  type: object
                  properties:
                    port: {type: string}
                    path: {type: string}
                    scheme: {type: string, enum: [http, https]}
                    interval:
                      type: string
                      pattern: ^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$
                    scrapeTimeout:
                      type: string
                      pattern: ^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$
                    relabelings: &relabelings
                      type: array
                      items:
                        type: object
                        properties:
                          action:
                            type: string
                            default: replace
                            enum: [replace, Replace, keep, Keep, drop, Drop, hashmod, HashMod, labelmap, LabelMap,
                              labeldrop, LabelDrop, labelkeep, LabelKeep, lowercase, Lowercase, uppercase, Uppercase,
                              keepequal, KeepEqual, dropequal, DropEqual]
                          modulus: {type: integer, format: int64}
                          regex: {type: string}
                          replacement: {type: string}
                          separator: {type: string}
                          sourceLabels:
                            type: array
                            items: {type: string, pattern: '^[a-zA-Z_][a-zA-Z0-9_]*$'}
                          targetLabel: {type: string}
                    metricRelabelings: *relabelings
              namespaceSelector:
                type: object
                properties:
                  any: {type: boolean}
                  matchNames: {type: array, items: {type: string}}
              selector:
                type: object
                x-kubernetes-map-type: atomic
                properties:
                  matchExpressions:
                    type: array
                    items:
                      type: object
                      required: [key, operator]
                      properties:
                        key: {type: string}
                        operator: {type: string}
                        values: {type: array, items: {type: string}}
                  matchLabels:
                    type: object
                    additionalProperties: {type: string}
`

// TestChartOptionsOnTheAPIServer: with every operator option on, the whole
// render passes the real apiserver's validation, strict (an unknown or
// misplaced field is an error): the NetworkPolicy, the Deployment on the
// host network with its topology spread and ports, the helm test Pod, the
// dashboard ConfigMap, the ClusterRole with the PolicyReport rule, and the
// ServiceMonitor against its CRD. Server-side
// dry runs, so nothing is stored. Broken copies of the ServiceMonitor and the
// NetworkPolicy are refused, so the validation has teeth. Then the helm test's
// own command line, pointed at a real portreeve serve behind this apiserver,
// passes.
func TestChartOptionsOnTheAPIServer(t *testing.T) {
	cp := controlplane.StartForTest(t, controlplane.Options{})
	ctx := t.Context()
	const ns = "portreeve-options"
	for _, n := range []string{ns, "default", "kube-system", harness.Namespace} {
		if err := cp.EnsureNamespace(ctx, n, nil); err != nil {
			t.Fatal(err)
		}
	}
	kubectl := func(stdin string, args ...string) (string, string, error) {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		return cp.KubectlStdin(ctx, strings.NewReader(stdin), args...)
	}
	if _, stderr, err := kubectl(serviceMonitorCRD, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply the ServiceMonitor CRD: %v\n%s", err, stderr)
	}
	if _, stderr, err := kubectl("", "wait", "--for=condition=Established", "--timeout=60s", "crd/servicemonitors.monitoring.coreos.com"); err != nil {
		t.Fatalf("the ServiceMonitor CRD is not established: %v\n%s", err, stderr)
	}

	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	render := func(t *testing.T, extra ...string) string {
		t.Helper()
		args := append([]string{"template", "portreeve", filepath.Join(root, "charts", "portreeve"), "--namespace", ns, "--kube-version", "1.37.2",
			"--set", "metrics.serviceMonitor.enabled=true",
			"--set", "metrics.serviceMonitor.interval=30s", "--set", "metrics.serviceMonitor.scrapeTimeout=10s",
			"--set", "metrics.serviceMonitor.labels.release=kube-prometheus-stack",
			"--set-json", `metrics.serviceMonitor.metricRelabelings=[{"action":"drop","sourceLabels":["__name__"],"regex":"go_.*"}]`,
			"--set-json", `metrics.serviceMonitor.relabelings=[{"targetLabel":"cluster","replacement":"e2e"}]`,
			"--set", "networkPolicy.enabled=true",
			"--set", "networkPolicy.webhook.cidrs={10.0.0.0/24,fd00::/64}",
			"--set", "networkPolicy.metrics.namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring",
			"--set", "networkPolicy.metrics.podSelector.matchLabels.app\\.kubernetes\\.io/name=prometheus",
			"--set", "networkPolicy.metrics.cidrs={192.0.2.10/32}",
			"--set", "hostNetwork=true", "--set", "ports.webhook=10443", "--set", "ports.metrics=10080", "--set", "ports.health=10081",
			"--set", "dashboard.enabled=true", "--set", "dashboard.annotations.grafana_folder=Portreeve",
			"--set", "configCheck.enabled=false", "--set", "audit.policyReports.enabled=true"}, extra...)
		out, stderr, err := cp.Helm(ctx, args...)
		if err != nil {
			t.Fatalf("helm template: %v\n%s", err, stderr)
		}
		return out
	}
	dryRun := func(manifest string) (string, error) {
		out, stderr, err := kubectl(manifest, "apply", "--dry-run=server", "--validate=strict", "-n", ns, "-f", "-")
		return out + stderr, err
	}

	manifest := render(t)
	t.Run("every object passes", func(t *testing.T) {
		out, err := dryRun(manifest)
		if err != nil {
			t.Fatalf("server-side dry run: %v\n%s", err, out)
		}
		for _, want := range []string{
			"servicemonitor.monitoring.coreos.com/portreeve created (server dry run)",
			"networkpolicy.networking.k8s.io/portreeve created (server dry run)",
			"deployment.apps/portreeve created (server dry run)",
			"pod/portreeve-test created (server dry run)",
			"configmap/portreeve-dashboard created (server dry run)",
			"clusterrole.rbac.authorization.k8s.io/portreeve created (server dry run)",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("kubectl did not print %q:\n%s", want, out)
			}
		}
	})

	only := func(t *testing.T, template string) string {
		t.Helper()
		return render(t, "--show-only", template)
	}
	t.Run("the validation has teeth", func(t *testing.T) {
		sm := only(t, "templates/servicemonitor.yaml")
		np := only(t, "templates/networkpolicy.yaml")
		for name, broken := range map[string]string{
			"a ServiceMonitor interval that is no duration": strings.Replace(sm, "interval: 30s", "interval: 30 seconds", 1),
			"a ServiceMonitor field the CRD does not have":  strings.Replace(sm, "path: /metrics", "path: /metrics\n      prot: metrics", 1),
			"a ServiceMonitor without a selector":           regexp.MustCompile(`(?m)^  selector:\n(    .*\n)+`).ReplaceAllString(sm, ""),
			"a NetworkPolicy CIDR that is none":             strings.Replace(np, `cidr: "10.0.0.0/24"`, `cidr: "10.0.0.0/33"`, 1),
			"a NetworkPolicy port that is none":             strings.Replace(np, "port: 10443", "port: 70000", 1),
		} {
			if broken == sm || broken == np {
				t.Fatalf("%s: the render changed, the replacement matched nothing", name)
			}
			if out, err := dryRun(broken); err == nil {
				t.Errorf("%s: accepted\n%s", name, out)
			} else {
				t.Logf("%s: %s", name, strings.TrimSpace(out))
			}
		}
	})

	t.Run("the helm test's command line passes against a real portreeve serve", func(t *testing.T) {
		var pod corev1.Pod
		if err := yaml.UnmarshalStrict([]byte(only(t, "templates/tests/probe.yaml")), &pod); err != nil {
			t.Fatal(err)
		}
		p := harness.StartForTest(t, cp, harness.Options{})
		caFile := filepath.Join(t.TempDir(), "ca.crt")
		if err := os.WriteFile(caFile, p.CAPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		// The Pod's arguments, but the Service's address and the mounted CA, which only exist in a cluster.
		var args []string
		for _, a := range pod.Spec.Containers[0].Args {
			switch {
			case strings.HasPrefix(a, "--url="):
				a = "--url=" + p.URL
			case strings.HasPrefix(a, "--ca-file="):
				a = "--ca-file=" + caFile
			case strings.HasPrefix(a, "--address="):
				a = "--address=127.0.0.1"
			}
			args = append(args, a)
		}
		bin, err := harness.Binary("")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("portreeve %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("portreeve %s:\n%s", strings.Join(args, " "), out)
		// harness serves enforcing, with the built-in rules: the probe Pod is denied by host-network.
		if !strings.Contains(string(out), "ok  /validate: denied: host-network: ") || !strings.Contains(string(out), "ok  /mutate: ") {
			t.Errorf("portreeve %s:\n%s", strings.Join(args, " "), out)
		}
	})
}
