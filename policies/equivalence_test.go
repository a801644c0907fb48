package policies

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"
)

// The engine computes some views of a request in Go, once, that Rego states
// too (for the Rego tests, explain and authors): these tests hold the two
// implementations to each other.

const equivalenceConfig = `
apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
rules:
  host-ports: {mode: warn}
  external-ips: {mode: off}
grants:
  - {name: system, namespaces: [kube-system], hostNetwork: true, hostPorts: ["1-65535"]}
  - {name: globs, namespaces: ["team-*", "*-prod"], hostPorts: ["8000-8100"]}
  - {name: braces, namespaces: ["{blue,green}"], hostPorts: ["9000"]}
  - {name: by-sa, serviceAccounts: [ingress/controller, ci/deployer], hostPorts: ["80", "443"]}
  - {name: by-user, users: [alice], groups: [ops], hostNetwork: true}
  - {name: by-group, groups: [dev, qa], namespaces: [team-a], hostPorts: ["53/UDP"]}
  - {name: old, namespaces: [team-a], hostPorts: ["9100"], expires: "2001-01-01"}
  - {name: later, namespaces: [team-a], hostNetwork: true, expires: "2999-01-01"}
exemptions:
  - {name: all-rules, users: [root], reason: break glass}
  - {name: some-rules, namespaces: [legacy], rules: [host-network, host-ports], reason: migration}
  - {name: expired, namespaces: [team-b], rules: [host-ports], expires: "2001-01-01", reason: gone}
`

// equivalenceRequests vary every subject the grants match on.
func equivalenceRequests() map[string]*Input {
	hostNetworkPod := func(ns, user string, groups []string, sa string) *Input {
		spec := map[string]any{
			"hostNetwork":        true,
			"serviceAccountName": sa,
			"initContainers": []any{map[string]any{"name": "init", "ports": []any{
				map[string]any{"containerPort": 9000, "hostPort": 9000, "protocol": "UDP", "hostIP": "10.0.0.1"},
			}}},
			"containers": []any{
				map[string]any{"name": "a", "ports": []any{
					map[string]any{"containerPort": 80, "hostPort": 80},
					map[string]any{"containerPort": 81},
					map[string]any{"containerPort": 82, "hostPort": 0},
				}},
				map[string]any{"ports": []any{map[string]any{"containerPort": 53, "hostPort": 53, "protocol": "UDP"}}},
			},
			"ephemeralContainers": []any{map[string]any{"name": "debug", "ports": []any{
				map[string]any{"containerPort": 8080, "hostPort": 8080, "protocol": "SCTP"},
			}}},
		}
		return &Input{
			Operation: "CREATE",
			Kind:      GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"},
			Namespace: ns,
			Name:      "p",
			User:      User{Username: user, Groups: groups},
			Object:    map[string]any{"spec": map[string]any{"template": map[string]any{"spec": spec}}},
			Pod:       viewOf(spec, "spec.template.spec"),
		}
	}
	service := func(ns, user string) *Input {
		return &Input{
			Operation: "CREATE",
			Kind:      GroupVersionKind{Version: "v1", Kind: "Service"},
			Namespace: ns, Name: "s",
			User:   User{Username: user},
			Object: map[string]any{"spec": map[string]any{"type": "NodePort", "externalIPs": []any{"192.0.2.1"}}},
		}
	}
	return map[string]*Input{
		"kube-system":          hostNetworkPod("kube-system", "system:serviceaccount:kube-system:ds", nil, "ds"),
		"glob prefix":          hostNetworkPod("team-a", "bob", []string{"dev"}, "default"),
		"glob suffix":          hostNetworkPod("shop-prod", "bob", nil, "default"),
		"braces":               hostNetworkPod("green", "bob", nil, "default"),
		"no glob match":        hostNetworkPod("teamless", "bob", nil, "default"),
		"pod service account":  hostNetworkPod("ingress", "bob", nil, "controller"),
		"requester account":    hostNetworkPod("ci", "system:serviceaccount:ci:deployer", nil, "web"),
		"malformed SA user":    hostNetworkPod("ci", "system:serviceaccount:ci:deployer:x", nil, "web"),
		"user needs group":     hostNetworkPod("team-z", "alice", []string{"dev"}, "default"),
		"user and group":       hostNetworkPod("team-z", "alice", []string{"ops"}, "default"),
		"exempt from all":      hostNetworkPod("default", "root", nil, "default"),
		"exempt from some":     hostNetworkPod("legacy", "bob", nil, "default"),
		"expired exemption":    hostNetworkPod("team-b", "bob", nil, "default"),
		"service by user":      service("team-a", "alice"),
		"service by SA":        service("ci", "system:serviceaccount:ci:deployer"),
		"service in namespace": service("kube-system", "carol"),
	}
}

func equivalenceEngine(t *testing.T) *Engine {
	t.Helper()
	cfg, err := ParseConfig([]byte(equivalenceConfig), nil)
	if err != nil {
		t.Fatal(err)
	}
	return newEngine(t, Options{Config: cfg})
}

func names(v any) []string {
	list, _ := v.([]any)
	out := []string{}
	for _, g := range list {
		m, _ := g.(map[string]any)
		out = append(out, str(m["name"]))
	}
	return out
}

func TestGrantResolutionMatchesRego(t *testing.T) {
	e := equivalenceEngine(t)
	for name, in := range equivalenceRequests() {
		t.Run(name, func(t *testing.T) {
			now := time.Now()
			res := e.grants.resolve(in, now)
			goSide, err := e.Query(t.Context(), "{\"active\": input.grants.active, \"expired\": input.grants.expired}", in)
			if err != nil {
				t.Fatal(err)
			}
			regoSide, err := e.Query(t.Context(), "data.portreeve.lib.grants.resolve(input, data.portreeve.config, time.now_ns())", in)
			if err != nil {
				t.Fatal(err)
			}
			g, r := goSide.(map[string]any), regoSide.(map[string]any)
			for _, k := range []string{"active", "expired"} {
				if !slices.Equal(names(g[k]), names(r[k])) {
					t.Errorf("%s grants: Go resolves %v, Rego %v", k, names(g[k]), names(r[k]))
				}
			}
			for _, id := range RuleIDs() {
				exempt, err := e.Query(t.Context(), "data.portreeve.lib.grants.exempt(\""+id+"\")", in)
				if err != nil {
					t.Fatal(err)
				}
				if res.exempts(id) != (exempt == true) {
					t.Errorf("exempt from %s: Go says %v, Rego %v", id, res.exempts(id), exempt)
				}
			}
		})
	}
}

func TestHostPortsMatchRego(t *testing.T) {
	e := equivalenceEngine(t)
	for name, in := range equivalenceRequests() {
		if in.Pod == nil {
			continue
		}
		t.Run(name, func(t *testing.T) {
			goSide, err := e.Query(t.Context(), "input.pod.hostPorts", in)
			if err != nil {
				t.Fatal(err)
			}
			regoSide, err := e.Query(t.Context(), "data.portreeve.lib.k8s.pod_host_ports(object.remove(input.pod, [\"hostPorts\"]))", in)
			if err != nil {
				t.Fatal(err)
			}
			// Six: four declared, and two container ports of the hostNetwork pod.
			if len(goSide.([]any)) != 6 || !reflect.DeepEqual(goSide, regoSide) {
				t.Fatalf("hostPorts: Go computes\n%s\nRego\n%s", mustJSON(goSide), mustJSON(regoSide))
			}
		})
	}
}

// TestPlanMatchesMain holds the engine's plans (the rules the configuration
// turns on, exemptions resolved in Go) to data.portreeve.main, which states
// the same in Rego.
func TestPlanMatchesMain(t *testing.T) {
	e := equivalenceEngine(t)
	for name, in := range equivalenceRequests() {
		t.Run(name, func(t *testing.T) {
			for _, q := range []struct {
				kind  queryKind
				query string
			}{{queryFindings, "data.portreeve.main.findings"}, {queryRewrites, "data.portreeve.main.rewrites"}} {
				planned, failed, release, err := e.evalIsolated(t.Context(), in, q.kind)
				if err != nil || len(failed) > 0 {
					t.Fatalf("evaluate: %v %v", err, failed)
				}
				defer release()
				got := []string{}
				for _, tg := range planned {
					m, _ := tg.json().(map[string]any)
					m["rule"] = tg.rule
					if q.kind == queryFindings {
						m["type"] = tg.set
					}
					got = append(got, mustJSON(m))
				}
				all, err := e.Query(t.Context(), q.query, in)
				if err != nil {
					t.Fatal(err)
				}
				want := []string{}
				for _, m := range all.([]any) {
					want = append(want, mustJSON(m))
				}
				slices.Sort(got)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Errorf("%s:\nplan %v\nmain %v", q.query, got, want)
				}
				if q.kind == queryFindings && name == "glob prefix" && len(got) == 0 {
					t.Error("the case meant to have findings has none")
				}
			}
		})
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestEvaluateConcurrently runs the requests above from many goroutines at
// once (pooled caches and input maps, shared AST values) and wants each
// decision to be the one it gets alone.
func TestEvaluateConcurrently(t *testing.T) {
	e := equivalenceEngine(t)
	reqs := equivalenceRequests()
	want := map[string]string{}
	for name, in := range reqs {
		d, err := e.Evaluate(t.Context(), in)
		if err != nil {
			t.Fatal(err)
		}
		want[name] = mustJSON(d)
	}
	errs := make(chan error, 8)
	for w := range 8 {
		go func() {
			for i := range 20 {
				for name, in := range reqs {
					if (i+w)%2 == 0 {
						if _, err := e.Rewrites(t.Context(), in); err != nil {
							errs <- err
							return
						}
					}
					d, err := e.Evaluate(t.Context(), in)
					if err != nil {
						errs <- err
						return
					}
					if got := mustJSON(d); got != want[name] {
						errs <- fmt.Errorf("%s: concurrent decision\n%s\nwant\n%s", name, got, want[name])
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// Past 64 grants the engine no longer shares input.grants between requests
// (its key is a bit per grant): the resolution must stay right.
func TestGrantResolutionWithManyGrants(t *testing.T) {
	cfg := &Config{APIVersion: "portreeve.io/v1alpha1", Kind: "PolicyConfig"}
	for i := range 70 {
		cfg.Grants = append(cfg.Grants, Grant{
			Name: fmt.Sprintf("g%d", i), Subjects: Subjects{Namespaces: []string{fmt.Sprintf("ns-%d", i)}}, HostNetwork: true,
		})
	}
	e := newEngine(t, Options{Config: cfg})
	for _, i := range []int{0, 63, 64, 69} {
		in := threeContainerPod()
		in.Namespace = fmt.Sprintf("ns-%d", i)
		got, err := e.Query(t.Context(), "[g.name | some g in input.grants.active]", in)
		if err != nil {
			t.Fatal(err)
		}
		if want := []any{fmt.Sprintf("g%d", i)}; !reflect.DeepEqual(got, want) {
			t.Errorf("namespace ns-%d: active grants %v, want %v", i, got, want)
		}
	}
}
