package policies

import (
	"fmt"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// TestHoldersTextIsRegos: the holders text the engine renders in Go is the
// text the Rego library renders from the holders alone (for input that does
// not carry holdersText: Rego unit tests, hand-written input).
func TestHoldersTextIsRegos(t *testing.T) {
	modules, _ := regoSources(t)
	opts := []func(*rego.Rego){
		rego.Query("data.portreeve.lib.facts.conflict_holders_text(input)"),
		rego.SetRegoVersion(ast.RegoV1),
	}
	for name, src := range modules {
		opts = append(opts, rego.Module(name, src))
	}
	query, err := rego.New(opts...).PrepareForEval(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	holders := func(n int, pendingAt int) []Holder {
		var hs []Holder
		for i := range n {
			hs = append(hs, Holder{Namespace: fmt.Sprintf("ns-%d", i), Kind: "Pod", Name: fmt.Sprintf("p%d", i), Claim: "hostPort 9100/TCP", Pending: i == pendingAt})
		}
		return hs
	}
	tests := []struct {
		name    string
		holders []Holder
		count   int
	}{
		{"one", holders(1, -1), 0},
		{"one admitted moments ago", holders(1, 0), 1},
		{"five", holders(5, 3), 5},
		{"six listed", holders(6, -1), 6},
		{"ten listed of a thousand", holders(10, 2), 1000},
		{"count below the list", holders(3, -1), 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := map[string]any{"holders": holdersValue(tc.holders), "holderCount": tc.count}
			rs, err := query.Eval(t.Context(), rego.EvalInput(c))
			if err != nil || len(rs) != 1 {
				t.Fatalf("rego: %v %v", rs, err)
			}
			want := rs[0].Expressions[0].Value
			got := holdersText(tc.holders, max(tc.count, len(tc.holders)))
			if got != want {
				t.Errorf("Go renders\n  %q\nRego renders\n  %q", got, want)
			}
			// And with the text given, Rego takes it as it is.
			c["holdersText"] = "given"
			if rs, err := query.Eval(t.Context(), rego.EvalInput(c)); err != nil || rs[0].Expressions[0].Value != "given" {
				t.Errorf("holdersText not used: %v %v", rs, err)
			}
		})
	}
}
