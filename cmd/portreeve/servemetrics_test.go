package main

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portreeve/portreeve/certs"
	"github.com/portreeve/portreeve/policies"
	portreevewebhook "github.com/portreeve/portreeve/webhook"
	"github.com/portreeve/portreeve/webhook/inventory"
	"github.com/portreeve/portreeve/webhook/reservations"
	"github.com/portreeve/portreeve/webhook/review"
)

const dashboardFile = "../../charts/portreeve/dashboards/portreeve.json"

// capturing registers on a real registry (which refuses duplicates) and
// keeps the collectors, so that their descriptions can be read: a vector
// without children is described but not gathered.
type capturing struct {
	reg        *prometheus.Registry
	collectors []prometheus.Collector
}

func (c *capturing) Register(col prometheus.Collector) error {
	if err := c.reg.Register(col); err != nil {
		return err
	}
	c.collectors = append(c.collectors, col)
	return nil
}

func (c *capturing) MustRegister(cols ...prometheus.Collector) {
	for _, col := range cols {
		if err := c.Register(col); err != nil {
			panic(err)
		}
	}
}

func (c *capturing) Unregister(col prometheus.Collector) bool { return c.reg.Unregister(col) }

// serveRegistrations are the calls with which serve (and what it sets up)
// registers Portreeve's metrics on controller-runtime's registry, each
// replayed here on a registry of the test's. TestServeRegistrationsAreKnown
// keeps the list in step with the source.
func serveRegistrations(t *testing.T) map[string]func(prometheus.Registerer) error {
	t.Helper()
	return map[string]func(prometheus.Registerer) error{
		"newRuleErrorReporter": func(reg prometheus.Registerer) error {
			_, err := newRuleErrorReporter(reg)
			return err
		},
		"portreevewebhook.NewPrometheusRecorder": func(reg prometheus.Registerer) error {
			_, err := portreevewebhook.NewPrometheusRecorder(reg)
			return err
		},
		"registerBuildInfo": registerBuildInfo,
		"reservations.NewMetrics": func(reg prometheus.Registerer) error {
			_, err := reservations.NewMetrics(reg)
			return err
		},
		"newConfigWatcher": func(reg prometheus.Registerer) error {
			o := newServeOptions()
			set, err := loadPolicySet("", "")
			if err != nil {
				return err
			}
			engine, err := o.newEngine(t.Context(), set, nil)
			if err != nil {
				return err
			}
			_, err = newConfigWatcher(o, set, review.NewReviewer(engine), nil, reg)
			return err
		},
		"o.newInFlight": func(reg prometheus.Registerer) error {
			engine, err := policies.New(t.Context(), policies.Options{})
			if err != nil {
				return err
			}
			_, err = newServeOptions().newInFlight(review.NewReviewer(engine), reg)
			return err
		},
		"newAuditMetrics": func(reg prometheus.Registerer) error {
			_, err := newAuditMetrics(reg)
			return err
		},
		"certs.RegisterMetrics": certs.RegisterMetrics,
		"registerInventoryMetrics": func(reg prometheus.Registerer) error {
			engine, err := policies.New(t.Context(), policies.Options{})
			if err != nil {
				return err
			}
			inv := inventory.New(inventory.Options{})
			inv.MarkSynced()
			return registerInventoryMetrics(reg, inv, review.NewReviewer(engine))
		},
	}
}

// TestServeRegistrationsAreKnown: every place in this command's source that
// hands controller-runtime's metrics registry on (a call's argument, or a
// field of an options struct) is one that serveRegistrations replays, and the
// other way round. A metric registered some other way would escape the
// dashboard's check: add its registration to serveRegistrations.
func TestServeRegistrationsAreKnown(t *testing.T) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
	if err != nil {
		t.Fatal(err)
	}
	isRegistry := func(e ast.Expr) bool {
		sel, ok := e.(*ast.SelectorExpr)
		if !ok || sel.Sel.Name != "Registry" {
			return false
		}
		x, ok := sel.X.(*ast.Ident)
		return ok && x.Name == "ctrlmetrics"
	}
	name := func(e ast.Expr) string {
		switch fn := e.(type) {
		case *ast.Ident:
			return fn.Name
		case *ast.SelectorExpr:
			if x, ok := fn.X.(*ast.Ident); ok {
				return x.Name + "." + fn.Sel.Name
			}
		}
		return fmt.Sprintf("%T", e)
	}
	found := map[string]bool{}
	uses, understood := 0, 0
	for _, pkg := range pkgs {
		for _, f := range pkg.Files {
			ast.Inspect(f, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.SelectorExpr:
					if isRegistry(n) {
						uses++
					}
				case *ast.CallExpr:
					for _, a := range n.Args {
						if isRegistry(a) {
							found[name(n.Fun)] = true
							understood++
						}
					}
				case *ast.CompositeLit:
					for _, e := range n.Elts {
						if kv, ok := e.(*ast.KeyValueExpr); ok && isRegistry(kv.Value) {
							found[name(n.Type)] = true
							understood++
						}
					}
				}
				return true
			})
		}
	}
	if uses != understood {
		t.Errorf("ctrlmetrics.Registry is used %d times, %d of them as a call's argument or a struct field", uses, understood)
	}
	known := slices.Sorted(maps.Keys(serveRegistrations(t)))
	if got := slices.Sorted(maps.Keys(found)); !slices.Equal(got, known) {
		t.Errorf("serve registers metrics through %v; serveRegistrations replays %v", got, known)
	}
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// serveMetrics returns the series names serve's Portreeve metrics export
// (histograms as their _bucket, _sum and _count series) and the help text of
// each metric.
func serveMetrics(t *testing.T) (series map[string]bool, help map[string]string) {
	t.Helper()
	c := &capturing{reg: prometheus.NewPedanticRegistry()}
	for name, register := range serveRegistrations(t) {
		if err := register(c); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	series, help = map[string]bool{}, map[string]string{}
	var add func(col prometheus.Collector)
	add = func(col prometheus.Collector) {
		// A histogram behind a wrapper collector (audit.afterFirstRun) is not seen as one: its
		// _bucket series would then be missing, and a query of them fail here rather than pass.
		suffixes := []string{""}
		switch col.(type) {
		case prometheus.Histogram, *prometheus.HistogramVec:
			suffixes = []string{"_bucket", "_sum", "_count"}
		case prometheus.Summary, *prometheus.SummaryVec:
			suffixes = []string{"", "_sum", "_count"}
		}
		ch := make(chan *prometheus.Desc, 16)
		go func() { col.Describe(ch); close(ch) }()
		for d := range ch {
			m := fqName.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("no fqName in %s", d)
			}
			help[m[1]] = d.String()
			for _, s := range suffixes {
				series[m[1]+s] = true
			}
		}
	}
	for _, col := range c.collectors {
		add(col)
	}
	if len(series) < 10 || !series["portreeve_build_info"] || !series["portreeve_admission_review_duration_seconds_bucket"] {
		t.Fatalf("serve's metrics: %v", slices.Sorted(maps.Keys(series)))
	}
	return series, help
}

// promQL returns every PromQL text of a Grafana dashboard: the targets'
// expressions and the template variables' queries.
func promQL(v any, key string, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			promQL(c, k, out)
		}
	case []any:
		for _, c := range x {
			promQL(c, key, out)
		}
	case string:
		if key == "expr" || key == "query" || key == "definition" {
			*out = append(*out, x)
		}
	}
}

var (
	// a metric selector: a name followed by its label matchers.
	selectorName  = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{`)
	portreeveName = regexp.MustCompile(`\bportreeve_[a-zA-Z0-9_:]*`)
	ruleMatcher   = regexp.MustCompile(`\brule=~?"([^"]*)"`)
	decisionMatch = regexp.MustCompile(`\bdecision=~?"([^"]*)"`)
)

// TestDashboardQueriesServeMetrics: the chart's Grafana dashboard parses,
// every panel queries something, and every metric it queries is one that
// portreeve serve registers (no name of a metric that does not exist, such
// as per-grant usage gauges), with rule ids that exist and decisions that
// the decisions counter documents.
func TestDashboardQueriesServeMetrics(t *testing.T) {
	b, err := os.ReadFile(filepath.FromSlash(dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID, Title string
		Panels     []struct {
			Type, Title string
			Targets     []struct {
				Expr       string
				Datasource struct{ Type, UID string }
			}
		}
		Templating struct {
			List []struct{ Name, Type string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	if dash.UID == "" || dash.Title == "" || len(dash.Panels) == 0 {
		t.Fatalf("dashboard %q %q with %d panels", dash.UID, dash.Title, len(dash.Panels))
	}
	variables := map[string]bool{}
	for _, v := range dash.Templating.List {
		variables[v.Name] = true
	}
	if !variables["datasource"] || !variables["namespace"] {
		t.Errorf("template variables %v, want datasource and namespace", variables)
	}
	for _, p := range dash.Panels {
		if p.Type == "row" || p.Type == "text" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: target %+v", p.Title, tg)
			}
		}
	}

	var raw any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	var exprs []string
	promQL(raw, "", &exprs)
	series, help := serveMetrics(t)
	engine, err := policies.New(t.Context(), policies.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rules := map[string]bool{}
	for _, r := range engine.Rules() {
		rules[r.ID] = true
	}
	referenced := map[string]bool{}
	for _, e := range exprs {
		var names []string
		for _, m := range selectorName.FindAllStringSubmatch(e, -1) {
			names = append(names, m[1])
		}
		names = append(names, portreeveName.FindAllString(e, -1)...)
		slices.Sort(names)
		for _, n := range slices.Compact(names) {
			referenced[n] = true
			if !series[n] {
				t.Errorf("the dashboard queries %s, which portreeve serve does not export: %s", n, e)
			}
		}
		for _, m := range ruleMatcher.FindAllStringSubmatch(e, -1) {
			for _, id := range strings.Split(m[1], "|") {
				if !rules[id] && !strings.ContainsAny(id, ".*+") {
					t.Errorf("the dashboard matches rule %q, which is no rule: %s", id, e)
				}
			}
		}
		for _, m := range decisionMatch.FindAllStringSubmatch(e, -1) {
			for _, d := range strings.Split(m[1], "|") {
				if !strings.Contains(help["portreeve_admission_decisions_total"], d) {
					t.Errorf("the dashboard matches decision %q, which the decisions counter does not document: %s", d, e)
				}
			}
		}
	}
	// What the dashboard is for: requests and decisions, latency, conflicts (at admission and existing),
	// per-grant port usage, and the replicas' reservations.
	for _, want := range []string{"portreeve_admission_requests_total", "portreeve_admission_decisions_total", "portreeve_admission_review_duration_seconds_bucket",
		"portreeve_audit_violations", "portreeve_conflicts_total", "portreeve_grant_ports", "portreeve_reservations_total"} {
		if !referenced[want] {
			t.Errorf("the dashboard does not query %s", want)
		}
	}
	conflicts := 0
	for _, e := range exprs {
		if strings.Contains(e, "-conflicts") {
			conflicts++
		}
	}
	if conflicts < 2 {
		t.Errorf("%d queries about conflicts", conflicts)
	}
}
