package chart

import (
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// TestReservationsOption: reservations are on by default (the Role reaches
// the namespace's Leases); off, serve is told so and the Role names the
// audit's Lease only.
func TestReservationsOption(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		on   bool
	}{
		{name: "on by default", on: true},
		{name: "on with a TTL", args: []string{"--set", "reservations.ttl=45s"}, on: true},
		{name: "off", args: []string{"--set", "reservations.enabled=false"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := render(t, "", tt.args...)
			args := one[appsv1.Deployment](t, r, "Deployment").Spec.Template.Spec.Containers[0].Args
			if off := slices.Contains(args, "--reservations=false"); off == tt.on {
				t.Errorf("--reservations=false in serve's args: %t (%v)", off, args)
			}
			if ttl := slices.Contains(args, "--reservation-ttl=45s"); ttl != (len(tt.args) > 0 && tt.on) {
				t.Errorf("--reservation-ttl in serve's args: %t (%v)", ttl, args)
			}
			broad := false
			for _, rule := range one[rbacv1.Role](t, r, "Role").Rules {
				if slices.Contains(rule.Resources, "leases") && len(rule.ResourceNames) == 0 && slices.Contains(rule.Verbs, "get") {
					broad = true
				}
			}
			if broad != tt.on {
				t.Errorf("the Role reaches every Lease of the namespace: %t, want %t", broad, tt.on)
			}
		})
	}
	if _, _, err := runHelm(t, append([]string{"template", "x", chartDir}, "--set", "reservations.enabled=maybe")...); err == nil {
		t.Error("the schema accepted reservations.enabled=maybe")
	}
}
