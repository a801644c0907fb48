package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/portreeve/portreeve/test/harness"
)

// metricsConfig grants team-a ten node ports.
const metricsConfig = `
apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
grants:
  - name: team-a
    namespaces: [team-a]
    nodePorts: ["30100-30109"]
    expires: "2099-12-31"
`

// hostNetworkPod is denied by host-network and host-ports (the implied hostPort 9100).
const hostNetworkPod = `apiVersion: v1
kind: Pod
metadata: {name: agent}
spec:
  hostNetwork: true
  containers: [{name: agent, image: agent:1, ports: [{containerPort: 9100}]}]
`

// waitMetric polls serve's metrics until series has the value want.
func waitMetric(t *testing.T, p *harness.Portreeve, series string, want float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := metricValue(t, p.MetricsURL, series)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", series, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMetrics scrapes serve's metrics on a real apiserver: the per-grant
// gauges follow a NodePort Service as it is created and deleted, one denied
// request counts once in the requests counter (and once per rule in the
// decisions), and a conflict counts under its rule.
func TestMetrics(t *testing.T) {
	e := setup(t, metricsConfig)
	grant := func(state string) string {
		return fmt.Sprintf(`portreeve_grant_ports{grant="team-a",kind="nodePort",state=%q}`, state)
	}

	t.Run("the inventory's gauges", func(t *testing.T) {
		waitMetric(t, e.p, "portreeve_inventory_synced", 1)
		waitMetric(t, e.p, grant("granted"), 10)
		waitMetric(t, e.p, grant("used"), 0)
		waitMetric(t, e.p, grant("free"), 10)
		if at := metricValue(t, e.p.MetricsURL, `portreeve_grant_expiry_timestamp_seconds{grant="team-a"}`); at != float64(time.Date(2099, 12, 31, 23, 59, 59, 0, time.UTC).Unix()) {
			t.Errorf("expiry %v", at)
		}
	})

	t.Run("per-grant gauges move with a NodePort Service", func(t *testing.T) {
		mustAdmit(t, e.apply(t, "team-a", conflictService("web", "30100")))
		waitMetric(t, e.p, grant("used"), 1)
		waitMetric(t, e.p, grant("free"), 9)
		waitMetric(t, e.p, `portreeve_inventory_objects{kind="Service"}`, 1)
		mustAdmit(t, e.kubectl(t, "delete", "-n", "team-a", "service", "web", "--wait=true"))
		waitMetric(t, e.p, grant("used"), 0)
		waitMetric(t, e.p, grant("free"), 10)
		waitMetric(t, e.p, `portreeve_inventory_objects{kind="Service"}`, 0)
	})

	t.Run("one denied request counts once", func(t *testing.T) {
		requests := `portreeve_admission_requests_total{decision="denied",kind="Pod",operation="CREATE",webhook="validating"}`
		decision := func(rule string) string {
			return fmt.Sprintf(`portreeve_admission_decisions_total{decision="denied",kind="Pod",operation="CREATE",rule=%q,webhook="validating"}`, rule)
		}
		before := map[string]float64{}
		for _, s := range []string{requests, decision("host-network"), decision("host-ports")} {
			before[s] = metricValue(t, e.p.MetricsURL, s)
		}
		// Denied by two rules: one request, two findings.
		mustDeny(t, e.apply(t, "default", hostNetworkPod), "host-network: ", "host-ports: ")
		for s, d := range map[string]float64{requests: 1, decision("host-network"): 1, decision("host-ports"): 1} {
			if got := metricValue(t, e.p.MetricsURL, s) - before[s]; got != d {
				t.Errorf("%s went up by %v, want %v", s, got, d)
			}
		}
	})

	t.Run("a conflict counts under its rule", func(t *testing.T) {
		mustAdmit(t, e.apply(t, "team-a", conflictService("first", "30105")))
		waitMetric(t, e.p, grant("used"), 1)
		// The nodePort is taken: the mutating webhook refuses it (node-port-conflicts).
		r := e.apply(t, "team-a", conflictService("second", "30105"))
		mustDeny(t, r, "node-port-conflicts: ")
		waitMetric(t, e.p, `portreeve_conflicts_total{rule="node-port-conflicts"}`, 1)
		if n := metricValue(t, e.p.MetricsURL, `portreeve_admission_requests_total{decision="denied",kind="Service",operation="CREATE",webhook="mutating"}`); n != 1 {
			t.Errorf("the mutating webhook's denials: %v", n)
		}
	})
}
