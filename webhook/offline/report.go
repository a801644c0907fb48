package offline

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
)

// Report is an outcome as `portreeve eval` prints it (its JSON output is
// a list of reports).
type Report struct {
	// Source is where the object was read (file#document), when it was.
	Source     string          `json:"source,omitempty"`
	Kind       string          `json:"kind"`
	Namespace  string          `json:"namespace"`
	Name       string          `json:"name"`
	Allowed    bool            `json:"allowed"`
	Violations []ReportFinding `json:"violations"`
	// Warnings are what kubectl would print: a rewrite that could not be
	// applied, each applied rewrite, and the rules' warnings.
	Warnings []string        `json:"warnings"`
	DryRun   []ReportFinding `json:"dryRun,omitempty"`
	// Patch is the JSON Patch of the rewrites (the mutating webhook's answer).
	Patch   []jsonpatch.Operation `json:"patch"`
	Skipped string                `json:"skipped,omitempty"`
	// Verdict is ALLOWED, DENIED, REWRITTEN or SKIPPED (not part of the JSON output).
	Verdict string `json:"-"`
	// Patched is the object after the rewrites (not part of the JSON output).
	Patched []byte `json:"-"`
}

// ReportFinding is a finding in a report.
type ReportFinding struct {
	Rule    string `json:"rule"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// Report renders the outcome of the object read from source.
func (o *Outcome) Report(source string) (*Report, error) {
	rep := &Report{Source: source, Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, Allowed: o.Allowed,
		Violations: []ReportFinding{}, Warnings: []string{}, Patch: []jsonpatch.Operation{}, Skipped: o.Skipped,
		Verdict: o.Verdict(), Patched: o.Patched}
	if o.RewriteRejected != "" {
		rep.Warnings = append(rep.Warnings, "portreeve could not rewrite the object: "+o.RewriteRejected)
	}
	if o.Rewritten() {
		ops, err := jsonpatch.CreatePatch(o.Original, o.Patched)
		if err != nil {
			return nil, err
		}
		rep.Patch = ops
		for _, c := range o.Changes {
			rep.Warnings = append(rep.Warnings, c.Warning())
		}
	}
	if d := o.Decision; d != nil {
		for _, v := range d.Violations {
			rep.Violations = append(rep.Violations, ReportFinding{Rule: v.Rule, Message: v.String(), Field: v.Field})
		}
		for _, w := range d.Warnings {
			rep.Warnings = append(rep.Warnings, w.String())
		}
		for _, f := range d.DryRun {
			rep.DryRun = append(rep.DryRun, ReportFinding{Rule: f.Rule, Message: f.String(), Field: f.Field})
		}
	}
	return rep, nil
}

// WriteReports writes reports as JSON (output "json") or as text: one
// verdict line per object with its source, its findings and warnings
// indented under it, and a summary line.
func WriteReports(w io.Writer, output string, reports []*Report) error {
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(reports)
	}
	var b strings.Builder
	counts := map[string]int{}
	for _, r := range reports {
		counts[r.Verdict]++
		if r.Namespace == "" { // a cluster-scoped object
			fmt.Fprintf(&b, "%-9s %s %s", r.Verdict, r.Kind, r.Name)
		} else {
			fmt.Fprintf(&b, "%-9s %s %s/%s", r.Verdict, r.Kind, r.Namespace, r.Name)
		}
		if r.Source != "" {
			fmt.Fprintf(&b, " (%s)", r.Source)
		}
		b.WriteString("\n")
		for _, v := range r.Violations {
			fmt.Fprintf(&b, "  denied:  %s\n", v.Message)
		}
		for _, wn := range r.Warnings {
			fmt.Fprintf(&b, "  warning: %s\n", wn)
		}
		for _, d := range r.DryRun {
			fmt.Fprintf(&b, "  dryrun:  %s\n", d.Message)
		}
		if r.Skipped != "" {
			fmt.Fprintf(&b, "  %s\n", r.Skipped)
		}
	}
	fmt.Fprintf(&b, "%d objects: %d allowed, %d rewritten, %d denied, %d skipped\n",
		len(reports), counts[Allowed], counts[Rewritten], counts[Denied], counts[Skipped])
	_, err := io.WriteString(w, b.String())
	return err
}

// ValueText renders a value of a rewrite (review.Change's Before or After)
// as JSON, "(none)" when absent.
func ValueText(v any) string {
	if v == nil {
		return "(none)"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
