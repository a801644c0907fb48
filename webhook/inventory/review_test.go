package inventory

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/review"
)

const reviewConfig = `
grants:
  - {name: team-a, namespaces: [team-a], hostPorts: ["9100-9199"], nodePorts: ["30100-30199"]}
  - {name: team-b, namespaces: [team-b], hostPorts: ["9100-9199"], nodePorts: ["30100-30199"]}
`

func newReviewer(t testing.TB, inv *Inventory, cfgYAML string) *review.Reviewer {
	t.Helper()
	e, err := policies.New(t.Context(), policies.Options{Config: config(t, cfgYAML)})
	if err != nil {
		t.Fatal(err)
	}
	r := review.NewReviewer(e)
	r.UseFacts(inv)
	return r
}

func reviewRequest(t testing.TB, kind policies.GroupVersionKind, ns, obj string) *review.Request {
	t.Helper()
	raw, err := yaml.YAMLToJSON([]byte(obj))
	if err != nil {
		t.Fatal(err)
	}
	return &review.Request{Operation: "CREATE", Kind: kind, Namespace: ns, Object: raw,
		User: policies.User{Username: "alice"}}
}

// TestConcurrentRequestsForOnePort: of many concurrent requests for the same
// hostPort against one Portreeve, exactly one is admitted; the others see its
// pending claim before any informer does.
func TestConcurrentRequestsForOnePort(t *testing.T) {
	now := testNow
	inv := newTestInventory(&now)
	r := newReviewer(t, inv, reviewConfig)
	const n = 8
	var wg sync.WaitGroup
	allowed := make(chan string, n)
	denied := make(chan string, n)
	for i := range n {
		wg.Go(func() {
			obj := strings.Replace(hostPortPod(""), "name: new", fmt.Sprintf("name: p%d", i), 1)
			d, err := r.Validate(t.Context(), reviewRequest(t, podKind, []string{"team-a", "team-b"}[i%2], obj))
			if err != nil {
				t.Error(err)
				return
			}
			if d.Allowed() {
				allowed <- fmt.Sprint(i)
				return
			}
			denied <- d.Violations[0].String()
		})
	}
	wg.Wait()
	close(allowed)
	close(denied)
	if len(allowed) != 1 {
		t.Fatalf("%d of %d concurrent requests admitted, want 1", len(allowed), n)
	}
	for msg := range denied {
		if !strings.Contains(msg, "host-port-conflicts: hostPort 9100/TCP is already held by") || !strings.Contains(msg, "admitted moments ago") {
			t.Errorf("denial: %s", msg)
		}
	}
}

func TestDryRunAndDeniedRequestsClaimNothing(t *testing.T) {
	now := testNow
	inv := newTestInventory(&now)
	r := newReviewer(t, inv, reviewConfig)
	dry := reviewRequest(t, podKind, "team-a", hostPortPod(""))
	dry.DryRun = true
	if d, err := r.Validate(t.Context(), dry); err != nil || !d.Allowed() {
		t.Fatalf("dry run: %v %v", d, err)
	}
	denied := reviewRequest(t, podKind, "default", hostPortPod("")) // no grant: host-ports denies
	if d, err := r.Validate(t.Context(), denied); err != nil || d.Allowed() {
		t.Fatalf("ungranted pod admitted: %v %v", d, err)
	}
	if _, pending := inv.index.Len(); pending != 0 {
		t.Errorf("%d pending claims, want 0", pending)
	}
}

// TestRewriteMovesTakenNodePort: in rewrite mode a nodePort that team-b's
// Service holds is moved to a free port of team-a's range, recorded like any
// rewrite, and held for team-a's Service until the validating webhook decides.
func TestRewriteMovesTakenNodePort(t *testing.T) {
	now := testNow
	inv := newTestInventory(&now)
	feed(t, inv.index, nodePortService(meta("team-b", "web"), 30150), nodePortService(meta("team-a", "other"), 30100))
	r := newReviewer(t, inv, reviewConfig+"rules: {node-port-conflicts: {mode: rewrite}}\n")
	req := reviewRequest(t, serviceKind, "team-a", service("web", ", nodePort: 30150"))

	d, err := r.Validate(t.Context(), req)
	if err != nil || d.Allowed() || !strings.Contains(d.Violations[0].String(), "nodePort 30150 is already allocated to team-b/Service/web") {
		t.Fatalf("unrewritten request: %+v %v", d, err)
	}
	m, err := r.Mutate(t.Context(), req)
	if err != nil || m.Rejected != "" || m.Patched == nil {
		t.Fatalf("mutate: %+v %v", m, err)
	}
	var svc struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
		Spec struct {
			Ports []struct {
				NodePort int `json:"nodePort"`
			} `json:"ports"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(m.Patched, &svc); err != nil {
		t.Fatal(err)
	}
	if got := svc.Spec.Ports[0].NodePort; got != 30101 {
		t.Errorf("nodePort moved to %d, want 30101 (30100 is team-a/other's)", got)
	}
	if !strings.Contains(svc.Metadata.Annotations[review.RewritesAnnotation], `"rule":"node-port-conflicts"`) {
		t.Errorf("annotation: %q", svc.Metadata.Annotations)
	}
	if w := m.Warnings(); len(w) != 1 || !strings.Contains(w[0], "30150 -> 30101") {
		t.Errorf("warnings: %q", w)
	}
	if _, pending := inv.index.Len(); pending != 1 {
		t.Errorf("the chosen port is not held for the object")
	}
	// A second Service asking for a port gets another one.
	other := reviewRequest(t, serviceKind, "team-a", service("web2", ", nodePort: 30150"))
	m2, err := r.Mutate(t.Context(), other)
	if err != nil || m2.Patched == nil || !strings.Contains(string(m2.Patched), `"nodePort":30102`) {
		t.Errorf("second mutate: %s %v", m2.Patched, err)
	}
	// The patched object passes validation and its claim becomes firm.
	patched := *req
	patched.Object = m.Patched
	if d, err := r.Validate(t.Context(), &patched); err != nil || !d.Allowed() {
		t.Errorf("rewritten object refused: %+v %v", d, err)
	}
}

// TestMutatingWebhookDeniesTakenNodePort: the apiserver allocates an explicit
// nodePort before it calls validating webhooks, so in deny mode the mutating
// webhook refuses a taken one, naming its owner.
func TestMutatingWebhookDeniesTakenNodePort(t *testing.T) {
	now := testNow
	inv := newTestInventory(&now)
	feed(t, inv.index, nodePortService(meta("team-b", "web"), 30150))
	r := newReviewer(t, inv, reviewConfig)
	m, err := r.Mutate(t.Context(), reviewRequest(t, serviceKind, "team-a", service("web", ", nodePort: 30150")))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Denied) != 1 || m.Denied[0].Rule != "node-port-conflicts" || !strings.Contains(m.Denied[0].Message, "team-b/Service/web") {
		t.Fatalf("mutate = %+v, want a node-port-conflicts denial", m)
	}
	m, err = r.Mutate(t.Context(), reviewRequest(t, serviceKind, "team-a", service("web", ", nodePort: 30151")))
	if err != nil || len(m.Denied) != 0 {
		t.Errorf("free nodePort: %+v %v", m, err)
	}
}
