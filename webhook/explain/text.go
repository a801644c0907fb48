package explain

import (
	"fmt"
	"io"
	"strings"

	"github.com/portreeve/portreeve/webhook/offline"
)

// Write writes an explanation as text: the verdict, each matched rule with
// what it decided and why, the rules not matched, and the rewrites with a
// diff of the object.
func Write(w io.Writer, e *Explanation) {
	var b strings.Builder
	name := e.Namespace + "/" + e.Name
	if e.Namespace == "" { // a cluster-scoped object
		name = e.Name
	}
	fmt.Fprintf(&b, "%s %s (CREATE by %s; groups: %s)\n", e.Kind, name, e.User.Username, strings.Join(e.User.Groups, ", "))
	fmt.Fprintf(&b, "  verdict: %s", e.Verdict)
	if e.Skipped != "" {
		fmt.Fprintf(&b, " (%s)", e.Skipped)
	}
	b.WriteString("\n")
	for _, r := range e.Rules {
		fmt.Fprintf(&b, "  %s (mode %s): %s", r.Rule, r.Mode, r.Result)
		switch {
		case len(r.AllowedBy) > 0:
			fmt.Fprintf(&b, " by grant %s", strings.Join(r.AllowedBy, ", "))
		case len(r.ExemptedBy) > 0:
			fmt.Fprintf(&b, " by exemption %s", strings.Join(r.ExemptedBy, ", "))
		}
		b.WriteString("\n")
		for _, f := range r.Findings {
			fmt.Fprintf(&b, "      %s\n", f)
		}
		if r.Error != "" {
			fmt.Fprintf(&b, "      %s\n", r.Error)
		}
		if r.Result == "denied" || r.Result == "dryrun" || r.Result == "warned" || r.Result == "rewritten" {
			writeGrantReasons(&b, e.Grants)
		}
	}
	if len(e.NotMatched) > 0 {
		fmt.Fprintf(&b, "  not matched: %s\n", strings.Join(e.NotMatched, ", "))
	}
	if len(e.Changes) > 0 {
		b.WriteString("  rewrites:\n")
		for _, c := range e.Changes {
			fmt.Fprintf(&b, "    %s: %s -> %s (%s: %s)\n", c.Path, offline.ValueText(c.Before), offline.ValueText(c.After), c.Rule, c.Reason)
		}
		if e.Diff != "" {
			b.WriteString("    --- before\n    +++ after\n")
			for l := range strings.SplitSeq(e.Diff, "\n") {
				fmt.Fprintf(&b, "    %s\n", l)
			}
		}
	}
	if e.RewriteRejected != "" {
		fmt.Fprintf(&b, "  rewrite not applied: %s\n", e.RewriteRejected)
	}
	_, _ = io.WriteString(w, b.String())
}

// writeGrantReasons says, for a rule no grant allowed, what each grant is to the request.
func writeGrantReasons(b *strings.Builder, grants []GrantStatus) {
	if len(grants) == 0 {
		b.WriteString("    no grant allowed it: the configuration has no grants\n")
		return
	}
	b.WriteString("    no grant allowed it:\n")
	for _, g := range grants {
		if g.Applies {
			fmt.Fprintf(b, "      %s: applies to this request, but does not allow this\n", g.Name)
			continue
		}
		fmt.Fprintf(b, "      %s: does not apply: %s\n", g.Name, strings.Join(g.Reasons, "; "))
	}
}
