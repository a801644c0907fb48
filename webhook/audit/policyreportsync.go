package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	ctrl "sigs.k8s.io/controller-runtime"
)

// ReportWriter keeps Portreeve's PolicyReports in the cluster equal to the
// findings of the last audit. It needs list, create, update and delete on
// wgpolicyk8s.io policyreports and clusterpolicyreports (the chart's
// ClusterRole grants them with audit.policyReports.enabled).
type ReportWriter struct {
	Client    dynamic.Interface
	Discovery discovery.DiscoveryInterface
	// Name is the reports' name in every namespace (zero: DefaultReportName).
	Name string
	// Now stamps new results (zero: time.Now).
	Now func() time.Time
}

// ErrNoReportCRDs says the cluster does not serve the PolicyReport kinds.
var ErrNoReportCRDs = errors.New("the cluster does not serve " + ReportGroup + "/" + ReportVersion +
	" policyreports and clusterpolicyreports: install the PolicyReport CRDs (kubernetes-sigs/wg-policy-prototypes)")

// errDiscovery: discovery failed, whether the kinds are served is unknown.
var errDiscovery = errors.New("discovery of " + ReportGroup + "/" + ReportVersion)

// Available asks discovery whether the cluster serves both report kinds.
func (w *ReportWriter) Available() (bool, error) {
	list, err := w.Discovery.ServerResourcesForGroupVersion(ReportGroup + "/" + ReportVersion)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var found []string
	for _, r := range list.APIResources {
		found = append(found, r.Name)
	}
	return slices.Contains(found, PolicyReportGVR.Resource) && slices.Contains(found, ClusterPolicyReportGVR.Resource), nil
}

func (w *ReportWriter) name() string {
	if w.Name == "" {
		return DefaultReportName
	}
	return w.Name
}

// Sync writes the reports for findings: creates, updates in place, and
// deletes reports of namespaces without findings. It returns the writes it
// made; ErrNoReportCRDs when the kinds are not served.
func (w *ReportWriter) Sync(ctx context.Context, findings []Finding) (ReportChanges, error) {
	ok, err := w.Available()
	if err != nil {
		return ReportChanges{}, fmt.Errorf("%w: %w", errDiscovery, err)
	}
	if !ok {
		return ReportChanges{}, ErrNoReportCRDs
	}
	existing, err := w.existing(ctx)
	if err != nil {
		return ReportChanges{}, err
	}
	now := time.Now
	if w.Now != nil {
		now = w.Now
	}
	c := Plan(BuildReports(w.name(), findings, now()), existing)
	var errs []error
	for _, u := range c.Create {
		if _, err := w.resource(u).Create(ctx, u, metav1.CreateOptions{FieldManager: ManagedBy}); err != nil {
			errs = append(errs, fmt.Errorf("create %s: %w", describe(u), err))
		}
	}
	for _, u := range c.Update {
		if _, err := w.resource(u).Update(ctx, u, metav1.UpdateOptions{FieldManager: ManagedBy}); err != nil {
			errs = append(errs, fmt.Errorf("update %s: %w", describe(u), err))
		}
	}
	for _, u := range c.Delete {
		err := w.resource(u).Delete(ctx, u.GetName(), metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: ptr(u.GetUID())},
		})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete %s: %w", describe(u), err))
		}
	}
	return c, errors.Join(errs...)
}

// existing lists Portreeve's reports of this name (the managed-by label, then the name).
func (w *ReportWriter) existing(ctx context.Context) ([]*unstructured.Unstructured, error) {
	opts := metav1.ListOptions{LabelSelector: ManagedByLabel + "=" + ManagedBy}
	var out []*unstructured.Unstructured
	for kind, gvr := range map[string]schema.GroupVersionResource{
		"ClusterPolicyReport": ClusterPolicyReportGVR, "PolicyReport": PolicyReportGVR,
	} {
		list, err := w.Client.Resource(gvr).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", gvr.Resource, err)
		}
		for i := range list.Items {
			if u := &list.Items[i]; u.GetName() == w.name() {
				u.SetKind(kind)
				out = append(out, u)
			}
		}
	}
	return out, nil
}

func (w *ReportWriter) resource(u *unstructured.Unstructured) dynamic.ResourceInterface {
	if u.GetKind() == "ClusterPolicyReport" {
		return w.Client.Resource(ClusterPolicyReportGVR)
	}
	return w.Client.Resource(PolicyReportGVR).Namespace(u.GetNamespace())
}

func describe(u *unstructured.Unstructured) string {
	if ns := u.GetNamespace(); ns != "" {
		return u.GetKind() + " " + ns + "/" + u.GetName()
	}
	return u.GetKind() + " " + u.GetName()
}

func ptr[T any](v T) *T { return &v }

// Results of a sync of the reports (portreeve_audit_policy_report_syncs_total).
const (
	syncSuccess = "success"
	syncFailure = "failure"
	syncNoCRDs  = "no_crds"
	syncSkipped = "skipped"
)

// syncReports writes the findings of a complete run as PolicyReports. An
// incomplete run leaves the reports as they are: results of objects it
// could not review would otherwise disappear.
func (l *Loop) syncReports(ctx context.Context, sum *Summary, runErr error, findings []Finding) {
	log := ctrl.Log.WithName("audit").WithName("policyreports")
	if runErr != nil || len(sum.Errors) > 0 {
		l.Metrics.RecordReports(syncSkipped, false)
		log.Info("PolicyReports left as they are: the audit was incomplete")
		return
	}
	c, err := l.Reports.Sync(ctx, findings)
	switch {
	case errors.Is(err, ErrNoReportCRDs):
		l.Metrics.RecordReports(syncNoCRDs, false)
		log.Info("no PolicyReports written (--policy-reports): " + err.Error())
	case err != nil:
		l.Metrics.RecordReports(syncFailure, !errors.Is(err, errDiscovery))
		log.Error(err, "writing PolicyReports failed (retried at the next audit)")
	default:
		l.Metrics.RecordReports(syncSuccess, true)
		if !c.Empty() {
			log.Info("PolicyReports written", "created", len(c.Create), "updated", len(c.Update), "deleted", len(c.Delete))
		}
	}
}

// RecordReports exports the result of one sync of the PolicyReports;
// served says the sync found the kinds served (it did not look when skipped,
// nor when discovery failed: the gauge then keeps its value).
func (m *Metrics) RecordReports(result string, served bool) {
	m.reports.open.Store(true)
	m.reportSyncs.WithLabelValues(result).Inc()
	switch {
	case served:
		m.reportCRDs.Set(1)
	case result == syncNoCRDs:
		m.reportCRDs.Set(0)
	}
}
