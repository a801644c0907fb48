package webhook

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/review"
)

// fixedFacts hands the same facts to every request.
type fixedFacts policies.Facts

func (f *fixedFacts) Facts(*policies.Input, *policies.Config) *policies.Facts {
	out := policies.Facts(*f)
	return &out
}

func (f *fixedFacts) Claim(*policies.Input, bool) {}

func (f *fixedFacts) Release(*policies.Input) {}

const hostPortPod = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"},"spec":{"containers":[{"name":"a","ports":[{"containerPort":9100,"hostPort":9100}]}]}}`

// TestRecordedOncePerRequest: a request counts once in the requests, once
// per rule in the decisions, and its conflicts once per finding.
func TestRecordedOncePerRequest(t *testing.T) {
	held := &fixedFacts{Ready: true, HostPortConflicts: []policies.HostPortConflict{{
		Port: 9100, Protocol: "TCP", Field: "spec.containers[0].ports[0].hostPort",
		Holders: []policies.Holder{{Namespace: "b", Kind: "DaemonSet", Name: "exporter", Claim: "hostPort 9100/TCP"}}, HolderCount: 1,
	}}}
	tests := []struct {
		name      string
		ns, obj   string
		observe   bool
		facts     *fixedFacts
		requests  []string
		decisions []string
		conflicts map[string]int
	}{
		{
			name: "denied by two rules", ns: "default", obj: hostNetworkAndPortPod,
			requests:  []string{"validating/Pod/CREATE/denied"},
			decisions: []string{"validating/Pod/CREATE/denied/host-network", "validating/Pod/CREATE/denied/host-ports"},
		},
		{
			name: "allowed", ns: "default", obj: `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"},"spec":{"containers":[{"name":"a"}]}}`,
			requests:  []string{"validating/Pod/CREATE/allowed"},
			decisions: []string{"validating/Pod/CREATE/allowed/"},
		},
		{
			name: "observing", ns: "default", obj: hostNetworkAndPortPod, observe: true,
			requests: []string{"validating/Pod/CREATE/would_deny"},
			decisions: []string{"validating/Pod/CREATE/allowed/",
				"validating/Pod/CREATE/would_deny/host-network", "validating/Pod/CREATE/would_deny/host-ports"},
		},
		{
			name: "a hostPort already held", ns: "default", obj: hostPortPod, facts: held,
			requests:  []string{"validating/Pod/CREATE/denied"},
			decisions: []string{"validating/Pod/CREATE/denied/host-port-conflicts", "validating/Pod/CREATE/denied/host-ports"},
			conflicts: map[string]int{"host-port-conflicts": 1},
		},
		{
			name: "a held hostPort, observed", ns: "default", obj: hostPortPod, facts: held, observe: true,
			requests: []string{"validating/Pod/CREATE/would_deny"},
			decisions: []string{"validating/Pod/CREATE/allowed/",
				"validating/Pod/CREATE/would_deny/host-port-conflicts", "validating/Pod/CREATE/would_deny/host-ports"},
			conflicts: map[string]int{"host-port-conflicts": 1},
		},
		{
			name: "an exempt namespace", ns: "portreeve", obj: hostNetworkAndPortPod,
			requests:  []string{"validating/Pod/CREATE/skipped"},
			decisions: []string{"validating/Pod/CREATE/skipped/"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, rec := newHandler(t, "", false)
			if tc.facts != nil {
				h.Reviewer.UseFacts(tc.facts)
			}
			if tc.observe {
				h.Reviewer.SetEnforcement(review.Observe)
			}
			h.Handle(t.Context(), request("CREATE", "", "Pod", tc.ns, tc.obj))
			slices.Sort(rec.decisions)
			if !slices.Equal(rec.requests, tc.requests) || !slices.Equal(rec.decisions, tc.decisions) {
				t.Errorf("requests %v, decisions %v\nwant %v, %v", rec.requests, rec.decisions, tc.requests, tc.decisions)
			}
			if len(rec.conflicts)+len(tc.conflicts) > 0 && !maps.Equal(rec.conflicts, tc.conflicts) {
				t.Errorf("conflicts %v, want %v", rec.conflicts, tc.conflicts)
			}
		})
	}
}

// TestPrometheusRecorder: the counters behind the Recorder.
func TestPrometheusRecorder(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	r, err := NewPrometheusRecorder(reg)
	if err != nil {
		t.Fatal(err)
	}
	r.Request("validating", "Pod", "CREATE", "denied")
	r.Decision("validating", "Pod", "CREATE", "denied", "host-network")
	r.Decision("validating", "Pod", "CREATE", "denied", "host-ports")
	r.Conflicts("host-port-conflicts", 2)
	want := `
# HELP portreeve_conflicts_total Conflicts with what the cluster holds that the conflict rules found at admission, by rule: one per finding (a hostPort, nodePort or Ingress host and path already held; a hostPort inside the NodePort range), whatever the rule's mode, and one per nodePort the mutating webhook moved off a taken one.
# TYPE portreeve_conflicts_total counter
portreeve_conflicts_total{rule="host-port-conflicts"} 2
# HELP portreeve_admission_requests_total Admission requests, each counted once, by webhook, kind, operation and the decision of the answer (allowed, denied, warned, would_deny, rewritten, unchanged, skipped, error, rewrite_rejected).
# TYPE portreeve_admission_requests_total counter
portreeve_admission_requests_total{decision="denied",kind="Pod",operation="CREATE",webhook="validating"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "portreeve_conflicts_total", "portreeve_admission_requests_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "portreeve_admission_decisions_total"); n != 2 {
		t.Errorf("%d decision series, want 2", n)
	}
}
