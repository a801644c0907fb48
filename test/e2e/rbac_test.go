package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// testMissingPermissions removes each rule of the chart's Role and
// ClusterRole in turn, runs Portreeve as in the main test, and puts the rule
// back. Without a rule Portreeve needs, the run must fail; for the others
// the test logs whether they were used.
func testMissingPermissions(t *testing.T, r *release, kubeconfig string) {
	ctx := t.Context()
	role, err := r.cs.RbacV1().Roles(chartNamespace).Get(ctx, chartRelease, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clusterRole, err := r.cs.RbacV1().ClusterRoles().Get(ctx, chartRelease, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	type ruleCase struct {
		kind  string
		index int
		rule  rbacv1.PolicyRule
	}
	var cases []ruleCase
	for i, rule := range role.Rules {
		cases = append(cases, ruleCase{"Role", i, rule})
	}
	for i, rule := range clusterRole.Rules {
		cases = append(cases, ruleCase{"ClusterRole", i, rule})
	}
	needed := 0
	for _, c := range cases {
		name := fmt.Sprintf("%s-%d-%s-%s", c.kind, c.index, strings.Join(c.rule.Resources, "+"), strings.Join(c.rule.Verbs, "+"))
		t.Run(name, func(t *testing.T) {
			restore := r.removeRule(t, c.kind, c.index)
			err := r.verifyServe(ctx, kubeconfig)
			restore()
			switch {
			case mustHave(c.rule) && err == nil:
				t.Errorf("Portreeve worked without %s rule %v: this test would not catch the missing permission", c.kind, c.rule)
			case mustHave(c.rule):
				needed++
				t.Logf("fails without it, as it must: %v", err)
			case err != nil:
				t.Logf("also used by Portreeve (run failed without it): %v", err)
			default:
				t.Logf("not used by Portreeve in this run (it works without %v)", c.rule)
			}
		})
	}
	if needed == 0 {
		t.Error("no rule was found necessary")
	}
}

// mustHave reports whether Portreeve cannot work without rule: the Secret
// it keeps its certificates in, the webhook configurations it injects the
// CA into, the namespaces and pods its inventory and handlers read, and the
// Leases that elect the replica that audits (created, read and renewed) and
// hold reservations (created, read, updated).
func mustHave(rule rbacv1.PolicyRule) bool {
	for _, res := range rule.Resources {
		switch res {
		case "validatingwebhookconfigurations", "namespaces", "pods", "leases":
			return true
		case "secrets":
			if len(rule.ResourceNames) > 0 {
				return true
			}
		}
	}
	return false
}

// removeRule deletes rule index of the Role or ClusterRole, waits until the
// apiserver's authorizer no longer grants it, and returns a function that
// puts it back and waits until it is granted again.
func (r *release) removeRule(t *testing.T, kind string, index int) (restore func()) {
	t.Helper()
	ctx := t.Context()
	rbac := r.cs.RbacV1()
	var rule rbacv1.PolicyRule
	switch kind {
	case "Role":
		role, err := rbac.Roles(chartNamespace).Get(ctx, chartRelease, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rule = role.Rules[index]
		role.Rules = append(role.Rules[:index:index], role.Rules[index+1:]...)
		if _, err := rbac.Roles(chartNamespace).Update(ctx, role, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	default:
		cr, err := rbac.ClusterRoles().Get(ctx, chartRelease, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rule = cr.Rules[index]
		cr.Rules = append(cr.Rules[:index:index], cr.Rules[index+1:]...)
		if _, err := rbac.ClusterRoles().Update(ctx, cr, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	namespace := ""
	if kind == "Role" {
		namespace = chartNamespace
	}
	if err := r.waitAllowed(ctx, rule, namespace, false); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		switch kind {
		case "Role":
			role, err := rbac.Roles(chartNamespace).Get(ctx, chartRelease, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			role.Rules = append(role.Rules[:index:index], append([]rbacv1.PolicyRule{rule}, role.Rules[index:]...)...)
			if _, err := rbac.Roles(chartNamespace).Update(ctx, role, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		default:
			cr, err := rbac.ClusterRoles().Get(ctx, chartRelease, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			cr.Rules = append(cr.Rules[:index:index], append([]rbacv1.PolicyRule{rule}, cr.Rules[index:]...)...)
			if _, err := rbac.ClusterRoles().Update(ctx, cr, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.waitAllowed(ctx, rule, namespace, true); err != nil {
			t.Fatal(err)
		}
	}
}

// waitAllowed waits until a SubjectAccessReview for the chart's
// ServiceAccount and the first verb and resource of rule answers want.
func (r *release) waitAllowed(ctx context.Context, rule rbacv1.PolicyRule, namespace string, want bool) error {
	attrs := &authorizationv1.ResourceAttributes{
		Namespace: namespace, Verb: rule.Verbs[0], Group: rule.APIGroups[0], Resource: rule.Resources[0],
	}
	if len(rule.ResourceNames) > 0 {
		attrs.Name = rule.ResourceNames[0]
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:               "system:serviceaccount:" + chartNamespace + ":" + chartRelease,
		Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + chartNamespace, "system:authenticated"},
		ResourceAttributes: attrs,
	}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := r.cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		if res.Status.Allowed == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("authorizer still answers allowed=%v for %+v", res.Status.Allowed, *attrs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// verifyServe runs the main test's checks with a fresh server and returns
// the first that fails.
func (r *release) verifyServe(ctx context.Context, kubeconfig string) error {
	dir, err := os.MkdirTemp("", "portreeve-rbac-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// Each run elects its auditor from scratch: the Lease is created, read
	// and renewed.
	err = r.cs.CoordinationV1().Leases(chartNamespace).Delete(ctx, chartAuditLease, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	s, err := r.startServe(ctx, dir, kubeconfig, "--cert-ip-addresses=127.0.0.1")
	if err != nil {
		return err
	}
	defer s.Stop()
	// A refused API request cannot heal: stop waiting once one is logged.
	if err := s.waitReady(ctx, time.Minute, s.forbidden); err != nil {
		return err
	}
	if _, err := r.waitCertsInjected(ctx, 5*time.Second); err != nil {
		return err
	}
	if err := r.waitDenied(ctx, "default", chartHostNetworkPod, "host-network", 15*time.Second); err != nil {
		if f := s.forbidden(); f != nil {
			return errors.Join(err, f)
		}
		return err
	}
	if err := r.claimTwice(ctx); err != nil {
		if f := s.forbidden(); f != nil {
			return errors.Join(err, f)
		}
		return err
	}
	return r.waitAuditor(ctx, s, 30*time.Second)
}

// claimRuns numbers claimTwice's runs, for node names of their own.
var claimRuns atomic.Int64

// claimTwice creates (for real: dry runs reserve nothing) two pods in team-a
// that hold hostPort 8080 on two nodes, and deletes them: the first
// reservation creates the port's Lease, the second reads and updates it, so
// both need the Role's Lease rules.
func (r *release) claimTwice(ctx context.Context) error {
	run := claimRuns.Add(1)
	pods := r.cs.CoreV1().Pods("team-a")
	for i := range 2 {
		name := fmt.Sprintf("rbac-claim-%d-%d", run, i)
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{
			NodeName: name,
			Containers: []corev1.Container{{Name: "c", Image: "registry.example/app:1",
				Ports: []corev1.ContainerPort{{ContainerPort: 8080, HostPort: 8080}}}},
		}}
		if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create %s (hostPort 8080, reserved): %w", name, err)
		}
		defer func() {
			_ = pods.Delete(context.WithoutCancel(ctx), name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		}()
	}
	return nil
}

// chartAuditLease is the Lease serve elects its auditor with, under the
// chart's flags (<--webhook-config-name>-audit).
const chartAuditLease = chartRelease + "-audit"

// waitAuditor waits until s audits (portreeve_audit_leader 1) and has
// renewed the Lease it holds at least once, and gives up once a request
// was forbidden.
func (r *release) waitAuditor(ctx context.Context, s *hostServe, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := "no metrics"
	for {
		if f := s.forbidden(); f != nil {
			return f
		}
		if page, err := fetchMetrics(s.metricsURL); err == nil {
			last = "not the auditor"
			if v, ok := seriesValue(page, "portreeve_audit_leader"); ok && v == 1 {
				lease, err := r.cs.CoordinationV1().Leases(chartNamespace).Get(ctx, chartAuditLease, metav1.GetOptions{})
				if err != nil {
					return err
				}
				spec := lease.Spec
				if spec.AcquireTime != nil && spec.RenewTime != nil && spec.RenewTime.After(spec.AcquireTime.Time) {
					return nil
				}
				last = "the auditor has not renewed its Lease yet"
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no auditor within %s: %s", timeout, last)
		}
		select {
		case <-s.Done():
			return fmt.Errorf("portreeve serve exited: %v", s.WaitErr())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
