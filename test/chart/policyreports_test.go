package chart

import (
	"reflect"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// TestPolicyReportsOption: audit.policyReports.enabled passes --policy-reports
// to serve and grants exactly the verbs the audit's report writer uses on the
// two wgpolicyk8s.io kinds; off (the default), neither.
func TestPolicyReportsOption(t *testing.T) {
	want := rbacv1.PolicyRule{APIGroups: []string{"wgpolicyk8s.io"}, Resources: []string{"policyreports", "clusterpolicyreports"},
		Verbs: []string{"list", "create", "update", "delete"}}
	for _, tt := range []struct {
		name string
		args []string
		on   bool
	}{
		{name: "off by default"},
		{name: "off", args: []string{"--set", "audit.policyReports.enabled=false"}},
		{name: "on", args: []string{"--set", "audit.policyReports.enabled=true"}, on: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := render(t, "", tt.args...)
			args := one[appsv1.Deployment](t, r, "Deployment").Spec.Template.Spec.Containers[0].Args
			if got := slices.Contains(args, "--policy-reports"); got != tt.on {
				t.Errorf("--policy-reports in serve's args: %t, want %t (%v)", got, tt.on, args)
			}
			var granted []rbacv1.PolicyRule
			for _, rule := range one[rbacv1.ClusterRole](t, r, "ClusterRole").Rules {
				if slices.Contains(rule.APIGroups, "wgpolicyk8s.io") {
					granted = append(granted, rule)
				}
			}
			switch {
			case tt.on && !reflect.DeepEqual(granted, []rbacv1.PolicyRule{want}):
				t.Errorf("wgpolicyk8s.io rules %+v, want %+v", granted, want)
			case !tt.on && len(granted) != 0:
				t.Errorf("wgpolicyk8s.io granted while off: %+v", granted)
			}
		})
	}
	t.Run("schema refuses a typo", func(t *testing.T) {
		if out, stderr, err := runHelm(t, templateArgs("", "--set", "audit.policyReports.enable=true")...); err == nil {
			t.Errorf("a misspelt key was accepted:\n%s%s", out, stderr)
		}
	})
}
