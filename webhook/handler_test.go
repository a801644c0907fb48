package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/review"
)

type fakeRecorder struct {
	mu        sync.Mutex
	requests  []string
	decisions []string
	conflicts map[string]int
}

func (f *fakeRecorder) Request(webhook, kind, op, decision string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, strings.Join([]string{webhook, kind, op, decision}, "/"))
}

func (f *fakeRecorder) Conflicts(rule string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conflicts == nil {
		f.conflicts = map[string]int{}
	}
	f.conflicts[rule] += n
}

func (f *fakeRecorder) Decision(webhook, kind, op, decision, rule string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.decisions = append(f.decisions, strings.Join([]string{webhook, kind, op, decision, rule}, "/"))
}

func (f *fakeRecorder) Observe(string, time.Duration) {}

type namespaces map[string]map[string]string

func (n namespaces) NamespaceLabels(_ context.Context, name string) (map[string]string, error) {
	l, ok := n[name]
	if !ok {
		return nil, errors.New("namespace not found")
	}
	return l, nil
}

const modesConfig = `
apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
rules:
  host-network: {mode: warn}
  host-ports: {mode: dryrun}
  load-balancer: {mode: rewrite}
`

func newHandler(t testing.TB, configYAML string, mutating bool) (*Handler, *fakeRecorder) {
	t.Helper()
	var cfg *policies.Config
	if configYAML != "" {
		var err error
		if cfg, err = policies.ParseConfig([]byte(configYAML), nil); err != nil {
			t.Fatal(err)
		}
	}
	e, err := policies.New(t.Context(), policies.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	rec := &fakeRecorder{}
	return &Handler{
		Mutating:         mutating,
		Reviewer:         review.NewReviewer(e),
		Namespaces:       namespaces{"default": {}, "portreeve": {}},
		Recorder:         rec,
		ExemptNamespaces: []string{"kube-system", "portreeve"},
	}, rec
}

func request(op admissionv1.Operation, group, kind, ns, object string) admission.Request {
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "1",
		Kind:      metav1.GroupVersionKind{Group: group, Version: "v1", Kind: kind},
		Operation: op,
		Namespace: ns,
		Name:      "x",
		UserInfo:  authenticationv1.UserInfo{Username: "alice"},
		Object:    runtime.RawExtension{Raw: []byte(object)},
	}}
}

const (
	hostNetworkAndPortPod = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"},"spec":{"hostNetwork":true,"containers":[{"name":"a","ports":[{"containerPort":8086}]}]}}`
	loadBalancer          = `{"apiVersion":"v1","kind":"Service","metadata":{"name":"x"},"spec":{"type":"LoadBalancer","ports":[{"port":80}]}}`
)

func TestValidateDeniesWithSortedMessages(t *testing.T) {
	h, rec := newHandler(t, "", false)
	resp := h.Handle(t.Context(), request("CREATE", "", "Pod", "default", hostNetworkAndPortPod))
	if resp.Allowed || resp.Result.Code != http.StatusForbidden {
		t.Fatalf("want a 403 denial, got %+v", resp.Result)
	}
	msg := resp.Result.Message
	hn, hp := strings.Index(msg, "host-network: "), strings.Index(msg, "host-ports: ")
	if hn != 0 || hp < 0 || !strings.Contains(msg, "(spec.hostNetwork)") || !strings.Contains(msg, "(spec.containers[0].ports[0].hostPort)") {
		t.Fatalf("message not sorted by rule or missing fields: %q", msg)
	}
	if !slices.Contains(rec.decisions, "validating/Pod/CREATE/denied/host-network") {
		t.Fatalf("decision not recorded: %v", rec.decisions)
	}
}

func TestValidateModes(t *testing.T) {
	h, rec := newHandler(t, modesConfig, false)
	resp := h.Handle(t.Context(), request("CREATE", "", "Pod", "default", hostNetworkAndPortPod))
	if !resp.Allowed {
		t.Fatalf("warn and dryrun must admit: %+v", resp.Result)
	}
	if len(resp.Warnings) != 1 || !strings.HasPrefix(resp.Warnings[0], "host-network: ") {
		t.Fatalf("want one host-network warning, got %q", resp.Warnings)
	}
	if !slices.Contains(rec.decisions, "validating/Pod/CREATE/dryrun/host-ports") {
		t.Fatalf("dryrun finding not recorded: %v", rec.decisions)
	}
	// A rule in rewrite mode denies what reaches validation unrewritten.
	resp = h.Handle(t.Context(), request("CREATE", "", "Service", "default", loadBalancer))
	if resp.Allowed || !strings.Contains(resp.Result.Message, "load-balancer: ") {
		t.Fatalf("unrewritten LoadBalancer admitted: %+v", resp.Result)
	}
}

func TestMutateReturnsPatchAndWarnings(t *testing.T) {
	h, rec := newHandler(t, modesConfig, true)
	resp := h.Handle(t.Context(), request("CREATE", "", "Service", "default", loadBalancer))
	if !resp.Allowed || len(resp.Patches) == 0 {
		t.Fatalf("want an allowed patch response, got %+v", resp)
	}
	var sawType, sawAnnotation bool
	for _, p := range resp.Patches {
		sawType = sawType || (p.Path == "/spec/type" && p.Value == "ClusterIP")
		sawAnnotation = sawAnnotation || strings.HasPrefix(p.Path, "/metadata/annotations")
	}
	if !sawType || !sawAnnotation {
		t.Fatalf("patch lacks the type change or the annotation: %+v", resp.Patches)
	}
	if len(resp.Warnings) == 0 || !strings.Contains(resp.Warnings[0], "portreeve rewrote /spec/type") {
		t.Fatalf("warnings = %q", resp.Warnings)
	}
	if !slices.Contains(rec.decisions, "mutating/Service/CREATE/rewritten/load-balancer") {
		t.Fatalf("rewrite not recorded: %v", rec.decisions)
	}
	// Nothing to rewrite: allowed without a patch.
	resp = h.Handle(t.Context(), request("CREATE", "", "Service", "default", `{"spec":{"ports":[{"port":80}]}}`))
	if !resp.Allowed || len(resp.Patches) != 0 {
		t.Fatalf("ClusterIP Service changed: %+v", resp)
	}
}

func TestObserveAdmitsWithWarningsAndRecords(t *testing.T) {
	tests := []struct {
		name     string
		config   string
		mutating bool
		kind     string
		object   string
		warnings []string // prefixes, in order
		recorded []string
	}{
		{
			name: "deny-mode violations become warnings", kind: "Pod", object: hostNetworkAndPortPod,
			warnings: []string{
				"portreeve would deny (enforcement: observe): host-network: ",
				"portreeve would deny (enforcement: observe): host-ports: ",
			},
			recorded: []string{"validating/Pod/CREATE/allowed/", "validating/Pod/CREATE/would_deny/host-network", "validating/Pod/CREATE/would_deny/host-ports"},
		},
		{
			name: "warn and dryrun modes keep their meaning", config: modesConfig, kind: "Pod", object: hostNetworkAndPortPod,
			warnings: []string{"host-network: "},
			recorded: []string{"validating/Pod/CREATE/warned/host-network", "validating/Pod/CREATE/dryrun/host-ports"},
		},
		{
			name: "rewrite mode is named", config: modesConfig, kind: "Service", object: loadBalancer,
			warnings: []string{
				"portreeve would rewrite or deny (enforcement: observe): load-balancer: ",
				"portreeve would deny (enforcement: observe): node-ports: ",
			},
			recorded: []string{"validating/Service/CREATE/would_deny/load-balancer", "validating/Service/CREATE/would_deny/node-ports"},
		},
		{
			name: "the mutating webhook rewrites nothing", config: modesConfig, mutating: true, kind: "Service", object: loadBalancer,
			recorded: []string{"mutating/Service/CREATE/skipped/"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, rec := newHandler(t, tc.config, tc.mutating)
			h.Reviewer.SetEnforcement(review.Observe)
			resp := h.Handle(t.Context(), request("CREATE", "", tc.kind, "default", tc.object))
			if !resp.Allowed || len(resp.Patches) != 0 {
				t.Fatalf("observe must admit unchanged: %+v", resp)
			}
			if len(resp.Warnings) != len(tc.warnings) {
				t.Fatalf("warnings = %q, want %d", resp.Warnings, len(tc.warnings))
			}
			for i, w := range tc.warnings {
				if !strings.HasPrefix(resp.Warnings[i], w) {
					t.Errorf("warning %d = %q, want prefix %q", i, resp.Warnings[i], w)
				}
			}
			for _, want := range tc.recorded {
				if !slices.Contains(rec.decisions, want) {
					t.Errorf("decision %s not recorded: %v", want, rec.decisions)
				}
			}
		})
	}
}

func TestParseEnforcement(t *testing.T) {
	for in, want := range map[string]review.Enforcement{"enforce": review.Enforce, "observe": review.Observe, "Observe": "", "": ""} {
		got, err := review.ParseEnforcement(in)
		if got != want || (err == nil) != (want != "") {
			t.Errorf("ParseEnforcement(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestHandleSkipsAndErrors(t *testing.T) {
	h, _ := newHandler(t, "", false)
	tests := []struct {
		name    string
		req     admission.Request
		allowed bool
		code    int32
	}{
		{"exempt namespace", request("CREATE", "", "Pod", "portreeve", hostNetworkAndPortPod), true, http.StatusOK},
		{"kube-system", request("CREATE", "", "Pod", "kube-system", hostNetworkAndPortPod), true, http.StatusOK},
		{"delete", request("DELETE", "", "Pod", "default", ""), true, http.StatusOK},
		{"malformed object", request("CREATE", "", "Pod", "default", `{"spec":`), false, http.StatusBadRequest},
		{"unknown kind", request("CREATE", "example.com", "Widget", "default", `{}`), false, http.StatusBadRequest},
		{"unknown namespace", request("CREATE", "", "Pod", "nowhere", hostNetworkAndPortPod), false, http.StatusInternalServerError},
		{"no request", admission.Request{}, false, http.StatusBadRequest},
		{"no operation", request("", "", "Pod", "default", hostNetworkAndPortPod), false, http.StatusBadRequest},
		{"no kind", request("CREATE", "", "", "default", hostNetworkAndPortPod), false, http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, mutating := range []bool{false, true} {
				h.Mutating = mutating
				resp := h.Handle(t.Context(), tc.req)
				if resp.Allowed != tc.allowed || resp.Result.Code != tc.code {
					t.Fatalf("mutating=%v: allowed=%v code=%d msg=%q, want allowed=%v code=%d",
						mutating, resp.Allowed, resp.Result.Code, resp.Result.Message, tc.allowed, tc.code)
				}
			}
		})
	}
}

func BenchmarkValidateHostPortPod(b *testing.B) {
	h, _ := newHandler(b, "", false)
	req := request("CREATE", "", "Pod", "default", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"},"spec":{"containers":[
		{"name":"a","image":"a","ports":[{"containerPort":80,"hostPort":80}]},
		{"name":"b","image":"b","ports":[{"containerPort":81}]},
		{"name":"c","image":"c","ports":[{"containerPort":82}]}]}}`)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		h.Handle(ctx, req)
	}
}

func TestObjectsBeyondALimit(t *testing.T) {
	var ports []string
	for i := range 50 {
		ports = append(ports, fmt.Sprintf(`{"containerPort":%d}`, 1000+i))
	}
	pod := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"},"spec":{"containers":[{"name":"a","ports":[` + strings.Join(ports, ",") + `]}]}}`
	for _, enforcement := range []review.Enforcement{review.Enforce, review.Observe} {
		t.Run(string(enforcement), func(t *testing.T) {
			h, rec := newHandler(t, "", false)
			h.Reviewer.SetLimits(review.Limits{Ports: 10})
			h.Reviewer.SetEnforcement(enforcement)
			resp := h.Handle(t.Context(), request("CREATE", "", "Pod", "default", pod))
			want := "the object has 50 ports, more than the 10 Portreeve reviews in one object (serve --max-ports)"
			if enforcement == review.Enforce {
				if resp.Allowed || resp.Result.Code != http.StatusForbidden || !strings.Contains(resp.Result.Message, "limits: "+want) {
					t.Fatalf("want a 403 naming the limit, got %+v", resp.Result)
				}
				if !slices.Contains(rec.decisions, "validating/Pod/CREATE/denied/limits") {
					t.Errorf("not recorded: %v", rec.decisions)
				}
				return
			}
			if !resp.Allowed || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "portreeve would deny (enforcement: observe): portreeve: "+want) {
				t.Fatalf("observe must admit with a warning, got %+v %q", resp.Result, resp.Warnings)
			}
		})
	}
}
