package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Report is the output of portreeve audit.
type Report struct {
	Summary
	Findings []Finding `json:"findings"`
	// Omitted counts findings beyond --max-findings.
	Omitted int `json:"omitted,omitempty"`
}

// Collect returns a function that adds each finding to the report, up to
// max of them; the others are only counted (Omitted).
func (r *Report) Collect(max int) func(Finding) {
	if r.Findings == nil {
		r.Findings = []Finding{}
	}
	return func(f Finding) {
		if len(r.Findings) < max {
			r.Findings = append(r.Findings, f)
		} else {
			r.Omitted++
		}
	}
}

// Write sorts the findings by rule, namespace, result, kind and name, and
// writes the report as JSON (output "json") or as text grouped by rule and
// namespace.
func (r *Report) Write(w io.Writer, output string) error {
	slices.SortFunc(r.Findings, func(a, b Finding) int {
		for _, c := range []int{
			strings.Compare(a.Rule, b.Rule), strings.Compare(a.Namespace, b.Namespace),
			slices.Index(Results, a.Result) - slices.Index(Results, b.Result),
			strings.Compare(a.Kind, b.Kind), strings.Compare(a.Name, b.Name),
		} {
			if c != 0 {
				return c
			}
		}
		return 0
	})
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	var b strings.Builder
	objects := map[string]bool{}
	for _, f := range r.Findings {
		objects[f.Kind+"/"+f.Namespace+"/"+f.Name] = true
	}
	fmt.Fprintf(&b, "audited %d objects: %d with findings\n", r.Scanned, len(objects))
	rule, ns := "", ""
	for _, f := range r.Findings {
		if f.Rule != rule {
			rule, ns = f.Rule, ""
			var counts []string
			for _, res := range Results {
				if n := r.Counts[rule][res]; n > 0 {
					counts = append(counts, fmt.Sprintf("%d %s", n, res))
				}
			}
			fmt.Fprintf(&b, "\n%s (%s)\n", rule, strings.Join(counts, ", "))
		}
		if f.Namespace != ns {
			ns = f.Namespace
			fmt.Fprintf(&b, "  %s\n", ns)
		}
		fmt.Fprintf(&b, "    %-7s %s/%s\n", strings.ToUpper(f.Result), f.Kind, f.Name)
		for _, m := range f.Messages {
			fmt.Fprintf(&b, "            %s\n", m)
		}
	}
	if r.Omitted > 0 {
		fmt.Fprintf(&b, "\n... and %d more findings (raise --max-findings)\n", r.Omitted)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "error: %s\n", e)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
