package audit

import (
	"cmp"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// PolicyReports: the audit's findings as wgpolicyk8s.io/v1alpha2 objects, the
// format Kyverno and Kubewarden write (github.com/kubernetes-sigs/wg-policy-prototypes).
// One PolicyReport per namespace with findings, one ClusterPolicyReport for
// cluster-scoped objects; each carries one result per finding.
const (
	ReportGroup   = "wgpolicyk8s.io"
	ReportVersion = "v1alpha2"
	// ManagedByLabel marks Portreeve's reports; only those it lists, updates and deletes.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedBy      = "portreeve"
	// ReportPolicy and ReportSource name Portreeve in every result (the
	// rule id is the result's rule).
	ReportPolicy = "portreeve"
	ReportSource = "portreeve"
	// DefaultReportName is the reports' name when serve has no webhook configuration name.
	DefaultReportName = "portreeve"
)

// The reports' resources.
var (
	PolicyReportGVR        = schema.GroupVersionResource{Group: ReportGroup, Version: ReportVersion, Resource: "policyreports"}
	ClusterPolicyReportGVR = schema.GroupVersionResource{Group: ReportGroup, Version: ReportVersion, Resource: "clusterpolicyreports"}
)

// MaxReportResults bounds the results of one report, so that it stays well
// below the apiserver's object size limit (about 1.5 MiB in etcd): a
// namespace with more findings lists the first ones (by rule, kind and
// name), and its summary still counts them all.
const MaxReportResults = 1000

// reportResults are the PolicyReport results a summary counts.
var reportResults = []string{"pass", "fail", "warn", "error", "skip"}

// ReportResult maps a finding's result to the PolicyReport result and
// severity: what a rule enforces (deny, rewrite) fails, what it only reports
// (dryrun, warn) warns, and a rule that failed to evaluate is an error.
func ReportResult(findingResult string) (result, severity string) {
	switch findingResult {
	case "deny":
		return "fail", "high"
	case "rewrite":
		return "fail", "medium"
	case "dryrun", "warn":
		return "warn", "low"
	default:
		return "error", ""
	}
}

// apiVersions maps the reviewed kinds to their apiVersion.
var apiVersions = func() map[string]string {
	out := map[string]string{}
	for _, k := range Kinds {
		out[k.GVK.Kind] = schema.GroupVersion{Group: k.GVK.Group, Version: k.GVK.Version}.String()
	}
	return out
}()

// BuildReports returns the reports named name for findings, ordered by
// namespace (the ClusterPolicyReport, for findings without one, first).
// Every result is stamped now; Plan keeps the time of results already reported.
func BuildReports(name string, findings []Finding, now time.Time) []*unstructured.Unstructured {
	byNS := map[string][]Finding{}
	for _, f := range findings {
		byNS[f.Namespace] = append(byNS[f.Namespace], f)
	}
	var out []*unstructured.Unstructured
	for _, ns := range slices.Sorted(maps.Keys(byNS)) {
		fs := byNS[ns]
		slices.SortFunc(fs, func(a, b Finding) int {
			return cmp.Or(strings.Compare(a.Rule, b.Rule), strings.Compare(a.Kind, b.Kind),
				strings.Compare(a.Name, b.Name), slices.Index(Results, a.Result)-slices.Index(Results, b.Result))
		})
		counts := map[string]int64{}
		results := make([]any, 0, len(fs))
		for _, f := range fs {
			res, sev := ReportResult(f.Result)
			counts[res]++
			if len(results) == MaxReportResults {
				continue
			}
			ref := map[string]any{"apiVersion": apiVersions[f.Kind], "kind": f.Kind, "name": f.Name}
			if f.Namespace != "" {
				ref["namespace"] = f.Namespace
			}
			r := map[string]any{
				"policy":     ReportPolicy,
				"rule":       f.Rule,
				"result":     res,
				"message":    strings.Join(f.Messages, "; "),
				"source":     ReportSource,
				"scored":     true,
				"resources":  []any{ref},
				"properties": map[string]any{"portreeve.io/result": f.Result},
				"timestamp":  map[string]any{"seconds": now.Unix(), "nanos": int64(0)},
			}
			if sev != "" {
				r["severity"] = sev
			}
			results = append(results, r)
		}
		summary := map[string]any{}
		for _, r := range reportResults {
			summary[r] = counts[r]
		}
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": ReportGroup + "/" + ReportVersion,
			"metadata": map[string]any{
				"name":   name,
				"labels": map[string]any{ManagedByLabel: ManagedBy},
			},
			"summary": summary,
			"results": results,
		}}
		if ns == "" {
			u.SetKind("ClusterPolicyReport")
		} else {
			u.SetKind("PolicyReport")
			u.SetNamespace(ns)
		}
		out = append(out, u)
	}
	return out
}

// jsonText compares decoded JSON values: the same whether numbers came
// back from the API as int64 or float64, maps in any order.
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

// ReportChanges are the writes that make the reports in the cluster the desired ones.
type ReportChanges struct {
	Create, Update, Delete []*unstructured.Unstructured
}

// Empty reports that nothing needs writing.
func (c ReportChanges) Empty() bool {
	return len(c.Create)+len(c.Update)+len(c.Delete) == 0
}

// Plan compares the desired reports with the existing ones (Portreeve's
// reports as listed): a report that is new is created, one whose results,
// summary or labels changed is updated in place (from the existing object,
// so its resourceVersion guards the write), and one no longer desired (its
// namespace has no findings left) is deleted. A result that was already
// reported keeps its timestamp, so an unchanged report is not rewritten.
func Plan(desired, existing []*unstructured.Unstructured) ReportChanges {
	key := func(u *unstructured.Unstructured) string {
		return u.GetKind() + "/" + u.GetNamespace() + "/" + u.GetName()
	}
	have := map[string]*unstructured.Unstructured{}
	for _, u := range existing {
		have[key(u)] = u
	}
	var c ReportChanges
	for _, d := range desired {
		k := key(d)
		old, ok := have[k]
		if !ok {
			c.Create = append(c.Create, d)
			continue
		}
		delete(have, k)
		keepTimestamps(d, old)
		if jsonText(d.Object["results"]) == jsonText(old.Object["results"]) &&
			jsonText(d.Object["summary"]) == jsonText(old.Object["summary"]) &&
			old.GetLabels()[ManagedByLabel] == ManagedBy {
			continue
		}
		upd := old.DeepCopy()
		upd.Object["results"] = d.Object["results"]
		upd.Object["summary"] = d.Object["summary"]
		labels := upd.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels[ManagedByLabel] = ManagedBy
		upd.SetLabels(labels)
		c.Update = append(c.Update, upd)
	}
	for _, u := range existing {
		if _, gone := have[key(u)]; gone {
			c.Delete = append(c.Delete, u)
		}
	}
	return c
}

// keepTimestamps gives each result of d that old already holds (same rule,
// result, message and resource) old's timestamp.
func keepTimestamps(d, old *unstructured.Unstructured) {
	resultKey := func(r map[string]any) string {
		c := make(map[string]any, len(r))
		for k, v := range r {
			if k != "timestamp" {
				c[k] = v
			}
		}
		return jsonText(c)
	}
	stamps := map[string]any{}
	oldResults, _ := old.Object["results"].([]any)
	for _, r := range oldResults {
		if m, ok := r.(map[string]any); ok {
			stamps[resultKey(m)] = m["timestamp"]
		}
	}
	newResults, _ := d.Object["results"].([]any)
	for _, r := range newResults {
		if m, ok := r.(map[string]any); ok {
			if ts, ok := stamps[resultKey(m)]; ok && ts != nil {
				m["timestamp"] = ts
			}
		}
	}
}
