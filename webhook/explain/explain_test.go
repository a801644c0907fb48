package explain

import (
	"strings"
	"testing"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/offline"
)

func TestExplain(t *testing.T) {
	cfg, err := policies.ParseConfig([]byte(`apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
grants:
  - {name: team-a, namespaces: [team-a], hostNetwork: true}
  - {name: other, namespaces: [other], hostNetwork: true}
exemptions:
  - {name: alice, users: [alice], rules: [host-ports], reason: a test}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &offline.Settings{Config: cfg, Namespace: "team-a", User: policies.User{Username: "alice", Groups: []string{"system:authenticated"}}}
	x := New(s)
	req, err := s.Request([]byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"hostNetwork":true,"containers":[{"name":"c","ports":[{"containerPort":9100}]}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	e, err := x.Explain(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	rules := map[string]RuleExplanation{}
	for _, r := range e.Rules {
		rules[r.Rule] = r
	}
	if e.Verdict != offline.Allowed || len(e.Rules) != 2 ||
		rules["host-network"].Result != "allowed" || strings.Join(rules["host-network"].AllowedBy, ",") != "team-a" ||
		rules["host-ports"].Result != "exempted" || strings.Join(rules["host-ports"].ExemptedBy, ",") != "alice" {
		t.Fatalf("explanation %+v", e)
	}
	if len(e.Grants) != 2 || !e.Grants[0].Applies || e.Grants[1].Applies || len(e.Grants[1].Reasons) == 0 {
		t.Errorf("grants %+v", e.Grants)
	}

	// A kind Portreeve does not review is skipped, saying so.
	req, err = s.Request([]byte(`{"apiVersion":"extensions/v1beta1","kind":"Ingress","metadata":{"name":"i"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if e, err = x.Explain(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	Write(&b, e)
	if want := "Ingress team-a/i (CREATE by alice; groups: system:authenticated)\n  verdict: SKIPPED (the extensions/v1beta1/Ingress API was removed from Kubernetes"; !strings.HasPrefix(b.String(), want) {
		t.Errorf("text:\n%s\nwant it to start with:\n%s", b.String(), want)
	}
}
