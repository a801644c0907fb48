package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/yaml"

	portreevewebhook "github.com/portreeve/portreeve/webhook"
	"github.com/portreeve/portreeve/webhook/audit"
	"github.com/portreeve/portreeve/webhook/review"
)

func newAuditCommand() *cobra.Command {
	var (
		kubeconfig, output, ignoreLabel string
		exempt                          []string
		pageSize                        int64
		maxFindings                     int
		includeOwned                    bool
		df                              decisionFlags
	)
	cmd := &cobra.Command{
		Use:   "audit [flags]",
		Short: "List the existing objects of a cluster that the current rules would deny or rewrite",
		Long: "Lists every object of the reviewed kinds (page by page) and reviews each as a CREATE by a user with no\n" +
			"grants of its own (grants by namespace and service account apply), through the mutating and then the\n" +
			"validating review. Findings are grouped by rule and namespace: deny, rewrite, dryrun (what a rule in\n" +
			"dryrun mode would deny), warn, and error (the rule failed). Roll a new rule out as dryrun, audit until\n" +
			"clean, then switch it to deny. -o policyreport prints the findings as wgpolicyk8s.io/v1alpha2\n" +
			"PolicyReports (YAML), as serve --policy-reports writes them.\n" +
			"Exit status: 0 when nothing was found, 1 when something was, 2 on bad input or cluster errors.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" && output != "policyreport" {
				return &exitError{code: 2, err: fmt.Errorf("-o must be text, json or policyreport, got %q", output)}
			}
			settings, err := df.settings()
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			engine, err := settings.NewEngine(cmd.Context())
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			restCfg, err := restConfig(kubeconfig)
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("kubeconfig: %w", err)}
			}
			restCfg.UserAgent = "portreeve-audit/" + version
			client, err := audit.NewClient(restCfg)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			labels, err := audit.NamespaceLabels(cmd.Context(), client, pageSize)
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("list namespaces: %w", err)}
			}
			a := &audit.Auditor{
				Client:        client,
				PageSize:      pageSize,
				Reviewer:      settings.NewReviewer(engine),
				User:          settings.User,
				Labels:        func(_ context.Context, ns string) (map[string]string, error) { return labels[ns], nil },
				SkipNamespace: audit.SkipNamespaces(exempt, ignoreLabel),
				IncludeOwned:  includeOwned,
			}
			rep := &audit.Report{}
			sum, err := a.Run(cmd.Context(), rep.Collect(maxFindings))
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			rep.Summary = *sum
			if output == "policyreport" {
				err = writePolicyReports(cmd, rep)
			} else {
				err = rep.Write(cmd.OutOrStdout(), output)
			}
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			switch {
			case len(sum.Errors) > 0:
				return &exitError{code: 2, err: errors.New("the audit is incomplete (see errors)")}
			case len(sum.Counts) > 0:
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then in-cluster)")
	df.addFlags(cmd.Flags(), forCluster, audit.User)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, json, or policyreport (YAML documents of the wgpolicyk8s.io/v1alpha2 PolicyReports serve --policy-reports writes, one per namespace with findings, named portreeve)")
	cmd.Flags().StringSliceVar(&exempt, "exempt-namespaces", []string{"kube-system"}, "namespaces never reviewed")
	cmd.Flags().StringVar(&ignoreLabel, "ignore-label", "portreeve.io/ignore", "namespaces with this label are never reviewed (empty: none)")
	cmd.Flags().Int64Var(&pageSize, "page-size", 500, "objects per list call")
	cmd.Flags().IntVar(&maxFindings, "max-findings", 10000, "findings listed at most (all are counted)")
	cmd.Flags().BoolVar(&includeOwned, "include-owned", false, "also report objects whose controller is a reviewed kind (the Pods of a Deployment), not only the controller")
	return cmd
}

// writePolicyReports prints the report's findings as PolicyReport YAML
// documents (errors and omitted findings go to stderr: a report only holds results).
func writePolicyReports(cmd *cobra.Command, rep *audit.Report) error {
	for i, u := range audit.BuildReports(audit.DefaultReportName, rep.Findings, time.Now()) {
		b, err := yaml.Marshal(u.Object)
		if err != nil {
			return err
		}
		if i > 0 {
			fmt.Fprintln(cmd.OutOrStdout(), "---")
		}
		if _, err := cmd.OutOrStdout().Write(b); err != nil {
			return err
		}
	}
	if rep.Omitted > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "%d more findings are not in the reports (raise --max-findings)\n", rep.Omitted)
	}
	for _, e := range rep.Errors {
		fmt.Fprintf(cmd.ErrOrStderr(), "error: %s\n", e)
	}
	return nil
}

// setupAudit adds the periodic audit to serve (unless --audit-interval is 0).
// It lists objects page by page through the API, reading each page one
// object at a time (the manager's informer caches keep only what the
// inventory needs, so they cannot show rules the whole object, and the audit
// keeps no copy of its own), and reuses the caches for namespace labels and
// facts.
func setupAudit(mgr manager.Manager, o *serveOptions, reviewer *review.Reviewer, facts review.FactsSource, namespaces portreevewebhook.NamespaceLabeler) error {
	if o.AuditInterval == 0 {
		return nil
	}
	client, err := audit.NewClient(mgr.GetConfig())
	if err != nil {
		return err
	}
	m, err := newAuditMetrics(ctrlmetrics.Registry)
	if err != nil {
		return err
	}
	reports, err := newReportWriter(mgr.GetConfig(), o)
	if err != nil {
		return err
	}
	return mgr.Add(&audit.Loop{
		Interval: o.AuditInterval,
		Auditor: &audit.Auditor{
			Client:        client,
			PageSize:      o.AuditPageSize,
			Labels:        namespaces.NamespaceLabels,
			SkipNamespace: audit.SkipNamespaces(o.exempt(), o.AuditIgnoreLabel),
		},
		Engine:  reviewer.Engine,
		Facts:   facts,
		Synced:  mgr.GetCache().WaitForCacheSync,
		Metrics: m,
		Reports: reports,
	})
}

// newReportWriter returns the audit's PolicyReport writer (nil without
// --policy-reports). It checks now whether the cluster serves the report
// kinds, only to say so early: each run checks again, so CRDs installed
// later are used, and without them serve runs on.
func newReportWriter(cfg *rest.Config, o *serveOptions) (*audit.ReportWriter, error) {
	if !o.PolicyReports {
		return nil, nil
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	w := &audit.ReportWriter{Client: dyn, Discovery: disc, Name: o.reportName()}
	log := ctrl.Log.WithName("audit").WithName("policyreports")
	switch ok, err := w.Available(); {
	case err != nil:
		log.Error(err, "cannot tell whether the PolicyReport CRDs are installed; the audit checks again each run")
	case !ok:
		log.Info("PolicyReports are on but not written until the CRDs are installed: " + audit.ErrNoReportCRDs.Error())
	default:
		log.Info("the audit writes PolicyReports", "name", w.Name)
	}
	return w, nil
}

// reportName is the name of the audit's reports: one per installation.
func (o *serveOptions) reportName() string {
	if o.WebhookConfigName != "" {
		return o.WebhookConfigName
	}
	return audit.DefaultReportName
}

// newAuditMetrics registers the background audit's metrics (serve's metrics
// tests replay it by this name).
func newAuditMetrics(reg prometheus.Registerer) (*audit.Metrics, error) { return audit.NewMetrics(reg) }
