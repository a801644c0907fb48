package suggest

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// WriteReport writes what the suggestion found, for people: a summary, the
// new grants, what was skipped, what could not be granted and why, and the
// objects the suggested configuration still refuses.
func (r *Result) WriteReport(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "portreeve suggest: reviewed %d objects, skipped %d; %d new grants\n", r.Reviewed, len(r.Skipped), len(r.Added))
	if len(r.Added) == 0 && !r.Unresolved() {
		b.WriteString("nothing to add: the configuration admits every object reviewed\n")
	}
	for _, g := range r.Added {
		fmt.Fprintf(&b, "  + %s: %s\n", g.Name, strings.TrimSuffix(strings.TrimPrefix(g.Reason, "in use by "), " (portreeve suggest)"))
	}
	if len(r.Skipped) > 0 {
		reasons := map[string]int{}
		for _, s := range r.Skipped {
			reasons[summaryReason(s.Reason)]++
		}
		keys := mapKeys(reasons)
		slices.Sort(keys)
		b.WriteString("skipped:\n")
		for _, k := range keys {
			fmt.Fprintf(&b, "  %d %s\n", reasons[k], k)
		}
	}
	writeProblems(&b, "conflicts no grant can fix (not granted):", r.Conflicts)
	writeProblems(&b, "exposure that cannot be granted exactly (not granted):", r.Inexact)
	if len(r.Refused) > 0 {
		fmt.Fprintf(&b, "the suggested configuration still refuses %d objects:\n", len(r.Refused))
		for _, f := range r.Refused {
			fmt.Fprintf(&b, "  %s\n", f.Object)
			for _, m := range f.Messages {
				fmt.Fprintf(&b, "    %s\n", m)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// summaryReason groups skip reasons: objects controlled by a reviewed owner
// are counted, not named one by one.
func summaryReason(reason string) string {
	if strings.HasPrefix(reason, "controlled by ") {
		return "controlled by a workload that is reviewed instead"
	}
	return reason
}

func writeProblems(b *strings.Builder, title string, ps []Problem) {
	if len(ps) == 0 {
		return
	}
	b.WriteString(title + "\n")
	for _, p := range ps {
		refs := make([]string, len(p.Objects))
		for i, o := range p.Objects {
			refs[i] = o.String()
		}
		fmt.Fprintf(b, "  %s\n    %s\n", strings.Join(refs, ", "), p.Message)
	}
}
